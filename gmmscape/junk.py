"""Junk particles: images that are not views of the molecule (empty, pure noise, inverted
contrast, ice or carbon), found as statistical outliers of the data set.

Four numbers per particle, each judged against the data set's own distribution:
- ``std``: log of the image's standard deviation (the data set's noise sets the scale,
  so no absolute normalisation is needed): an empty or flattened image is far below,
  ice, carbon or an edge far above;
- ``mean``: the image's mean in units of the data set's median standard deviation (a
  background offset; phase-flipped particles are centred near 0);
- ``peak``: the largest |pixel - mean| of the image blurred with a Gaussian of box/16
  pixels, in units of the data set's median blurred standard deviation: a bright or
  dark blob much stronger than the particle (an ice crystal, a gold bead), which the
  blur lifts out of the pixel noise;
- ``frc``: the mean FRC over the training band between the image and the neutral
  model's projection in the particle's pose: pure noise and wrong-contrast images
  correlate less (or negatively) than any real view.

The rule is robust: z = (x - median) / (1.4826 MAD), with median and MAD over the data
set, so the junk itself (up to a large fraction) barely moves them; 1.4826 MAD is the
standard deviation of a normal distribution. ``std`` and ``mean`` are flagged on both
sides, ``peak`` above only, ``frc`` below only, beyond ``threshold``; a constant image
or one with a non-finite pixel is junk outright. The table lists every particle with
its four statistics, their z and the reason it is junk ("" for a good particle).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf
from matplotlib.figure import Figure

from .io.common import atomic_output
from .plots import save_figure
from .projection import FourierGrid, frc_loss, images_ft, particle_graph
from .streaming import ParticleSet, sequential_chunks

log = logging.getLogger(__name__)

MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation
# Statistic -> which side is junk: +1 too high, -1 too low, 0 either.
SIDES = {"std": 0, "mean": 0, "peak": 1, "frc": -1}
REASONS = {
    ("std", 1): "image std too high (ice, carbon?)",
    ("std", -1): "image std too low (empty?)",
    ("mean", 1): "image mean offset",
    ("mean", -1): "image mean offset",
    ("peak", 1): "bright spot (ice, bead?)",
    ("frc", -1): "low FRC to the neutral model (noise, inverted contrast?)",
}


@dataclass(frozen=True)
class JunkSettings:
    threshold: float | None = 4.0  # robust z beyond which a particle is junk; None: off
    batch: int = 256


def robust_z(values: np.ndarray) -> np.ndarray:
    """(x - median) / (1.4826 MAD) over the finite values; 0 where the MAD is 0."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros_like(values)
    median = np.median(finite)
    mad = MAD_TO_SIGMA * np.median(np.abs(finite - median))
    return (values - median) / mad if mad > 0 else np.zeros_like(values)


def _mean_frc(gmm, rot, shift, i_re, i_im, grid: FourierGrid) -> tf.Tensor:
    return 1.0 - frc_loss(gmm, rot, shift, i_re, i_im, grid)


def _frc_function(grid: FourierGrid, n_gaussians: int):
    return particle_graph(_mean_frc, grid, n_gaussians)


