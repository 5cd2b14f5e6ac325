"""Rule preflight: the imported conventions against the consensus map, before the GMM."""

from pathlib import Path
from typing import Any

from rulekit import Progress, load_map, run

from gmmscape.preflight import run_check


def main(smk: Any, progress: Progress) -> None:
    run_check(
        Path(smk.input.meta).parent,
        load_map(smk.input.map, smk.params.apix)[0],
        smk.output.json,
        smk.output.figure,
        seed=smk.params.seed,
        log=progress,
    )


run(main)
