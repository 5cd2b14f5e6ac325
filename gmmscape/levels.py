"""Levels of the coarse-to-fine neutral GMM (gmmscape.gmmfit fits them).

Apart from gmmfit because the workflow's rules plan the levels when the workflow is
parsed (rules/common.smk, scripts/rulekit.py), without importing TensorFlow.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError


def level_counts(start_n: int, target_n: int) -> list[int]:
    """Gaussians per level: N doubles from start_n up to target_n."""
    if not 1 <= start_n <= target_n:
        raise InputError(f"gmm: expected 1 <= start N <= target N, got {start_n} and {target_n}")
    counts = [start_n]
    while counts[-1] < target_n:
        counts.append(min(2 * counts[-1], target_n))
    return counts


def level_schedule(
    start_n: int, target_n: int, start_res: float, target_res: float
) -> list[tuple[int, float]]:
    """(n, resolution) per level: N doubles up to target_n, resolution falls geometrically."""
    counts = level_counts(start_n, target_n)
    if not start_res >= target_res > 0:
        raise InputError(
            f"gmm: expected start resolution >= target resolution > 0 A, got {start_res} and "
            f"{target_res}"
        )
    if len(counts) == 1:
        return [(start_n, float(target_res))]
    resolutions = np.geomspace(start_res, target_res, len(counts))
    return [(n, float(r)) for n, r in zip(counts, resolutions, strict=True)]
