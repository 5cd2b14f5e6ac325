"""Any point of the latent space, decoded and reconstructed (paper: "the 2,000 particles
closest to three linear points"), and the two user-drawn trajectories of e2gmm's
evaluation: a line between two points and a circle on two axes.

A point is written as the user reads it off a landscape: ``pc0=1.2,pc1=-0.3`` (scores
on the PCA axes of latent.csv's pc0, pc1 columns; unnamed components 0, i.e. at the
particles' mean), ``z0=0.4,z2=0.1`` (latent coordinates; unnamed ones 0, the neutral
model) or ``0.4,0,0.1,0`` (all d latent coordinates). Each point is decoded to a GMM and
the particles nearest to it in the latent space are reconstructed with half maps and
their FSC, so the model and the data at the point can be compared.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from .errors import InputError
from .images import ImageSource
from .reconstruct import reconstruct_with_halves, write_half_maps
from .trajectory import LatentDecoder, Trajectory, nearest_particles, neighbourhood_radius

_NAMED = re.compile(r"^(pc|z)(\d+)$")


def _axis(name: str, latent_dim: int) -> tuple[str, int]:
    """('pc' or 'z', index) of an axis name such as pc0 or z3, checked against d."""
    match = _NAMED.match(name.strip())
    if match is None:
        raise InputError(f"axis {name!r}: expected pcK or zK (e.g. pc0, z1)")
    kind, k = match.group(1), int(match.group(2))
    if k >= latent_dim:
        raise InputError(
            f"axis {name!r}: the latent has {latent_dim} dimensions (0-{latent_dim - 1})"
        )
    return kind, k


def _number(text: str, point: str) -> float:
    try:
        return float(text)
    except ValueError as err:
        raise InputError(
            f"point {point!r}: {text!r} is not a number (e.g. pc0=1.5,pc1=-0.2)"
        ) from err


def parse_point(text: str, latent_dim: int, pca: PCA) -> np.ndarray:
    """The latent vector (d,) of a point written as ``pc0=..,pc1=..``, ``z0=..`` or
    ``z0,z1,..`` (module docstring); pc scores map back through the PCA's inverse."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise InputError(f"point {text!r}: empty; expected e.g. pc0=1.5,pc1=-0.2 or z0,z1,..")
    if all("=" not in p for p in parts):
        if len(parts) != latent_dim:
            raise InputError(
                f"point {text!r}: expected {latent_dim} latent coordinates, got {len(parts)}"
            )
        return np.asarray([_number(p, text) for p in parts], dtype=np.float64)
    named = {}
    for part in parts:
        key, _, value = part.partition("=")
        named[_axis(key, latent_dim)] = _number(value, text)
    kinds = {kind for kind, _ in named}
    if len(kinds) != 1:
        raise InputError(f"point {text!r}: expected pcK=.. or zK=.. terms, not both or none")
    vector = np.zeros(latent_dim)
    for (_, k), number in named.items():
        vector[k] = number
    return pca.inverse_transform(vector[None])[0] if kinds == {"pc"} else vector


@dataclass(frozen=True)
class Circle:
    """Points centre + r (cos a u + sin a w) at angles a (degrees) on two latent axes."""

    name: str
    centre: np.ndarray  # (d,)
    axes: np.ndarray  # (2, d) orthonormal
    radius: float
    t: np.ndarray  # (n_points,) angles in degrees

    @property
    def latent(self) -> np.ndarray:
        a = np.deg2rad(self.t)[:, None]
        return self.centre[None] + self.radius * (
            np.cos(a) * self.axes[0][None] + np.sin(a) * self.axes[1][None]
        )


def line_trajectory(name: str, start: np.ndarray, end: np.ndarray, n_points: int) -> Trajectory:
    """Points evenly from ``start`` to ``end`` (t = latent distance from start)."""
    start, end = np.asarray(start, np.float64), np.asarray(end, np.float64)
    length = float(np.linalg.norm(end - start))
    if length == 0.0:
        raise InputError(f"line {name}: its two points are the same")
    if n_points < 2:
        raise InputError(f"line {name}: expected at least 2 points, got {n_points}")
    return Trajectory(name, start, (end - start) / length, np.linspace(0.0, length, n_points))


def circle_trajectory(
    name: str,
    latent: np.ndarray,
    pca: PCA,
    axes: tuple[str, str],
    n_points: int,
    radius: float | None = None,
) -> Circle:
    """A circle about the particles' mean in the plane of two axes (pcK: PCA eigenvectors,
    zK: latent axes), ``n_points`` at equal angles from 0; the radius defaults to the
    median distance of the particles from the mean within that plane (a ring of
    particles, as in a cyclic motion, is then traced through its middle)."""
    latent = np.asarray(latent, np.float64)
    d = latent.shape[1]
    picked = [_axis(a, d) for a in axes]
    if len(picked) != 2 or picked[0] == picked[1]:
        raise InputError(f"circle {name}: expected two different axes, got {list(axes)}")
    vectors = np.stack([pca.components_[k] if kind == "pc" else np.eye(d)[k] for kind, k in picked])
    if abs(vectors[0] @ vectors[1]) > 1e-6:
        raise InputError(
            f"circle {name}: axes {list(axes)} are not orthogonal; use pcK or zK pairs"
        )
    centre = latent.mean(axis=0)
    if radius is None:
        radius = float(np.median(np.linalg.norm((latent - centre) @ vectors.T, axis=1)))
    if not radius > 0:
        raise InputError(f"circle {name}: expected a positive radius, got {radius}")
    if n_points < 3:
        raise InputError(f"circle {name}: expected at least 3 points, got {n_points}")
    angles = np.arange(n_points) * (360.0 / n_points)
    return Circle(name, centre, vectors, float(radius), angles)


