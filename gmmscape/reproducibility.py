"""Even/odd reproducibility (paper, Methods "Reproducibility"): the two halves of the data
are analysed independently end to end; their classes are matched one to one and compared.

Matching: the Hungarian algorithm (scipy's linear_sum_assignment) on the mean FSC between
class maps over shells 1..k, k where the consensus half maps' FSC falls to 0.5 (the
frequencies the data resolve; low shells carry compositional differences).

Agreement of a matched pair is judged at the consensus half maps' 0.5 resolution, against
what the two class maps' own half maps predict there. Maps of one structure from fewer
particles, or of a lighter structure, reach less than the consensus half maps' 0.5 (half
the particles give FSC 1/3 where the halves give 0.5; docs/validation.md), so a fixed 0.5
would call every small class irreproducible. Each class map's half-map FSC f gives its
full map's SNR, S = 2 f / (1 - f), and two independent maps of the same structure with
SNRs S_a and S_b are expected to reach FSC sqrt(S_a S_b / ((1 + S_a)(1 + S_b))); for
equal maps that is 2 f / (1 + f), the relation between half-map and full-map FSC. A pair
agrees when its FSC there is at least that expectation minus ``fsc_margin`` and its
populations differ by at most ``population_tolerance`` percentage points: different
structures in the two halves fall below the expectation, however many particles each
has. The analysis is reproducible when both halves found the same number of classes and
every matched pair agrees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from .errors import InputError
from .fsc import fsc_table, resolution_at
from .table import SUBSETS

FSC_THRESHOLD = 0.5


def match(score: np.ndarray) -> list[tuple[int, int]]:
    """One-to-one pairs (row, column) maximising the total score (rectangular allowed)."""
    rows, cols = linear_sum_assignment(np.asarray(score, dtype=np.float64), maximize=True)
    return list(zip(rows.tolist(), cols.tolist(), strict=True))


def fsc_at(table: pd.DataFrame, resolution: float) -> float:
    """FSC interpolated at a resolution (Angstrom), linear in spatial frequency."""
    shells = table[table["shell"] >= 1]
    return float(np.interp(1.0 / resolution, 1.0 / shells["resolution"], shells["fsc"]))


def expected_fsc(half_fsc_a: float, half_fsc_b: float) -> float:
    """FSC expected between two maps of one structure whose own half maps reach
    half_fsc_a and half_fsc_b at the same shell (noise independent between all four)."""
    s_a, s_b = (2.0 * f / (1.0 - f) for f in np.clip([half_fsc_a, half_fsc_b], 0.0, 0.999))
    return float(np.sqrt(s_a * s_b / ((1.0 + s_a) * (1.0 + s_b))))


@dataclass(frozen=True)
class Reproducibility:
    """The comparison of the two halves' classes."""

    table: pd.DataFrame  # one row per matched (or unmatched) class
    n_even: int
    n_odd: int
    consensus_resolution: float  # Angstrom, consensus half maps' FSC = 0.5
    population_tolerance: float
    fsc_margin: float
    fsc: dict[tuple[int, int], pd.DataFrame]  # FSC curve of each matched pair
    consensus_fsc: pd.DataFrame  # FSC of the consensus half maps

    @property
    def reproducible(self) -> bool:
        return self.n_even == self.n_odd and bool(self.table["agrees"].all())

    def verdict(self) -> str:
        """One plain-language paragraph: the verdict and its reasons."""
        if self.n_even != self.n_odd:
            reasons = [f"the even half has {self.n_even} classes and the odd half {self.n_odd}"]
        else:
            reasons = [f"both halves have {self.n_even} classes"]
        matched = self.table.dropna(subset=["class_even", "class_odd"])
        reasons += self._populations(matched) + self._maps(matched)
        word = "reproducible" if self.reproducible else "not reproducible"
        return f"{word.capitalize()}: " + "; ".join(reasons) + "."

    def _populations(self, matched: pd.DataFrame) -> list[str]:
        diff = (matched["percent_even"] - matched["percent_odd"]).abs()
        far = matched[diff > self.population_tolerance]
        if len(far):
            pairs = ", ".join(
                f"{r.class_even}/{r.class_odd} ({r.percent_even:.1f}% vs {r.percent_odd:.1f}%)"
                for r in far.itertuples()
            )
            return [
                f"populations of matched classes (even/odd) differ by more than "
                f"{self.population_tolerance:g} points: {pairs}"
            ]
        return [
            f"populations of matched classes agree within {diff.max():.1f} points "
            f"(tolerance {self.population_tolerance:g})"
        ]

    def _maps(self, matched: pd.DataFrame) -> list[str]:
        res = self.consensus_resolution
        weak = matched[matched["fsc_at_consensus"] < matched["fsc_expected"] - self.fsc_margin]
        listing = ", ".join(
            f"{r.class_even}/{r.class_odd} {r.fsc_at_consensus:.2f} (expected {r.fsc_expected:.2f})"
            for r in (weak if len(weak) else matched).itertuples()
        )
        where = f"at {res:.1f} A, where the consensus half maps reach FSC 0.5"
        if len(weak):
            return [f"matched class maps disagree {where}: {listing}"]
        return [
            f"matched class maps agree {where}, as well as their own half maps predict for "
            f"one structure: {listing}"
        ]


