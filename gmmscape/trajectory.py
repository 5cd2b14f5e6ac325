"""Motion trajectories: lines through the latent space decoded to GMMs (paper, spliceosome).

Two kinds of line:
- PCA eigenvectors: points mean + t v_i for t from the 5th to the 95th percentile of the
  particles' scores on PC i, mapped back to the latent by the PCA inverse;
- localized eigen-motions: the origin-crossing direction v whose decoded motion of the
  Gaussian centres between -s v and +s v is largest inside a region (mask) and smallest
  outside, i.e. maximising mean_in |D|^2 / mean_out |D|^2 with
  D(v) = centres(decode(s v)) - centres(decode(-s v)). With the secant Jacobian
  J = [D(e_k) / 2s]_k this ratio is the Rayleigh quotient v^T A v / v^T B v
  (A, B = J^T J over the inside / outside Gaussians), so the generalised eigenvector of
  (A, B) starts a direct search of the exact ratio over unit vectors (Nelder-Mead), which
  accounts for the decoder's nonlinearity.
Each point is decoded to a GMM, and the particles nearest to it in the latent space are
reconstructed, so the motion is seen both in the model and in the data.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from scipy.linalg import eigh
from scipy.optimize import minimize
from scipy.spatial import cKDTree
from sklearn.decomposition import PCA

from .errors import InputError
from .images import ImageSource
from .io.mrc import write_map
from .plots import quiver
from .reconstruct import reconstruct_sets


class LatentDecoder(Protocol):
    """What trajectories need of a trained decoder (gmmscape.decode.load_decoder)."""

    @property
    def latent_dim(self) -> int: ...

    @property
    def neutral(self) -> np.ndarray:  # (N, 5)
        ...

    @property
    def box(self) -> int:  # box and pixel size of the training particles
        ...

    @property
    def apix(self) -> float: ...

    def decode(self, z: np.ndarray) -> np.ndarray:  # (M, d) -> (M, N, 5)
        ...


@dataclass(frozen=True)
class Trajectory:
    """Points origin + t * direction of the latent space (t ascending)."""

    name: str
    origin: np.ndarray  # (d,)
    direction: np.ndarray  # (d,) unit vector
    t: np.ndarray  # (n_points,)

    @property
    def latent(self) -> np.ndarray:
        """(n_points, d) latent vectors of the points."""
        return self.origin[None] + self.t[:, None] * self.direction[None]


def _span(scores: np.ndarray, n_points: int, percentiles: tuple[float, float]) -> np.ndarray:
    if n_points < 2:
        raise InputError(f"landscape.trajectory.points: expected at least 2, got {n_points}")
    lo, hi = np.percentile(scores, percentiles)
    return np.linspace(lo, hi, n_points)


def pc_trajectories(
    latent: np.ndarray,
    pca: PCA,
    n_components: int,
    n_points: int = 7,
    percentiles: tuple[float, float] = (5.0, 95.0),
) -> list[Trajectory]:
    """One trajectory along each of the first ``n_components`` PCA eigenvectors
    (names pc1, pc2, ...), spanning the given percentiles of the particles' scores.

    Its points mean + t v_i are PCA's inverse transform of t e_i (no whitening)."""
    scores = pca.transform(latent)
    return [
        Trajectory(
            f"pc{i + 1}", pca.mean_, pca.components_[i], _span(scores[:, i], n_points, percentiles)
        )
        for i in range(min(n_components, pca.n_components_))
    ]


def _centres(decoder: LatentDecoder, z: np.ndarray) -> np.ndarray:
    return np.asarray(decoder.decode(np.asarray(z, dtype=np.float32)))[..., :3].astype(np.float64)


def _motion(decoder: LatentDecoder, v: np.ndarray, scale: float) -> np.ndarray:
    """Centre displacements (N, 3) from decode(-s v) to decode(+s v)."""
    ends = _centres(decoder, np.stack([-scale * v, scale * v]))
    return ends[1] - ends[0]


