"""Per-item work (class maps, trajectory maps) split over jobs and gathered again.

A cluster runs a run's class and trajectory reconstructions side by side when they are
split over ``landscape.reconstruct.jobs`` jobs. Job p of P does items p, p + P, ... (so
the jobs stay balanced whatever the item count, which is known only once the landscape
exists) into a folder of its own, with a table of what it did (``part.csv``, an ``item``
column first). The gathering job copies every part's files into the output folder and
joins the tables in item order. Each item is computed on its own, so the outputs hold the
values one job would write, bit for bit.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

PART_TABLE = "part.csv"
ITEM = "item"


def items_of(count: int, part: tuple[int, int]) -> range:
    """The items (of 0..count-1) that job p of P does: p, p + P, ..."""
    p, parts = part
    if not 0 <= p < parts:
        raise ValueError(f"part {p} of {parts}")
    return range(p, count, parts)


def write_part_table(table: pd.DataFrame, items: Sequence[int], folder: str | os.PathLike) -> None:
    """A part's table (one row per item it did) into its folder, for gather()."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = table.copy()
    table.insert(0, ITEM, list(items))
    table.to_csv(folder / PART_TABLE, index=False)


def gather(parts: Sequence[str | os.PathLike], outdir: str | os.PathLike) -> pd.DataFrame:
    """Every part's files copied into outdir; the parts' tables joined in item order."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    tables = []
    for folder in map(Path, parts):
        for entry in sorted(folder.iterdir()):
            if entry.name == PART_TABLE:
                tables.append(pd.read_csv(entry))
            elif entry.is_dir():
                shutil.copytree(entry, outdir / entry.name, dirs_exist_ok=True)
            else:
                shutil.copy2(entry, outdir / entry.name)
    joined = pd.concat([t for t in tables if len(t)] or tables[:1], ignore_index=True)
    return joined.sort_values(ITEM, kind="stable").drop(columns=ITEM).reset_index(drop=True)
