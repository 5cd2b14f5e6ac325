"""Neutral GMM of a consensus map, coarse to fine (paper, Methods).

A level seeds (or splits) Gaussians and fits them to the map with Adam by maximising
the mean Fourier shell correlation between the GMM and the map over shells 1 to the
level's resolution. The GMM's 3D transform is analytic and separates over kx, ky, kz
like a projection's (gmmscape.projection), so on the band-cropped rfftn grid

    F(ky, kz, kx) = sum_j w_j gy_j(ky) [gz_j(kz) gx_j(kx)],   w_j = (2 pi)^{3/2} A_j sigma_j^3,

one elementwise outer product (kz, kx) per Gaussian and one GEMM over N. The loss is
then the acceptance criterion itself (FSC >= 0.95 below the target resolution), with
no projections of the map to make and no interpolation; on the demo's last level it
reached a higher FSC in less time than the paper's FRC of projections over 16 or 64
views (``bench/bench_gmmfit.py --compare``, docs/benchmarks.md).

Levels double N (each Gaussian split in two nearby ones) and raise the resolution
geometrically (``gmmscape.levels.level_schedule``). Amplitudes end on the map's scale
(least squares over the band), so ``density(gmm)`` overlays the map.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

import numpy as np
import pandas as pd
import tensorflow as tf

from .errors import InputError
from .fourier import check_cube
from .fsc import fsc_table, shell_weights
from .masks import drop_outside
from .projection import TWO_PI, FourierGrid, axis_factors, density, separable_sum

SIGMA_RANGE = (0.25, 1.0)  # widths allowed at a level, as fractions of its resolution
MIN_SIGMA_PX = 1.0  # narrower Gaussians alias on the voxel grid
SPLIT_OFFSET = 0.5  # distance of the two halves of a split Gaussian, in its sigma
SEED_THRESHOLD = 0.1  # seeds come from voxels above this fraction of the map's maximum
LEARNING_RATE = 0.1
REPORT_EVERY = 50

Log = Callable[[str], None] | TextIO | None


def _writer(log: Log) -> Callable[[str], None]:
    """A callable that emits one progress line to a callable, a stream or nowhere."""
    if log is None:
        return lambda line: None
    if callable(log):
        return log
    stream = log

    def write(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    return write


def sigma_range(resolution: float, box: int, apix: float) -> tuple[float, float]:
    """Allowed Gaussian widths (box fractions) at a level of the given resolution (Angstrom)."""
    lo, hi = (max(f * resolution / apix, MIN_SIGMA_PX) / box for f in SIGMA_RANGE)
    return lo, max(hi, 1.5 * lo)


def seed_gaussians(
    volume: np.ndarray,
    n: int,
    rng: np.random.Generator,
    sigma: float,
    threshold: float = SEED_THRESHOLD,
) -> np.ndarray:
    """n Gaussians of width sigma (box fraction) at voxels drawn with probability ~ density.

    Only voxels above threshold x max are candidates, so seeds land in the molecule, not
    the solvent; a sub-voxel jitter separates repeats. Amplitudes follow the local
    density, scaled so that the seeds hold the mass of the candidate voxels.
    """
    box = check_cube(volume)
    flat = np.asarray(volume, dtype=np.float64).ravel()
    top = flat.max()
    candidates = np.flatnonzero(flat > threshold * top) if top > 0 else np.array([], int)
    if len(candidates) == 0:
        raise InputError("map: no positive density to seed Gaussians from")
    p = flat[candidates] / flat[candidates].sum()
    pick = rng.choice(candidates, size=n, replace=len(candidates) < n, p=p)
    zyx = np.stack(np.unravel_index(pick, volume.shape), axis=1)
    pos = (zyx[:, ::-1] - box // 2 + rng.uniform(-0.5, 0.5, (n, 3))) / box
    amp = flat[pick]
    amp *= flat[candidates].sum() / (amp.sum() * TWO_PI**1.5 * (sigma * box) ** 3)
    return np.column_stack([pos, amp, np.full(n, sigma)]).astype(np.float32)


def split_gaussians(gmm: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Grow a GMM to n Gaussians by splitting the heaviest ones in two.

    Each split Gaussian becomes two of half its amplitude, SPLIT_OFFSET sigma apart along
    a random direction, so the mass is kept and the density changes only at the scale of
    its width. Splitting every Gaussian doubles N; a count below 2N splits the heaviest.
    """
    out = np.asarray(gmm, dtype=np.float32)
    if not 0 < len(out) <= n:
        raise InputError(f"gmm: cannot grow {len(out)} Gaussians to {n}")
    while len(out) < n:
        m = min(n - len(out), len(out))
        mass = out[:, 3] * out[:, 4] ** 3
        heavy = np.sort(np.argsort(-mass, kind="stable")[:m])
        direction = rng.standard_normal((m, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        offset = 0.5 * SPLIT_OFFSET * out[heavy, 4:5] * direction
        half = out[heavy] * np.array([1, 1, 1, 0.5, 1], np.float32)
        a, b = half.copy(), half.copy()
        a[:, :3] += offset
        b[:, :3] -= offset
        keep = np.delete(out, heavy, axis=0)
        out = np.concatenate([keep, a, b]).astype(np.float32)
    return out


@dataclass(frozen=True)
class ShellBand:
    """The rfftn voxels of a cube in shells 1..ring_hi, in (ky, kz, kx) order, flattened.

    ``index`` picks the voxels inside the band from the flattened band-cropped grid,
    ``shell`` (0-based from shell 1) and ``weight`` (half-space pairs) go with them.
    """

    grid: FourierGrid
    index: np.ndarray
    shell: np.ndarray
    weight: np.ndarray

    @classmethod
    def of(cls, box: int, apix: float, resolution: float) -> ShellBand:
        grid = FourierGrid(box, apix, None, resolution)
        shell, weight = (
            a[grid.rows][:, grid.rows][:, :, : len(grid.kx)] for a in shell_weights(box)
        )
        shell, weight = (a.transpose(1, 0, 2).ravel() for a in (shell, weight))
        index = np.flatnonzero((shell >= grid.ring_lo) & (shell <= grid.ring_hi))
        return cls(grid, index, shell[index] - grid.ring_lo, weight[index].astype(np.float32))

    def crop(self, volume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A map [z, y, x] -> (re, im) of its transform at the band's voxels."""
        ft = np.fft.rfftn(np.fft.ifftshift(np.asarray(volume, dtype=np.float64)))
        rows, nx = self.grid.rows, len(self.grid.kx)
        ft = ft[rows][:, rows][:, :, :nx].transpose(1, 0, 2).ravel()[self.index]
        return ft.real.astype(np.float32), ft.imag.astype(np.float32)


def gmm_ft(gmm: tf.Tensor, band: ShellBand) -> tuple[tf.Tensor, tf.Tensor]:
    """Analytic 3D transform (re, im) of a GMM (N, 5) at the band's voxels."""
    box, grid = band.grid.box, band.grid
    pos, sigma = gmm[:, :3] * box, gmm[:, 4]
    w = (TWO_PI**1.5) * gmm[:, 3] * (sigma * box) ** 3
    xr, xi = axis_factors(grid.kx, pos[:, 0], sigma, box)
    yr, yi = axis_factors(grid.ky, pos[:, 1], sigma, box)
    zr, zi = axis_factors(grid.ky, pos[:, 2], sigma, box)
    n = tf.shape(gmm)[0]

    def outer(a, b):
        return tf.reshape(a[:, :, None] * b[:, None, :], [n, -1])

    zx_r = outer(zr, xr) - outer(zi, xi)
    zx_i = outer(zr, xi) + outer(zi, xr)
    re, im = separable_sum(
        (w[:, None] * yr)[None], (w[:, None] * yi)[None], zx_r[None], zx_i[None]
    )  # (1, ny, nz * nx)
    return tf.gather(tf.reshape(re, [-1]), band.index), tf.gather(tf.reshape(im, [-1]), band.index)


def band_fsc(re, im, t_re, t_im, band: ShellBand, eps: float = 1e-20) -> tf.Tensor:
    """FSC per shell of the band (shells ring_lo..ring_hi) between two band transforms."""
    n = band.grid.n_rings

    def shell_sum(x):
        return tf.math.unsorted_segment_sum(band.weight * x, band.shell, n)

    cross = shell_sum(re * t_re + im * t_im)
    norm = tf.sqrt(shell_sum(re * re + im * im) * shell_sum(t_re * t_re + t_im * t_im) + eps)
    return cross / norm


class _Model(tf.Module):
    """Trainable GMM: positions in units of the base width, log amplitudes, logit widths.

    Adam's steps are about the learning rate in each raw variable, so these scales make
    one step move a Gaussian by a fraction of its width and change its amplitude or
    width by a few percent; amplitudes stay positive and widths inside their range.
    """

    def __init__(self, gmm: np.ndarray, sigma_lo: float, sigma_hi: float):
        super().__init__()
        gmm = np.asarray(gmm, dtype=np.float64)
        self.step = 0.5 * (sigma_lo + sigma_hi)
        self.amp_scale = float(np.mean(gmm[:, 3]))
        self.lo, self.span = sigma_lo, sigma_hi - sigma_lo
        frac = np.clip((gmm[:, 4] - sigma_lo) / self.span, 0.02, 0.98)
        self.pos = tf.Variable(gmm[:, :3] / self.step, dtype=tf.float32)
        self.log_amp = tf.Variable(
            np.log(np.maximum(gmm[:, 3] / self.amp_scale, 1e-6)), dtype=tf.float32
        )
        self.logit_sigma = tf.Variable(np.log(frac / (1.0 - frac)), dtype=tf.float32)

    def __call__(self) -> tf.Tensor:
        amp = self.amp_scale * tf.exp(self.log_amp)
        sigma = self.lo + self.span * tf.sigmoid(self.logit_sigma)
        return tf.concat([self.pos * self.step, amp[:, None], sigma[:, None]], axis=1)


def fit_level(
    gmm: np.ndarray,
    volume: np.ndarray,
    apix: float,
    resolution: float,
    epochs: int,
    log: Log = None,
    learning_rate: float = LEARNING_RATE,
) -> np.ndarray:
    """Fit a GMM to a map with Adam, maximising the mean FSC over shells 1..resolution.

    Widths are confined to the level's range (``sigma_range``); the result's amplitudes
    are rescaled to the map by least squares over the band.
    """
    box = check_cube(volume)
    band = ShellBand.of(box, apix, resolution)
    t_re, t_im = (tf.constant(a) for a in band.crop(volume))
    model = _Model(gmm, *sigma_range(resolution, box, apix))
    opt = tf.keras.optimizers.Adam(learning_rate)
    emit = _writer(log)

    @tf.function
    def step() -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            fsc = band_fsc(*gmm_ft(model(), band), t_re, t_im, band)
            loss = 1.0 - tf.reduce_mean(fsc)
        variables = model.trainable_variables
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss, tf.reduce_min(fsc)

    label = f"level N={len(gmm)} {resolution:.1f} A"
    for epoch in range(1, epochs + 1):
        loss, worst = step()
        if epoch % REPORT_EVERY == 0 or epoch in (1, epochs):
            emit(
                f"{label} epoch {epoch}/{epochs} loss {float(loss):.5f} "
                f"mean FSC {1.0 - float(loss):.4f} min FSC {float(worst):.4f}"
            )
    return _to_map_scale(model().numpy(), band, t_re, t_im)


def _to_map_scale(gmm: np.ndarray, band: ShellBand, t_re: tf.Tensor, t_im: tf.Tensor) -> np.ndarray:
    """Scale amplitudes by the least-squares factor onto the map's transform over the band.

    The FSC ignores scale; this puts ``density(gmm)`` on the map's scale for the outputs.
    """
    re, im = gmm_ft(tf.constant(gmm), band)
    w = band.weight
    scale = tf.reduce_sum(w * (re * t_re + im * t_im)) / tf.reduce_sum(w * (re * re + im * im))
    return gmm * np.array([1, 1, 1, float(scale), 1], np.float32)


def build_level(
    volume: np.ndarray,
    apix: float,
    prev_gmm: np.ndarray | None,
    n_gaussians: int,
    resolution: float,
    mask: np.ndarray | None = None,
    epochs: int = 300,
    seed: int = 0,
    log: Log = None,
) -> np.ndarray:
    """One coarse-to-fine level: seed (first level) or split ``prev_gmm``, fit, drop outside mask.

    The mask chooses where seeds go and which Gaussians are kept (the returned (N, 5)
    model may hold slightly fewer than ``n_gaussians``); the fit sees the unmasked map,
    since a mask's edge would add high-frequency content the map does not have. ``seed``
    drives the only random draws (seed positions, split directions): the fit itself draws
    nothing, so equal inputs give the same model. ``log``: a callable or a text stream
    that receives a progress line every REPORT_EVERY epochs.
    """
    box = check_cube(volume)
    if mask is not None and mask.shape != volume.shape:
        raise InputError(f"mask: shape {mask.shape} differs from the map's {volume.shape}")
    rng = np.random.default_rng(seed)
    if prev_gmm is None:
        lo, hi = sigma_range(resolution, box, apix)
        inside = volume if mask is None else volume * (mask > 0.5)
        gmm = seed_gaussians(inside, n_gaussians, rng, 0.5 * (lo + hi))
    else:
        gmm = split_gaussians(prev_gmm, n_gaussians, rng)
    gmm = fit_level(gmm, volume, apix, resolution, epochs, log)
    if mask is None:
        return gmm
    kept = drop_outside(gmm, mask)
    _writer(log)(f"level N={len(gmm)} {resolution:.1f} A: {len(gmm) - len(kept)} outside the mask")
    return kept


def evaluate(gmm: np.ndarray, volume: np.ndarray, apix: float) -> pd.DataFrame:
    """FSC table (shell, resolution, fsc) between the GMM's sampled density and the map."""
    box = check_cube(volume)
    return fsc_table(density(gmm, box), volume, apix)
