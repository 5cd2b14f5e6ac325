"""Rule refine_poses: one pose refinement round of a half against its previous run."""

from pathlib import Path
from typing import Any

from rulekit import Progress, run, with_choices


def main(smk: Any, progress: Progress) -> None:
    from gmmscape.importer import load_meta
    from gmmscape.refine import RefineSettings, refine_round

    refine, band = smk.params.refine, with_choices(smk, "train", smk.params.train)
    settings = RefineSettings(steps=refine["steps"], res_lo=band["res_lo"], res_hi=band["res_hi"])
    changes = refine_round(
        Path(smk.input.decoder).parent,
        smk.input.table,
        smk.input.stack,
        smk.input.particles,
        load_meta(smk.input.meta),
        dict(smk.output.items()),
        settings,
        progress,
    )
    median = changes[["rotation_deg", "shift_px"]].median()
    progress(
        f"refine round {smk.wildcards.round} {smk.wildcards.half}: {len(changes)} particles, "
        f"median change {median['rotation_deg']:.2f} degrees, {median['shift_px']:.2f} pixels"
    )


run(main)