def reconstruct_points(
    points: np.ndarray,
    decoder: LatentDecoder,
    outdir: str | os.PathLike,
    *,
    latent: np.ndarray,
    rows: np.ndarray,
    table: pd.DataFrame,
    source: ImageSource,
    pca: PCA,
    count: int = 2000,
    wiener: float = 1e-3,
    mask: np.ndarray | None = None,
    interpolation: str = "trilinear",
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Every output of a list of latent points (M, d) in outdir:

    - gmm/point_KKK.txt/.pdb/.mrc: the decoded GMMs (gmmscape.decode.write_points);
    - map_KKK.mrc, map_KKK_half1/2.mrc, map_KKK_fsc.csv: the ``count`` particles nearest
      each point (``latent`` (n, d) of the particles at ``rows`` of ``table``);
    - points.csv (also returned): point, z0.., pc0, pc1, particles, radius (latent
      distance of the farthest particle used), resolution_0.143, resolution_0.5.
    The optional ``mask`` (at the source's box) multiplies the half maps before the FSC.
    """
    from .decode import write_points  # Keras: only where a trained decoder is used

    outdir = Path(outdir)
    points = np.atleast_2d(np.asarray(points, np.float64))
    write_points(decoder, points.astype(np.float32), outdir / "gmm")
    nearest = nearest_particles(latent, points, count)
    results = reconstruct_with_halves(
        table, source, [rows[n] for n in nearest], wiener=wiener, mask=mask,
        interpolation=interpolation, progress=progress,
    )  # fmt: skip
    for k, result in enumerate(results):
        write_half_maps(result, outdir / f"map_{k:03d}", source.apix)
    summary = pd.DataFrame(points, columns=[f"z{i}" for i in range(points.shape[1])])
    summary.insert(0, "point", np.arange(len(points)))
    scores = pca.transform(points)
    summary["pc0"] = scores[:, 0]
    summary["pc1"] = scores[:, 1] if scores.shape[1] > 1 else 0.0
    summary["particles"] = [r.n_particles for r in results]
    summary["radius"] = neighbourhood_radius(latent, points, nearest)
    summary["resolution_0.143"] = [r.resolution(0.143) for r in results]
    summary["resolution_0.5"] = [r.resolution(0.5) for r in results]
    summary.to_csv(outdir / "points.csv", index=False)
    return summary


def reconstruct_at(
    texts: list[str],
    decoder_dir: str | os.PathLike,
    latent_table: str | os.PathLike,
    import_dir: str | os.PathLike,
    outdir: str | os.PathLike,
    *,
    count: int = 2000,
    mask: str | os.PathLike | None = None,
    wiener: float = 1e-3,
    interpolation: str = "trilinear",
    scale: str = "crop",
    table: str | os.PathLike | None = None,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """``reconstruct_points`` of points written as text (``parse_point``), from the files
    of a run: its decoder, its latent table (train/ or landscape/{run}/latent.csv; junk
    rows without a latent are left out) and the import (particles.csv, stack, meta);
    ``table``: the particle table with the run's poses instead of the import's (refined;
    for a latent of symmetry copies the expanded one beside the import by default)."""
    from .decode import load_decoder
    from .embedding import embedded, fit_pca, latent_columns
    from .importer import load_meta, load_table
    from .masks import read_mask
    from .reconstruct import copies, reconstruction_source, table_rows

    if not texts:
        raise InputError("reconstruct: give latent points with --at and/or --latent")
    decoder = load_decoder(decoder_dir)
    landscape = embedded(pd.read_csv(latent_table))
    latent = landscape[latent_columns(landscape)].to_numpy(np.float64)
    if latent.shape[1] != decoder.latent_dim:
        raise InputError(
            f"{latent_table}: {latent.shape[1]} latent columns, but the decoder of "
            f"{decoder_dir} takes {decoder.latent_dim}"
        )
    pca = fit_pca(latent)
    points = np.stack([parse_point(t, decoder.latent_dim, pca) for t in texts])
    import_dir = Path(import_dir)
    if table is None and "copy" in landscape:  # the workflow's symmetry/import/
        table = import_dir.parent / "symmetry" / import_dir.name / "particles.csv"
    table = load_table(table or import_dir / "particles.csv")
    meta = load_meta(import_dir / "meta.json")
    source = reconstruction_source(table, import_dir, meta, scale)
    rows = table_rows(table, landscape["index"].to_numpy(), copies(landscape))
    return reconstruct_points(
        points, decoder, outdir, latent=latent, rows=rows, table=table, source=source,
        pca=pca, count=count, wiener=wiener, mask=read_mask(mask, source.box),
        interpolation=interpolation, progress=progress,
    )  # fmt: skip


def user_trajectories(
    settings: dict, latent: np.ndarray, pca: PCA, n_points: int
) -> list[Trajectory | Circle]:
    """The config's drawn trajectories (landscape.trajectory ``lines``: name -> [start,
    end]; ``circles``: name -> {axes, radius}), named line_<name> and circle_<name>."""
    d = latent.shape[1]
    drawn: list[Trajectory | Circle] = []
    for name, (start, end) in (settings.get("lines") or {}).items():
        ends = (parse_point(start, d, pca), parse_point(end, d, pca))
        drawn.append(line_trajectory(f"line_{name}", *ends, n_points))
    for name, circle in (settings.get("circles") or {}).items():
        drawn.append(
            circle_trajectory(
                f"circle_{name}", latent, pca, tuple(circle["axes"]), n_points, circle.get("radius")
            )
        )
    return drawn
