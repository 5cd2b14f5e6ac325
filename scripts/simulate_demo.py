"""Rule simulate_demo: write the simulated demo data set with its ground truth."""

from pathlib import Path
from typing import Any

from rulekit import Progress, run

from gmmscape.simulate import simulate


def main(smk: Any, progress: Progress) -> None:
    p = smk.params
    progress(f"simulating the {p.system!r} system, {p.per_state} particles per state")
    simulate(
        p.system,
        Path(smk.output.particles).parent,
        per_state=p.per_state,
        box=p.box,
        apix=p.apix,
        snr=p.snr,
        seed=p.seed,
    )


run(main)