def _ratio(move: np.ndarray, inside: np.ndarray) -> float:
    """mean |D|^2 inside over mean |D|^2 outside (tiny floor: a still outside is best)."""
    sq = (move**2).sum(axis=1)
    return float(sq[inside].mean() / (sq[~inside].mean() + 1e-12 * sq.mean() + 1e-30))


def localized_direction(
    decoder: LatentDecoder, inside: np.ndarray, scale: float
) -> tuple[np.ndarray, float]:
    """Unit latent direction (d,) maximising the inside/outside motion ratio, and the ratio.

    ``inside`` (N,) bool marks the Gaussians of the region; ``scale`` is the latent
    distance s from the origin at which the motion is measured. The sign is fixed so the
    largest component is positive.
    """
    inside = np.asarray(inside, dtype=bool)
    if inside.all() or not inside.any():
        raise InputError(
            f"region mask: {inside.sum()} of {len(inside)} Gaussians inside; expected some "
            "inside and some outside"
        )
    d = int(decoder.latent_dim)
    jac = np.stack([_motion(decoder, e, scale) for e in np.eye(d)], -1) / (2 * scale)  # (N,3,d)
    a = np.einsum("nik,nil->kl", jac[inside], jac[inside]) / inside.sum()
    b = np.einsum("nik,nil->kl", jac[~inside], jac[~inside]) / (~inside).sum()
    b += (1e-9 * np.trace(b) / d + 1e-30) * np.eye(d)
    start = eigh(a, b)[1][:, -1]

    def cost(v: np.ndarray) -> float:
        return -_ratio(_motion(decoder, v / np.linalg.norm(v), scale), inside)

    best = minimize(cost, start / np.linalg.norm(start), method="Nelder-Mead")
    v = best.x if best.fun < cost(start) else start
    v = v / np.linalg.norm(v)
    v = v if v[np.argmax(np.abs(v))] > 0 else -v
    return v, -cost(v)


def localized_trajectory(
    latent: np.ndarray,
    decoder: LatentDecoder,
    inside: np.ndarray,
    name: str,
    n_points: int = 7,
    percentiles: tuple[float, float] = (5.0, 95.0),
) -> tuple[Trajectory, float]:
    """The localized eigen-motion of a region as a trajectory through the origin, spanning
    the percentiles of the particles' projections on it; also returns its motion ratio.

    The motion is measured at s = the 95th percentile of the latent norms (where the
    particles are)."""
    latent = np.asarray(latent, dtype=np.float64)
    scale = float(np.percentile(np.linalg.norm(latent, axis=1), 95)) or 1.0
    v, ratio = localized_direction(decoder, inside, scale)
    t = _span(latent @ v, n_points, percentiles)
    return Trajectory(name, np.zeros_like(v), v, t), ratio


