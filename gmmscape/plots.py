"""Figures of the landscape stage (PNG, matplotlib's Agg backend, no display needed)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import ndimage  # noqa: E402

from .clustering import UNASSIGNED  # noqa: E402

_CMAP = plt.get_cmap("tab10")


def _colour(label: int):
    return (0.6, 0.6, 0.6, 1.0) if label == UNASSIGNED else _CMAP(label % 10)


def _save(fig, path: str | os.PathLike) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def scatter(
    xy: np.ndarray, labels: np.ndarray, path: str | os.PathLike, axes: tuple[str, str]
) -> None:
    """Points of a 2D view coloured by cluster (grey: unassigned), subsampled to 50,000."""
    xy, labels = np.asarray(xy), np.asarray(labels)
    show = np.random.default_rng(0).permutation(len(xy))[:50_000]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    size = float(np.clip(2000 / max(len(show), 1), 0.5, 12))
    for k in np.unique(labels):
        pick = show[labels[show] == k]
        name = "unassigned" if k == UNASSIGNED else f"class {k}"
        ax.scatter(xy[pick, 0], xy[pick, 1], s=size, color=_colour(k), label=name, linewidths=0)
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.legend(markerscale=max(1.0, 8 / size), fontsize="small", loc="best")
    _save(fig, path)


def density(
    xy: np.ndarray, labels: np.ndarray, path: str | os.PathLike, axes: tuple[str, str]
) -> None:
    """Particle density of a 2D view (log scale), each class labelled at its median point.

    A histogram with about sqrt(n)/2 bins a side (20-120), smoothed over a bin."""
    xy, labels = np.asarray(xy), np.asarray(labels)
    fig, ax = plt.subplots(figsize=(6, 5))
    bins = int(np.clip(np.sqrt(len(xy)) / 2, 20, 120))
    counts, xe, ye = np.histogram2d(xy[:, 0], xy[:, 1], bins=bins)
    image = ax.imshow(
        np.log1p(ndimage.gaussian_filter(counts.T, 1.0)),
        origin="lower",
        extent=(xe[0], xe[-1], ye[0], ye[-1]),
        aspect="auto",
        interpolation="bilinear",
        cmap="Greys",
    )
    fig.colorbar(image, ax=ax, label="log(1 + particles per bin)")
    for k in np.unique(labels[labels != UNASSIGNED]):
        cx, cy = np.median(xy[labels == k], axis=0)
        ax.text(cx, cy, str(k), color=_colour(k), fontsize=14, weight="bold", ha="center")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    _save(fig, path)


def fsc_curves(
    curves: Mapping[str, pd.DataFrame],
    path: str | os.PathLike,
    title: str = "",
    ylim: tuple[float, float] = (-0.1, 1.05),
) -> None:
    """FSC against spatial frequency (1/Angstrom) with the 0.5 and 0.143 thresholds."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, table in curves.items():
        shells = table[table["shell"] >= 1]
        ax.plot(1.0 / shells["resolution"], shells["fsc"], label=name)
    for level in (0.5, 0.143):
        ax.axhline(level, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC")
    ax.set_ylim(*ylim)
    ax.set_title(title)
    if len(curves) <= 12:
        ax.legend(fontsize="small")
    _save(fig, path)


def quiver(
    start: np.ndarray, end: np.ndarray, path: str | os.PathLike, scale: float, title: str = ""
) -> None:
    """Gaussian centres (N, 3 box fractions) and their displacement start -> end, seen along
    z (x-y) and along y (x-z); ``scale`` converts box fractions to Angstrom."""
    start, end = np.asarray(start) * scale, np.asarray(end) * scale
    move = end - start
    length = np.linalg.norm(move, axis=1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5), layout="constrained")
    for ax, (i, j) in zip(axes, ((0, 1), (0, 2)), strict=True):
        ax.scatter(start[:, i], start[:, j], s=3, color="lightgrey")
        arrows = ax.quiver(
            start[:, i],
            start[:, j],
            move[:, i],
            move[:, j],
            length,
            angles="xy",
            scale_units="xy",
            scale=1.0,
            cmap="viridis",
            width=0.004,
        )
        ax.set_xlabel("xyz"[i] + " (Å)")
        ax.set_ylabel("xyz"[j] + " (Å)")
        ax.set_aspect("equal")
    fig.colorbar(arrows, ax=axes, label="displacement (Å)")
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def landscape_figures(table: pd.DataFrame, outdir: str | os.PathLike) -> list[str]:
    """Scatter and density PNGs of each 2D view in a landscape table (pca, and umap when
    present), coloured by cluster; returns the file names written in outdir. Junk
    particles (no coordinates) are left out."""
    names = []
    for view in ("pc", "umap"):
        axes = (f"{view}0", f"{view}1")
        if not set(axes) <= set(table.columns):
            continue
        shown = table.dropna(subset=list(axes))
        xy, labels = shown[list(axes)].to_numpy(), shown["cluster"].to_numpy()
        prefix = "pca" if view == "pc" else view
        for kind, draw in (("scatter", scatter), ("density", density)):
            name = f"{prefix}_{kind}.png"
            draw(xy, labels, os.path.join(outdir, name), axes)
            names.append(name)
    return names
