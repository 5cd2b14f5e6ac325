"""The canonical particle table (docs/conventions.md): its columns and its even/odd halves.

One home for what the import writes and every later stage reads, so the column lists and
the half coding cannot drift apart. TensorFlow-free: the workflow's rules use the half
names when the workflow is parsed (rules/common.smk).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .ctf import CTFParams

ROTATION_COLUMNS = [f"r{i}{j}" for i in range(3) for j in range(3)]
CTF_COLUMNS = list(CTFParams.__dataclass_fields__)
POSE_COLUMNS = [*ROTATION_COLUMNS, "rot", "tilt", "psi", "shift_x", "shift_y"]
TABLE_COLUMNS = ["index", "stack_index", "source", "source_index", *POSE_COLUMNS, *CTF_COLUMNS]
TABLE_COLUMNS += ["optics_group", "apix", "box", "subset", "window"]
# what training reads of a table (gmmscape.streaming): stack row, pose and the shifts' box
TRAINING_COLUMNS = ["index", "stack_index", *ROTATION_COLUMNS, "shift_x", "shift_y", "box"]
COPY = "copy"  # the symmetry copy of an expanded table (gmmscape.symmetry), 0 = as imported

# The `subset` column codes the halves as RELION's rlnRandomSubset does.
EVEN, ODD = 1, 2
SUBSETS = {"even": EVEN, "odd": ODD}
ALL = "all"  # the run on every particle
HALF_NAMES = (ALL, *SUBSETS)  # in the order the rules offset their seeds (rules/common.smk)


def half_subset(half: str) -> int:
    """The `subset` code of the even or odd half."""
    if half not in SUBSETS:
        raise ValueError(f"half: expected one of {sorted(SUBSETS)}, got {half!r}")
    return SUBSETS[half]


def half_rows(table: pd.DataFrame, half: str) -> pd.DataFrame:
    """The rows of one half (all, even or odd) of a table with a `subset` column."""
    if half == ALL:
        return table
    return table[table["subset"] == half_subset(half)]


def subset_counts(subset: np.ndarray) -> dict[str, int]:
    """Particles per half, even then odd, of a `subset` column."""
    return {half: int((subset == code).sum()) for half, code in SUBSETS.items()}


def alternating_subsets(n: int) -> np.ndarray:
    """Even, odd, even, ... by row: halves for a set that has none of its own."""
    return np.where(np.arange(n) % 2 == 0, EVEN, ODD)