def particles_per_point(n_particles: int, n_points: int, count: int) -> int:
    """Particles reconstructed per point: ``count``, or n/n_points for small data sets, so
    the points' particle sets do not overlap much."""
    return max(1, min(int(count), n_particles // n_points))


def nearest_particles(latent: np.ndarray, points: np.ndarray, k: int) -> list[np.ndarray]:
    """Row positions of the k particles nearest (Euclidean, latent space) to each point."""
    k = min(k, len(latent))
    _, rows = cKDTree(np.asarray(latent, np.float64)).query(np.asarray(points, np.float64), k=k)
    return [np.sort(np.atleast_1d(r)) for r in rows.reshape(len(points), k)]


def neighbourhood_radius(
    latent: np.ndarray, points: np.ndarray, nearest: list[np.ndarray]
) -> list[float]:
    """Latent distance from each point to the farthest of its nearest particles."""
    return [
        float(np.linalg.norm(latent[n] - p, axis=1).max())
        for n, p in zip(nearest, points, strict=True)
    ]


class Series(Protocol):
    """Points of the latent space in order: a Trajectory, or another curve with the same
    ``name``, ``t`` (n_points,) and ``latent`` (n_points, d) (gmmscape.points)."""

    @property
    def name(self) -> str: ...

    @property
    def t(self) -> np.ndarray: ...

    @property
    def latent(self) -> np.ndarray: ...


def decode_points(decoder: LatentDecoder, trajectory: Series) -> np.ndarray:
    """GMMs (n_points, N, 5) along a trajectory."""
    return np.asarray(decoder.decode(trajectory.latent.astype(np.float32)), dtype=np.float64)


def displacement(gmms: np.ndarray) -> np.ndarray:
    """Per-Gaussian centre displacement (N,) between the first and last GMM (box fractions)."""
    return np.linalg.norm(gmms[-1, :, :3] - gmms[0, :, :3], axis=1)


def chimerax_script(gmm_maps: list[str], maps: list[str], title: str) -> str:
    """A ChimeraX .cxc that opens the decoded-GMM maps (#1) and the reconstructions (#2) as
    volume series and plays both back and forth. Paths are relative to the script, which
    ChimeraX resolves when the script is opened (`open chimerax.cxc`)."""
    lines = [f"# {title}", "# Open in a fresh ChimeraX session: open chimerax.cxc"]
    for model, files in ((1, gmm_maps), (2, maps)):
        lines.append(f"open {' '.join(files)} vseries true")
        lines.append(f"vseries play #{model} loop true direction oscillate maxFrameRate 5")
    return "\n".join(lines) + "\n"


def write_trajectory(
    trajectory: Series,
    decoder: LatentDecoder,
    outdir: str | os.PathLike,
    *,
    latent: np.ndarray,
    rows: np.ndarray,
    table: pd.DataFrame,
    source: ImageSource,
    count: int = 2000,
    wiener: float = 1e-3,
    interpolation: str = "trilinear",
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Every output of one trajectory in outdir:

    - gmm/point_KKK.txt/.pdb/.mrc: the decoded GMMs (gmmscape.decode.write_points);
    - map_KKK.mrc: reconstructions of the particles nearest each point;
    - quiver.png: Gaussian displacements from the first to the last point;
    - chimerax.cxc: plays both series;
    - trajectory.csv (also returned): point, t, z0.., particles, radius (latent distance
      of the farthest particle used).
    ``latent`` (n, d) are the run's particles, ``rows`` their positions in ``table``.
    """
    from .decode import write_points  # Keras: only where a trained decoder is used

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    points = trajectory.latent
    write_points(decoder, points.astype(np.float32), outdir / "gmm")
    gmms = decode_points(decoder, trajectory)
    scale = decoder.box * decoder.apix
    quiver(gmms[0, :, :3], gmms[-1, :, :3], outdir / "quiver.png", scale, trajectory.name)

    k = particles_per_point(len(latent), len(points), count)
    nearest = nearest_particles(latent, points, k)
    volumes = reconstruct_sets(
        table, source, [rows[n] for n in nearest], interpolation=interpolation, progress=progress
    )
    names = [f"map_{i:03d}.mrc" for i in range(len(points))]
    for name, volume in zip(names, volumes, strict=True):
        write_map(outdir / name, volume.volume(wiener), source.apix)
    gmm_maps = [f"gmm/point_{i:03d}.mrc" for i in range(len(points))]
    script = chimerax_script(gmm_maps, names, f"trajectory {trajectory.name}")
    (outdir / "chimerax.cxc").write_text(script)

    summary = pd.DataFrame(points, columns=[f"z{i}" for i in range(points.shape[1])])
    summary.insert(0, "t", trajectory.t)
    summary.insert(0, "point", np.arange(len(points)))
    summary["particles"] = k
    summary["radius"] = neighbourhood_radius(latent, points, nearest)
    summary.to_csv(outdir / "trajectory.csv", index=False)
    return summary
