"""Point-group symmetry expansion (``symmetry: Cn | Dn``): every particle becomes one copy
per symmetry operator, so a decoder that may change only one asymmetric unit (ASU) maps
each subunit of each particle to its own latent point (paper: "every particle as three
copies in the symmetrical orientations").

Operators follow RELION (``relion_refine --sym``, ``relion_particle_symmetry_expand``):
Cn is the n-fold axis along z, Dn adds the 2-fold axis along x. RELION lists the
operators as matrices R acting on the orientation from the right: copy k of a particle
of orientation A has the orientation A @ R_k, with the same origin offsets, and copy 0 is
the particle itself (R_0 = I). For Cn, R_j = Rz(j 360/n) in RELION's Euler convention
(gmmscape.geometry: a rotation of the map by -j 360/n about z); for Dn the list goes on
with the 2-fold X = diag(1, -1, -1), then R_j @ X for j = 1..n-1, the order in which
RELION closes the group from its two generators.

Why the right side: a Gaussian at c (map frame) lands at A @ c in the image, so at the
pose A @ R_k the model's Gaussian at c projects where the particle's density at R_k @ c
does. Copy k thus shows the decoder's ASU the subunit that the operator R_k carries the
ASU to; on a symmetric map all copies project alike.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

from .errors import InputError
from .geometry import matrix_to_relion, relion_to_matrix
from .masks import mask_inside
from .table import COPY, ROTATION_COLUMNS

_GROUP = re.compile(r"^([CD])([1-9][0-9]?)$")


def parse_group(group: str) -> tuple[str, int]:
    """'C3' -> ('C', 3), 'd2' -> ('D', 2); InputError for anything but Cn and Dn."""
    match = _GROUP.match(str(group).strip().upper())
    if match is None:
        raise InputError(f"symmetry: expected C1, Cn or Dn (e.g. C3, D2), got {group!r}")
    return match.group(1), int(match.group(2))


def operators(group: str) -> np.ndarray:
    """The group's operators (K, 3, 3) in RELION's order, the identity first."""
    kind, n = parse_group(group)
    turns = relion_to_matrix(0.0, 0.0, np.arange(n) * (360.0 / n))  # Rz(j 360/n)
    if kind == "C":
        return turns
    flip = np.diag([1.0, -1.0, -1.0])  # the 2-fold about x
    return np.concatenate([turns, turns @ flip])


def is_expanded(group: str) -> bool:
    """Whether the group expands particles into more than one copy (anything but C1)."""
    return len(operators(group)) > 1


def expand_table(table: pd.DataFrame, group: str) -> pd.DataFrame:
    """One row per (particle, copy), particle by particle, with a ``copy`` column after
    ``index``; a table with poses (the import's canonical columns) gets every copy's
    rotation A @ R_k (matrix and RELION angles), shifts unchanged. Other per-particle
    tables (junk) are repeated as they are, so their rows still match."""
    ops = operators(group)
    if COPY in table:
        raise InputError(f"symmetry: the table is already expanded (it has a {COPY!r} column)")
    k = len(ops)
    out = table.loc[table.index.repeat(k)].reset_index(drop=True)
    out.insert(int(out.columns.get_loc("index")) + 1, COPY, np.tile(np.arange(k), len(table)))
    if set(ROTATION_COLUMNS) <= set(table.columns):
        rot = table[ROTATION_COLUMNS].to_numpy(np.float64).reshape(-1, 1, 3, 3)
        composed = (rot @ ops[None]).reshape(-1, 3, 3)
        out[ROTATION_COLUMNS] = composed.reshape(-1, 9)
        if {"rot", "tilt", "psi"} <= set(table.columns):
            out[["rot", "tilt", "psi"]] = matrix_to_relion(composed)
    return out


def write_expanded(source: str | os.PathLike, target: str | os.PathLike, group: str) -> int:
    """expand_table of a CSV table written atomically to target; returns the rows written."""
    from .io.common import atomic_output

    table = pd.read_csv(source, dtype={"source": "string"})
    out = expand_table(table, group)
    with atomic_output(target) as tmp:
        out.to_csv(tmp, index=False)
    return len(out)


def _ray_distance(xy: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Distance (C, N) from points (N, 2) to rays from the origin at angles (C,) radians."""
    u = np.stack([np.cos(angles), np.sin(angles)], -1)  # (C, 2)
    along = u @ xy.T  # (C, N)
    across = np.abs(u[:, :1] * xy[None, :, 1] - u[:, 1:] * xy[None, :, 0])
    return np.where(along > 0, across, np.linalg.norm(xy, axis=1)[None])


def wedge_start(neutral: np.ndarray, n: int, candidates: int = 360) -> float:
    """Azimuth (radians) where the ASU wedges' edges cut through the least of the model:
    the rays at start + j 2 pi / n that pass farthest from the Gaussians' centres
    (amplitude-weighted Gaussian falloff of each centre's distance to its nearest ray,
    on the scale of the Gaussians' widths), so no subunit is split between two ASUs."""
    xy, amp = np.asarray(neutral[:, :2], np.float64), np.asarray(neutral[:, 3], np.float64)
    scale = 2.0 * float(np.median(neutral[:, 4]))
    starts = np.arange(candidates) * (2.0 * np.pi / n / candidates)
    rays = (starts[:, None] + np.arange(n)[None] * (2.0 * np.pi / n)).reshape(-1)
    dist = _ray_distance(xy, rays).reshape(candidates, n, -1).min(axis=1)  # (C, N)
    cost = (amp[None] * np.exp(-0.5 * (dist / scale) ** 2)).sum(axis=1)
    return float(starts[np.argmin(cost)])


def asu_inside(neutral: np.ndarray, group: str) -> np.ndarray:
    """(N,) bool: the Gaussians of the first asymmetric unit of a Cn or Dn model, derived
    from the model: the wedge of 360/n degrees about z that holds the +x direction, its
    edges where the model is thinnest (``wedge_start``); for Dn only its z > 0 half."""
    kind, n = parse_group(group)
    neutral = np.asarray(neutral, np.float64)
    sector = 2.0 * np.pi / n
    start = wedge_start(neutral, n)
    azimuth = np.arctan2(neutral[:, 1], neutral[:, 0])
    wedge = np.floor(np.mod(azimuth - start, 2.0 * np.pi) / sector)
    inside = wedge == np.floor(np.mod(-start, 2.0 * np.pi) / sector)
    if kind == "D":
        inside &= neutral[:, 2] > 0
    if not inside.any():
        raise InputError(f"symmetry {group}: no Gaussian of the neutral GMM lies in the first ASU")
    return inside


def free_gaussians(
    group: str,
    neutral: np.ndarray,
    particles,
    *,
    asu_mask: str | os.PathLike | None = None,
    inside: np.ndarray | None = None,
    apix: float | None = None,
) -> np.ndarray | None:
    """The Gaussians training may change: with symmetry, those of one ASU (``asu_mask``,
    else ``asu_inside``) and of ``inside`` (train.mask) when given; C1: ``inside``."""
    if not is_expanded(group):
        return inside
    if asu_mask is not None:
        asu = mask_inside(asu_mask, neutral, particles, apix=apix)
    else:
        asu = asu_inside(neutral, group)
    if inside is None:
        return asu
    both = asu & inside
    if not both.any():
        raise InputError(f"symmetry {group}: no Gaussian lies both in the ASU and in train.mask")
    return both


def copy_recovery(latent: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """Scores of a latent table of oligomer copies (gmmscape.phantoms.oligomer_system;
    ``truth``: its ground-truth rows, state and coordinate, for latent's ``index``): copy
    k shows subunit k, so it holds the change when the moved subunit is k. ``ari``: the
    2-means split of z0 against changed / resting copies; ``rho_moved``: |Spearman| of z0
    with the moved domain's coordinate over the changed copies; ``rho_every``: over every
    copy, resting ones at 0."""
    from scipy.stats import spearmanr
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from .phantoms import OLIGOMER_COORDINATES

    moved = truth["state"].to_numpy() // len(OLIGOMER_COORDINATES)
    changed = moved == latent[COPY].to_numpy()
    coordinate = np.where(changed, truth["coordinate"].to_numpy(), 0.0)
    z = latent[["z0"]].to_numpy(np.float64)
    labels = KMeans(2, n_init=10, random_state=0).fit_predict(z)
    return {
        "ari": float(adjusted_rand_score(changed, labels)),
        "rho_moved": float(abs(spearmanr(z[changed, 0], coordinate[changed])[0])),
        "rho_every": float(abs(spearmanr(z[:, 0], coordinate)[0])),
    }
