"""What each Fourier ring and each pixel of a particle weigh in the FRC loss.

The paper's FRC gives every ring of the band the same say and ignores the CTF's
amplitude on phase-flipped images. At a real data set's SNR (0.01-0.1) most rings of
a single particle hold little signal: the rings near its CTF zeros hold none, and the
fine rings far less than the coarse ones, so an unweighted mean lets noise dominate
both the encoder's features and the decoder's loss. In terms of the FRC, a particle's
log-likelihood under white noise weighs ring r by about n_r sqrt(SSNR_r) (n_r pixels,
SSNR_r one particle's spectral SNR there) and each pixel of the model's projection by
|CTF|: the matched filter. ``frc_weights: snr`` does that:

- the projection is multiplied by the particle's |CTF| (gmmscape.projection.frc_loss);
- ring r weighs n_r sqrt(SSNR_r / <a_r^2>) x a_ir, with a_ir the particle's mean |CTF|
  in ring r and <a_r^2> its mean square over the data set (SSNR_r, measured from
  CTF-corrected half maps, already averages the CTF over the particles).

SSNR comes from the half-map FSC measured when the run's settings are chosen
(gmmscape.choices), stored in choices.yaml. ``flat`` is the paper's FRC.
"""

from __future__ import annotations

import numpy as np

from .ctf import CTFParams, ctf_2d
from .errors import InputError
from .fsc import SpectralSNR
from .projection import FourierGrid
from .streaming import ParticleSet

WEIGHTINGS = ("snr", "flat")
CTF_SAMPLE = 10_000  # particles whose CTF gives the data set's mean square per ring


def check_weighting(value: str) -> str:
    if value not in WEIGHTINGS:
        raise InputError(f"train.frc_weights: expected one of {', '.join(WEIGHTINGS)}, got {value}")
    return value


def ctf_amplitude(particles: ParticleSet, rows: np.ndarray, grid: FourierGrid) -> np.ndarray:
    """(k, ny, nx) float32 |CTF| of the rows' particles on the grid; ones where the CTF
    is unknown or already applied to the images (a premultiplied stack)."""
    shape = (len(rows), *grid.shape)
    if particles.ctf is None:
        return np.ones(shape, np.float32)
    params = CTFParams(
        **{k: np.broadcast_to(v, (particles.n,))[rows] for k, v in vars(particles.ctf).items()}
    )
    amplitude = grid.crop(np.abs(ctf_2d(params, particles.box, particles.apix)))
    return np.nan_to_num(amplitude, nan=1.0).astype(np.float32)


def weighted_grid(
    grid: FourierGrid, particles: ParticleSet, snr: SpectralSNR | None
) -> FourierGrid:
    """The grid with ring weights n_r sqrt(SSNR_r / <a_r^2>) (module docstring); the
    grid unchanged without a measured SSNR."""
    if snr is None:
        return grid
    ssnr = snr.at(grid.ring_frequency())
    if not (ssnr > 0).any():
        return grid
    rows = np.linspace(0, particles.n - 1, min(particles.n, CTF_SAMPLE)).astype(np.int64)
    mean_square = np.zeros(grid.n_rings)
    rings = grid.ring_matrix()
    per_ring = rings / np.maximum(rings.sum(axis=0), 1e-12)
    for start in range(0, len(rows), 512):
        chunk = rows[start : start + 512]
        means = ctf_amplitude(particles, chunk, grid).reshape(len(chunk), -1) @ per_ring
        mean_square += np.square(means, dtype=np.float64).sum(axis=0)
    mean_square /= len(rows)
    weights = grid.ring_pixels() * np.sqrt(ssnr / np.maximum(mean_square, 1e-6))
    weights = np.maximum(weights, 1e-3 * weights.max())  # no ring dropped entirely
    return FourierGrid(
        grid.box, grid.apix, grid.res_lo, grid.res_hi, tuple(float(w) for w in weights)
    )


def frc_setup(
    particles: ParticleSet, grid: FourierGrid, weighting: str, snr: SpectralSNR | None
) -> tuple[FourierGrid, bool]:
    """The loss grid and whether to apply each particle's CTF, for a weighting."""
    if check_weighting(weighting) == "flat":
        return grid, False
    return weighted_grid(grid, particles, snr), particles.ctf is not None