def compare_halves(
    classes: tuple[pd.DataFrame, pd.DataFrame],
    maps: tuple[Sequence[np.ndarray], Sequence[np.ndarray]],
    class_fsc: tuple[Sequence[pd.DataFrame], Sequence[pd.DataFrame]],
    consensus_halves: tuple[np.ndarray, np.ndarray],
    apix: float,
    *,
    mask: np.ndarray | None = None,
    population_tolerance: float = 10.0,
    fsc_margin: float = 0.1,
) -> Reproducibility:
    """Match and compare the classes of the even and odd halves.

    classes: per half, a class table with ``cluster``, ``particles`` and ``percent``
    (rows in the order of ``maps``); maps: per half, one map per class; class_fsc: per
    half, the FSC of each class map's own half maps (same order, same mask);
    consensus_halves: the maps of all even and all odd particles; mask: optional soft
    mask for every FSC.
    """
    even, odd = maps
    if not len(even) or not len(odd):
        raise InputError("reproducibility: each half needs at least one class map")
    if [len(t) for t in class_fsc] != [len(even), len(odd)]:
        raise InputError("reproducibility: expected one half-map FSC table per class map")
    w = 1.0 if mask is None else mask
    consensus = fsc_table(consensus_halves[0] * w, consensus_halves[1] * w, apix)
    res = resolution_at(consensus, FSC_THRESHOLD)
    curves = {
        (i, j): fsc_table(a * w, b * w, apix) for i, a in enumerate(even) for j, b in enumerate(odd)
    }
    top = max(1, int(round(even[0].shape[0] * apix / res)))
    score = np.zeros((len(even), len(odd)))
    for (i, j), curve in curves.items():
        score[i, j] = curve["fsc"].to_numpy()[1 : top + 1].mean()
    pairs = match(score)
    info = [c.reset_index(drop=True) for c in classes]
    rows = []
    for i, j in pairs:
        a, b = info[0].loc[i], info[1].loc[j]
        rows.append(
            {
                "class_even": a["cluster"],
                "class_odd": b["cluster"],
                "percent_even": a["percent"],
                "percent_odd": b["percent"],
                "particles_even": a["particles"],
                "particles_odd": b["particles"],
                "mean_fsc": score[i, j],
                "resolution_0.5": resolution_at(curves[(i, j)], FSC_THRESHOLD),
                "fsc_at_consensus": fsc_at(curves[(i, j)], res),
                "fsc_expected": expected_fsc(
                    fsc_at(class_fsc[0][i], res), fsc_at(class_fsc[1][j], res)
                ),
            }
        )
    for half, name in enumerate(SUBSETS):
        for k in sorted(set(range(len(maps[half]))) - {p[half] for p in pairs}):
            row = info[half].loc[k]
            rows.append(
                {
                    f"class_{name}": row["cluster"],
                    f"percent_{name}": row["percent"],
                    f"particles_{name}": row["particles"],
                }
            )
    table = pd.DataFrame(rows, columns=[*rows[0]]).astype(
        {"class_even": "Int64", "class_odd": "Int64"}
    )
    diff = (table["percent_even"] - table["percent_odd"]).abs()
    close = table["fsc_at_consensus"] >= table["fsc_expected"] - fsc_margin
    table["agrees"] = (diff <= population_tolerance) & close
    table["consensus_resolution_0.5"] = res
    return Reproducibility(
        table=table,
        n_even=len(even),
        n_odd=len(odd),
        consensus_resolution=res,
        population_tolerance=population_tolerance,
        fsc_margin=fsc_margin,
        fsc={
            (int(info[0].loc[i, "cluster"]), int(info[1].loc[j, "cluster"])): curves[(i, j)]
            for i, j in pairs
        },
        consensus_fsc=consensus,
    )