def particle_statistics(
    gmm: np.ndarray, particles: ParticleSet, grid: FourierGrid, batch: int = 256
) -> pd.DataFrame:
    """std, mean, peak and frc (module docstring) of every particle, in table order;
    `finite` and `constant` mark images that need no statistics to be junk."""
    mean_frc = _frc_function(grid, len(gmm))
    model = tf.constant(np.asarray(gmm, np.float32))
    parts = []
    for rows in sequential_chunks(particles.n, batch):
        images = particles.images(rows).astype(np.float64)
        finite = np.isfinite(images).all(axis=(1, 2))
        clean = np.where(np.isfinite(images), images, 0.0)
        mean, std = clean.mean(axis=(1, 2)), clean.std(axis=(1, 2))
        constant = std == 0
        safe = np.where(constant, 1.0, std)
        blurred = _blur(clean - mean[:, None, None], max(1.0, particles.box / 16))
        i_re, i_im = images_ft(clean.astype(np.float32), grid)
        rot, shift = particles.rotations[rows], particles.shifts[rows]
        corr = mean_frc(model, rot, shift, i_re, i_im)
        corr = corr.numpy().astype(np.float64)
        parts.append(
            pd.DataFrame(
                {
                    "std": np.log(safe),
                    "mean": mean,
                    "peak": np.abs(blurred).max(axis=(1, 2)),
                    "blur_std": blurred.std(axis=(1, 2)),
                    "frc": corr,
                    "finite": finite,
                    "constant": constant,
                }
            )
        )
    stats = pd.concat(parts, ignore_index=True)
    usable = stats["finite"] & ~stats["constant"]
    stats.loc[~usable, ["std", "mean", "peak", "frc"]] = np.nan
    if usable.any():  # in units of the data set's typical (blurred) image std
        stats["mean"] /= np.exp(np.nanmedian(stats["std"]))
        stats["peak"] /= np.median(stats.loc[usable, "blur_std"])
    return stats.drop(columns="blur_std")


def _blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Images (k, b, b) convolved with a periodic Gaussian of `sigma` pixels."""
    k = np.fft.fftfreq(images.shape[-2])[:, None] ** 2 + np.fft.rfftfreq(images.shape[-1]) ** 2
    kernel = np.exp(-2 * (np.pi * sigma) ** 2 * k)
    return np.fft.irfft2(np.fft.rfft2(images) * kernel, s=images.shape[-2:])


def flag_junk(stats: pd.DataFrame, threshold: float | None) -> pd.Series:
    """The reason each particle is junk ("" if it is not), by the robust rule: the
    statistic furthest beyond the threshold names it. Adds the ``<name>_z`` columns."""
    excess = {}
    for name, side in SIDES.items():
        z = robust_z(stats[name].to_numpy())
        stats[f"{name}_z"] = z
        for sign in (1, -1):
            if side in (0, sign):
                excess[REASONS[(name, sign)]] = np.nan_to_num(sign * z, nan=-np.inf)
    reason = pd.Series("", index=stats.index, dtype=object)
    if threshold is not None:
        names, values = list(excess), np.column_stack(list(excess.values()))
        hit = values.max(axis=1) > threshold
        reason[hit] = [names[k] for k in values[hit].argmax(axis=1)]
    reason[stats["constant"].to_numpy()] = "constant image"
    reason[~stats["finite"].to_numpy()] = "non-finite pixels"
    return reason


def find_junk(
    gmm: np.ndarray,
    particles: ParticleSet,
    out: str | os.PathLike,
    *,
    res_lo: float | None,
    res_hi: float | None,
    settings: JunkSettings = JunkSettings(),
) -> pd.DataFrame:
    """Write the junk table (every particle: index, statistics, z, reason) to `out`;
    returns it. The FRC band is the training's (res_lo, res_hi)."""
    grid = FourierGrid(particles.box, particles.apix, res_lo, res_hi)
    stats = particle_statistics(gmm, particles, grid, settings.batch)
    stats["reason"] = flag_junk(stats, settings.threshold)
    stats.insert(0, "index", particles.index)
    junk = stats["reason"] != ""
    log.info(
        "junk: %d of %d particles (%s)",
        junk.sum(),
        particles.n,
        ", ".join(f"{k}: {v}" for k, v in stats.loc[junk, "reason"].value_counts().items()),
    )
    with atomic_output(Path(out)) as tmp:
        stats.to_csv(tmp, index=False)
    return stats


def junk_rows(table: pd.DataFrame) -> dict[int, str]:
    """Table row -> reason of the junk particles of a junk table."""
    reasons = table["reason"].astype("string").fillna("")  # read back: "" becomes NaN
    return {int(r): str(reasons[r]) for r in np.flatnonzero(reasons.to_numpy() != "")}


