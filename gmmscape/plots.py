"""Figures of the workflow (PNG), drawn on matplotlib Figure objects (no global figure
state, no backend to select), each written atomically by ``save_figure``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import ndimage

from .clustering import UNASSIGNED
from .io.common import atomic_output

_CMAP = matplotlib.colormaps["tab10"]
RESOLUTION_TICKS = (100, 50, 30, 20, 15, 10, 8, 6, 5, 4, 3, 2.5, 2)  # Angstrom, top axis


def _colour(label: int):
    return (0.6, 0.6, 0.6, 1.0) if label == UNASSIGNED else _CMAP(label % 10)


def save_figure(fig: Figure, path: str | os.PathLike, dpi: float | None = None) -> None:
    """Write a figure in the format of the path's suffix (at ``dpi``, default the figure's)
    to a temporary file beside ``path``, renamed into place when complete."""
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix[1:] or "png", dpi=dpi)


def scatter(
    xy: np.ndarray, labels: np.ndarray, path: str | os.PathLike, axes: tuple[str, str]
) -> None:
    """Points of a 2D view coloured by cluster (grey: unassigned), subsampled to 50,000."""
    xy, labels = np.asarray(xy), np.asarray(labels)
    show = np.random.default_rng(0).permutation(len(xy))[:50_000]
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    size = float(np.clip(2000 / max(len(show), 1), 0.5, 12))
    for k in np.unique(labels):
        pick = show[labels[show] == k]
        name = "unassigned" if k == UNASSIGNED else f"class {k}"
        ax.scatter(xy[pick, 0], xy[pick, 1], s=size, color=_colour(k), label=name, linewidths=0)
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.legend(markerscale=max(1.0, 8 / size), fontsize="small", loc="best")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def density(
    xy: np.ndarray, labels: np.ndarray, path: str | os.PathLike, axes: tuple[str, str]
) -> None:
    """Particle density of a 2D view (log scale), each class labelled at its median point.

    A histogram with about sqrt(n)/2 bins a side (20-120), smoothed over a bin."""
    xy, labels = np.asarray(xy), np.asarray(labels)
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
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
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def fsc_curves(
    curves: Mapping[str, pd.DataFrame],
    path: str | os.PathLike,
    title: str = "",
    ylim: tuple[float, float] = (-0.1, 1.05),
) -> None:
    """FSC against spatial frequency (1/Angstrom) with the 0.5 and 0.143 thresholds."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
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
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def quiver(
    start: np.ndarray, end: np.ndarray, path: str | os.PathLike, scale: float, title: str = ""
) -> None:
    """Gaussian centres (N, 3 box fractions) and their displacement start -> end, seen along
    z (x-y) and along y (x-z); ``scale`` converts box fractions to Angstrom."""
    start, end = np.asarray(start) * scale, np.asarray(end) * scale
    move = end - start
    length = np.linalg.norm(move, axis=1)
    fig = Figure(figsize=(10, 5), layout="constrained")
    axes = fig.subplots(1, 2)
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
    save_figure(fig, path, dpi=120)


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


def plot_fsc(
    path: str | os.PathLike,
    tables: Mapping[str, pd.DataFrame],
    target_resolution: float,
    threshold: float = 0.95,
) -> None:
    """PNG of FSC(GMM, map) against spatial frequency, one curve per labelled table.

    Marks the acceptance threshold and the target resolution; the top axis reads in
    Angstrom. Tables are ``gmmfit.evaluate``/``fsc.fsc_table`` outputs (shell, resolution, fsc).
    """
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.subplots()
    for label, table in tables.items():
        shells = table[table["shell"] >= 1]
        ax.plot(1.0 / shells["resolution"], shells["fsc"], label=label)
    ax.axhline(threshold, color="grey", ls="--", lw=1, label=f"FSC {threshold:g}")
    ax.axvline(1.0 / target_resolution, color="red", ls=":", lw=1.2)
    ax.annotate(
        f" target {target_resolution:g} Å",
        (1.0 / target_resolution, 0.02),
        xycoords=("data", "axes fraction"),
        color="red",
    )
    ax.set(xlabel="spatial frequency (1/Å)", ylabel="FSC(GMM, map)", ylim=(-0.05, 1.02))
    ax.set_xlim(0.0, None)
    inverse = (lambda f: 1.0 / np.maximum(f, 1e-6), lambda r: 1.0 / np.maximum(r, 1e-6))
    top = ax.secondary_xaxis("top", functions=inverse)
    top.set_xticks([r for r in RESOLUTION_TICKS if 1.0 / r <= ax.get_xlim()[1]])
    top.set_xlabel("resolution (Å)")
    ax.legend(loc="lower left", fontsize="small")
    save_figure(fig, path, dpi=120)


def plot_loss(history: pd.DataFrame, path: str | os.PathLike) -> None:
    """A training run's loss per epoch: the total and its 1 - FRC part (train.train)."""
    fig = Figure(figsize=(5, 3.5), dpi=100)
    ax = fig.subplots()
    ax.plot(history["epoch"], history["loss"], "o-", label="total")
    ax.plot(history["epoch"], history["frc_loss"], "s--", label="1 - FRC")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def plot_changes(changes: pd.DataFrame, path: str | os.PathLike, title: str) -> None:
    """Histograms of the rotation and shift changes of a refinement round (refine.pose_changes)."""
    fig = Figure(figsize=(8, 3.2), dpi=100)
    axes = fig.subplots(1, 2)
    for ax, column, label in zip(
        axes, ("rotation_deg", "shift_px"), ("rotation change (degrees)", "shift change (pixels)"),
        strict=True,
    ):  # fmt: skip
        ax.hist(changes[column], bins=40)
        ax.set_xlabel(label)
        ax.set_ylabel("particles")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
