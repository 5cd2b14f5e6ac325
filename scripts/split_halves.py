"""Rule split_halves: the particle table of the whole set and of its even and odd halves."""

import shutil
from typing import Any

from rulekit import Progress, run

from gmmscape.importer import load_table
from gmmscape.table import SUBSETS, half_rows


def main(smk: Any, progress: Progress) -> None:
    shutil.copyfile(smk.input[0], smk.output.all)
    table = load_table(smk.input[0])
    for half in SUBSETS:
        part = half_rows(table, half)
        part.to_csv(smk.output[half], index=False)
        progress(f"{half}: {len(part)} of {len(table)} particles")


run(main)
