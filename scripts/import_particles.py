"""Rule import_particles: canonical particle table and cropped, phase-flipped stack."""

from pathlib import Path
from typing import Any

from rulekit import Progress, choices, run

from gmmscape.importer import import_particles


def main(smk: Any, progress: Progress) -> None:
    progress(f"importing {smk.input.particles}")
    import_particles(
        smk.input.particles,
        Path(smk.output.table).parent,
        map_path=smk.input.map,
        box=choices(smk)["box"],
        apix=smk.params.apix,
        seed=smk.params.seed,
    )


run(main)
