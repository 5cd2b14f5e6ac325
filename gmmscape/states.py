"""Classes that choose their own count: distinct states, compositional ones first.

A latent space holds motion and composition together, and a continuous motion
dominates its geometry: any fixed-count split of it cuts the motion. Composition
shows where it acts, in the decoded amplitudes: a domain missing from some particles
is a group of Gaussians that fades together. So ``find_classes``

1. decodes every particle's latent vector and takes the leading principal components
   of the decoded amplitudes (``AMPLITUDE_COMPONENTS``);
2. looks there for *distinct* groups (``distinct_groups``): groups are split in two
   while the density between the halves dips below ``DIP`` of the lower of their two
   peaks (any split cuts a continuum too; only a real gap between states counts);
3. if the amplitudes show no distinct groups, looks for them in the whitened latent
   space the same way;
4. if neither does, the landscape is one continuous class.

The reason for the outcome is returned with the labels, for the log and the report.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import gaussian_kde
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

AMPLITUDE_COMPONENTS = 3
DIP = 0.5  # density at the valley / lower peak density below which two groups are distinct
MIN_SHARE = 0.05  # a group smaller than this share of the particles is not a state
GRID = 64  # points along the line between two component means
FIT_POINTS = 20_000  # splits are fitted to at most this many points, then label all


def valley_ratio(a: np.ndarray, b: np.ndarray) -> float:
    """Density dip between two point groups (n, d): both projected on the line through
    their means, a kernel density of the union, its lowest value between the means over
    the lower of the densities at the means (1: no dip, 0: a clean gap)."""
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    direction = mean_b - mean_a
    length = float(np.linalg.norm(direction))
    if length == 0:
        return 1.0
    points = np.concatenate([a, b]) @ (direction / length)
    origin = float(mean_a @ direction / length)
    if np.ptp(points) == 0:
        return 1.0
    density = gaussian_kde(points)(origin + np.linspace(0.0, length, GRID))
    peaks = min(density[0], density[-1])
    return float(density.min() / peaks) if peaks > 0 else 1.0


def _bisect(points: np.ndarray, seed: int) -> np.ndarray:
    """Two-means split (bool: the second group) of points (n, d)."""
    return KMeans(2, n_init=4, random_state=seed).fit_predict(points).astype(bool)


def distinct_groups(points: np.ndarray, max_clusters: int, seed: int = 0) -> np.ndarray:
    """Labels 0.. of the distinct groups of points (n, d); all 0 when there are none.

    Divisive: a group is split in two (2-means) when the halves hold at least MIN_SHARE
    of the particles each and the density between them dips below DIP; each half is then
    tried again, up to max_clusters groups. A continuum (a motion) never dips, so it
    stays whole however it is cut, and a state gap is found whatever moves within it.
    """
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, dtype=np.int64)
    pending = [0]
    while pending and labels.max() + 1 < max_clusters:
        group = pending.pop(0)
        members = np.flatnonzero(labels == group)
        if len(members) < 2 * MIN_SHARE * n:
            continue
        fit = members if len(members) <= FIT_POINTS else rng.choice(members, FIT_POINTS, False)
        second = _bisect(points[fit], seed)
        a, b = points[fit[~second]], points[fit[second]]
        if min(len(a), len(b)) < MIN_SHARE * len(fit) or valley_ratio(a, b) >= DIP:
            continue
        centres = np.stack([a.mean(axis=0), b.mean(axis=0)])
        nearest = ((points[members, None] - centres[None]) ** 2).sum(-1).argmin(axis=1)
        labels[members[nearest == 1]] = labels.max() + 1
        pending += [group, int(labels.max())]
    return labels


def amplitude_components(amplitudes: np.ndarray) -> np.ndarray:
    """Leading principal components (n, <= AMPLITUDE_COMPONENTS) of decoded amplitudes."""
    amplitudes = np.asarray(amplitudes, dtype=np.float64)
    k = min(AMPLITUDE_COMPONENTS, amplitudes.shape[1], len(amplitudes) - 1)
    return PCA(k, svd_solver="full").fit_transform(amplitudes)


def find_classes(
    latent: np.ndarray,
    amplitudes: np.ndarray | None,
    max_clusters: int,
    seed: int = 0,
) -> tuple[np.ndarray, str]:
    """Labels (n,) of the distinct states of a landscape and why: compositional groups in
    the decoded amplitudes (n, N) when there are any, else groups of the latent (n, d)."""
    latent = np.asarray(latent, dtype=np.float64)
    if amplitudes is not None and np.ptp(amplitudes, axis=0).max() > 0:
        labels = distinct_groups(amplitude_components(amplitudes), max_clusters, seed)
        if labels.max() > 0:
            return labels, f"{labels.max() + 1} compositional states (decoded amplitudes)"
    whitened = PCA(whiten=True, svd_solver="full").fit_transform(latent)
    labels = distinct_groups(whitened, max_clusters, seed)
    if labels.max() > 0:
        return labels, f"{labels.max() + 1} distinct states of the latent space"
    return labels, "no distinct states: one continuous landscape (see the trajectories)"
