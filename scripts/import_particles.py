"""Rule import_particles: canonical particle table, junk list and cropped, phase-flipped stack."""

from pathlib import Path
from typing import Any

from rulekit import Progress, choices, run

from gmmscape.importer import import_particles, summary


def main(smk: Any, progress: Progress) -> None:
    progress(f"importing {smk.input.particles}")
    result = import_particles(
        smk.input.particles,
        Path(smk.output.table).parent,
        map_path=smk.input.map,
        box=choices(smk)["box"],
        apix=smk.params.apix,
        seed=smk.params.seed,
        phase_flipped=smk.params.phase_flipped,
        split=smk.params.split,
        particles_dir=smk.params.particles_dir,
        conventions=smk.params.conventions,
    )
    progress(summary(result.meta))  # every default and override taken, once


run(main)