def plot_junk(
    table: pd.DataFrame,
    particles: ParticleSet,
    threshold: float | None,
    path: str | os.PathLike,
    examples: int = 8,
) -> None:
    """The report's figure: each statistic's robust z (good and junk particles, the
    threshold) and a row of junk images with their reasons."""
    junk = (table["reason"] != "").to_numpy()
    rows = np.flatnonzero(junk)[:examples]
    columns = max(len(SIDES), examples)
    fig = Figure(figsize=(12, 5.5 if len(rows) else 3.2), dpi=100)
    grid = fig.add_gridspec(
        2 if len(rows) else 1, columns, height_ratios=[1.3, 1][: 1 + bool(len(rows))]
    )
    span = columns // len(SIDES)
    for k, name in enumerate(SIDES):
        ax = fig.add_subplot(grid[0, k * span : (k + 1) * span])
        z = table.get(f"{name}_z", pd.Series(np.zeros(len(table)))).to_numpy()
        for mask, label in ((~junk, "good"), (junk, "junk")):
            values = z[mask & np.isfinite(z)]
            if values.size:
                ax.hist(values, bins=40, alpha=0.6, label=f"{label} ({mask.sum()})")
        if threshold is not None:
            for sign in (1, -1):
                if SIDES[name] in (0, sign):
                    ax.axvline(sign * threshold, color="k", ls="--", lw=1)
        ax.set_yscale("log")
        ax.set_xlabel(f"{name} (robust z)")
        if k == 0:
            ax.legend(fontsize=7)
    for k, row in enumerate(rows):
        ax = fig.add_subplot(grid[1, k])
        ax.imshow(particles.images(np.array([row]))[0], cmap="gray")
        ax.set_title(
            f"{table['index'].iloc[row]}: {table['reason'].iloc[row]}", fontsize=6, wrap=True
        )
        ax.axis("off")
    fig.suptitle(f"{junk.sum()} junk of {len(table)} particles")
    fig.tight_layout()
    save_figure(fig, path)


JUNK_KINDS = ("noise", "inverted", "zero", "blob")


def add_simulated_junk(
    stack: str | os.PathLike, fraction: float = 0.05, seed: int = 0
) -> dict[int, str]:
    """Replace a fraction of a stack's images, in place, by junk of four kinds in turn
    (validation data): pure noise as strong as a particle image's, inverted contrast,
    all zero, and a bright ice-like blob (3 pixels wide, twice the particle's brightest
    pixel) added to the particle. Returns {stack row: kind}."""
    import mrcfile

    rng = np.random.default_rng(seed)
    with mrcfile.mmap(stack, mode="r+") as mrc:
        data = mrc.data
        n, box, _ = data.shape
        noise = float(np.median(data.std(axis=(1, 2))))
        y, x = np.mgrid[:box, :box]
        kinds = {}
        for k, row in enumerate(rng.choice(n, int(round(fraction * n)), replace=False)):
            kind = kinds[int(row)] = JUNK_KINDS[k % len(JUNK_KINDS)]
            if kind == "noise":
                data[row] = rng.normal(0.0, noise, (box, box))
            elif kind == "inverted":
                data[row] = -data[row]
            elif kind == "zero":
                data[row] = 0.0
            else:
                cy, cx = rng.uniform(4, box - 4, 2)
                blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * 3.0**2))
                data[row] = data[row] + 2 * np.abs(data[row]).max() * blob
    return kinds


def junk_recovery(table: pd.DataFrame, kinds: dict[int, str]) -> dict[str, float]:
    """Fractions flagged: of all simulated junk, of each kind, and of the good particles
    (table rows are stack rows, as in an import's particles.csv)."""
    flagged = (table["reason"] != "").to_numpy()
    truth = np.zeros(len(table), bool)
    truth[list(kinds)] = True
    scores = {"junk": float(flagged[truth].mean()), "good": float(flagged[~truth].mean())}
    for kind in JUNK_KINDS:
        scores[kind] = float(flagged[[r for r, k in kinds.items() if k == kind]].mean())
    return scores
