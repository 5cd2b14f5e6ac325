"""Rule landscape_explorer: the run's self-contained interactive page (explorer.html)."""

from pathlib import Path
from typing import Any

from rulekit import Progress, run


def main(smk: Any, progress: Progress) -> None:
    from gmmscape.explorer import build_run_explorer

    page = build_run_explorer(
        Path(smk.input.latent).parent,
        Path(smk.input.decoder).parent,
        smk.output.page,
        particles=smk.input.particles,
        meta=smk.input.meta,
    )
    progress(f"explorer {smk.wildcards.run}: {page} ({page.stat().st_size / 1e6:.1f} MB)")


run(main)
