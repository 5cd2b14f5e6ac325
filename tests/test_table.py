"""The particle table's columns and even/odd coding (gmmscape.table)."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from gmmscape.table import (
    ALL,
    EVEN,
    HALF_NAMES,
    ODD,
    alternating_subsets,
    half_rows,
    half_subset,
    subset_counts,
)


def small_table() -> pd.DataFrame:
    return pd.DataFrame({"index": [10, 11, 12, 13, 14], "subset": [2, 1, 1, 2, 2]})


def test_half_rows_selects_each_half():
    table = small_table()
    assert half_rows(table, "even")["index"].tolist() == [11, 12]
    assert half_rows(table, "odd")["index"].tolist() == [10, 13, 14]
    assert half_rows(table, ALL) is table


def test_half_codes_follow_rlnRandomSubset():
    assert (half_subset("even"), half_subset("odd")) == (EVEN, ODD) == (1, 2)
    assert HALF_NAMES == ("all", "even", "odd")
    with pytest.raises(ValueError, match="half"):
        half_subset("all")


def test_subset_counts_and_alternating_halves():
    assert subset_counts(small_table()["subset"].to_numpy()) == {"even": 2, "odd": 3}
    np.testing.assert_array_equal(alternating_subsets(5), [1, 2, 1, 2, 1])
    assert alternating_subsets(0).shape == (0,)


def test_table_module_imports_no_tensorflow():
    code = "import sys, gmmscape.table; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
