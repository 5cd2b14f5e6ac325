"""Fourier shell correlation between two maps, per shell, with resolutions in Angstrom.

Shell k holds the Fourier voxels with |k| in [k - 0.5, k + 0.5) (rounded radius, in
cycles per box), up to Nyquist (b/2). Sums run over the half-space rfftn grid with
every column but kx = 0 and kx = b/2 counted twice, which equals the sums over the
whole (complex) grid. A shift common to both maps does not change the FSC, so the
maps are transformed as they are. Used for GMM vs map, class maps and half maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd

from .errors import InputError
from .fourier import check_box


@cache
def shell_weights(box: int) -> tuple[np.ndarray, np.ndarray]:
    """Shell index and half-space weight of every rfftn voxel of a cube, both (b, b, b//2+1).

    Voxels beyond Nyquist get the index b//2 + 1 (an overflow shell callers drop).
    Cached and read-only: every FSC of a box shares them.
    """
    half = check_box(box) // 2
    k = np.fft.fftfreq(box, 1.0 / box)
    kx = np.arange(half + 1, dtype=np.float64)
    radius = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + kx[None, None, :] ** 2)
    shell = np.minimum(np.rint(radius), half + 1).astype(np.int32)
    weight = np.broadcast_to(np.where((kx == 0) | (kx == half), 1.0, 2.0), shell.shape)
    for a in (shell, weight):
        a.flags.writeable = False
    return shell, weight


def _check_pair(a: np.ndarray, b: np.ndarray) -> int:
    if a.shape != b.shape or a.ndim != 3 or len(set(a.shape)) != 1:
        raise InputError(f"FSC needs two cubic maps of the same size, got {a.shape} and {b.shape}")
    return check_box(a.shape[0], "map box")


def fsc_curve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """FSC of two cubic maps [z, y, x] for shells 0..b//2 (float64, shell 0 = DC)."""
    box = _check_pair(a, b)
    fa = np.fft.rfftn(np.asarray(a, dtype=np.float64))
    fb = np.fft.rfftn(np.asarray(b, dtype=np.float64))
    shell, weight = shell_weights(box)
    n = box // 2 + 2

    def shell_sum(x: np.ndarray) -> np.ndarray:
        return np.bincount(shell.ravel(), weights=(weight * x).ravel(), minlength=n)[: n - 1]

    cross = shell_sum((fa * fb.conj()).real)
    norm = np.sqrt(shell_sum(np.abs(fa) ** 2) * shell_sum(np.abs(fb) ** 2))
    return np.divide(cross, norm, out=np.zeros_like(cross), where=norm > 0)


def fsc_table(a: np.ndarray, b: np.ndarray, apix: float) -> pd.DataFrame:
    """FSC per shell: columns ``shell`` (0..b//2), ``resolution`` (Angstrom, inf at DC), ``fsc``."""
    curve = fsc_curve(a, b)
    shell = np.arange(len(curve))
    with np.errstate(divide="ignore"):
        resolution = a.shape[0] * float(apix) / shell
    return pd.DataFrame({"shell": shell, "resolution": resolution, "fsc": curve})


def resolution_at(table: pd.DataFrame, threshold: float = 0.143) -> float:
    """Resolution (Angstrom) where the FSC first drops below ``threshold``.

    Linear interpolation in spatial frequency between the last shell above and the first
    below, searching from shell 1 (DC says nothing about resolution). Returns the shell-1
    resolution if the FSC is already below there, Nyquist if it never drops below.
    """
    shell = table["shell"].to_numpy()
    fsc = table["fsc"].to_numpy()
    res = table["resolution"].to_numpy()
    below = np.flatnonzero((shell >= 1) & (fsc < threshold))
    if len(below) == 0:
        return float(res[-1])
    i = below[0]
    if shell[i] == 1:
        return float(res[i])
    frac = (fsc[i - 1] - threshold) / (fsc[i - 1] - fsc[i])
    k = shell[i - 1] + frac * (shell[i] - shell[i - 1])
    return float(res[i] * shell[i] / k)


def fsc_weighted(volume: np.ndarray, fsc: np.ndarray) -> np.ndarray:
    """The map with each shell scaled by sqrt(2 FSC / (1 + FSC)) (FSC clipped to [0, 1]),
    the figure-of-merit weighting a refinement applies to its output map: a consensus map
    as a user has it, filtered to what the half maps support."""
    box = check_box(np.asarray(volume).shape[0], "map box")
    f = np.clip(np.asarray(fsc, dtype=np.float64), 0.0, 1.0)
    weight = np.append(np.sqrt(2.0 * f / (1.0 + f)), 0.0)  # overflow shell (corners): 0
    weight[0] = 1.0
    shell, _ = shell_weights(box)
    ft = np.fft.rfftn(np.asarray(volume, dtype=np.float64)) * weight[shell]
    return np.fft.irfftn(ft, s=volume.shape).astype(np.float32)


@dataclass(frozen=True)
class SpectralSNR:
    """One particle's spectral SNR per shell, against spatial frequency (1/Angstrom)."""

    frequency: np.ndarray
    ssnr: np.ndarray

    def at(self, frequency: np.ndarray) -> np.ndarray:
        """SSNR at the given frequencies: linear between shells, 0 beyond the last."""
        return np.interp(frequency, self.frequency, np.maximum(self.ssnr, 0.0), right=0.0)

    def to_dict(self) -> dict[str, list[float]]:
        return {
            "frequency": [round(float(f), 6) for f in self.frequency],
            "ssnr": [float(f"{s:.4g}") for s in self.ssnr],
        }

    @classmethod
    def from_dict(cls, doc: dict) -> SpectralSNR:
        return cls(np.asarray(doc["frequency"], float), np.asarray(doc["ssnr"], float))
