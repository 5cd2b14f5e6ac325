"""Classes that choose their own count: distinct states, compositional ones first.

A latent space holds motion and composition together, and a continuous motion
dominates its geometry: any fixed-count split of it cuts the motion. Composition
shows where it acts, in the decoded amplitudes: a domain missing from some particles
is a group of Gaussians that fades together. So ``find_classes``

1. decodes every particle's latent vector and takes the leading principal components
   of the decoded amplitudes (``AMPLITUDE_COMPONENTS``);
2. looks there for *distinct* groups (``distinct_groups``): Gaussian mixtures of
   1..max_clusters components, the count chosen by BIC, then components merged unless
   the density between them dips below ``DIP`` of the lower of their two peaks (a
   mixture splits a continuum too; only a real gap between states survives);
3. if the amplitudes show no distinct groups, looks for them in the whitened latent
   space the same way;
4. if neither does, the landscape is one continuous class.

The reason for the outcome is returned with the labels, for the log and the report.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import gaussian_kde
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture

AMPLITUDE_COMPONENTS = 3
DIP = 0.5  # density at the valley / lower peak density below which two groups are distinct
MIN_SHARE = 0.05  # a group smaller than this share of the particles is not a state
GRID = 64  # points along the line between two component means
FIT_POINTS = 20_000  # mixtures are fitted to at most this many points, then label all


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


def _merge(labels: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Join mixture components that are not separated by a density dip (union-find)."""
    parent = list(range(int(labels.max()) + 1))

    def root(k: int) -> int:
        while parent[k] != k:
            k = parent[k]
        return k

    for i in range(len(parent)):
        for j in range(i + 1, len(parent)):
            a, b = points[labels == i], points[labels == j]
            if len(a) and len(b) and valley_ratio(a, b) >= DIP:
                parent[root(j)] = root(i)
    roots = np.array([root(k) for k in labels])
    return np.unique(roots, return_inverse=True)[1]


def distinct_groups(points: np.ndarray, max_clusters: int, seed: int = 0) -> np.ndarray:
    """Labels 0.. of the distinct groups of points (n, d); all 0 when there are none."""
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    rng = np.random.default_rng(seed)
    fit = points[rng.choice(n, FIT_POINTS, replace=False)] if n > FIT_POINTS else points
    models = [
        GaussianMixture(k, n_init=2, random_state=seed).fit(fit)
        for k in range(1, min(max_clusters, len(fit)) + 1)
    ]
    best = models[int(np.argmin([m.bic(fit) for m in models]))]
    labels = _merge(best.predict(points), points)
    share = np.bincount(labels) / n
    if (share < MIN_SHARE).any():  # tiny groups join their nearest large one
        keep = np.flatnonzero(share >= MIN_SHARE)
        centres = np.stack([points[labels == k].mean(axis=0) for k in keep])
        small = ~np.isin(labels, keep)
        nearest = np.argmin(((points[small, None] - centres[None]) ** 2).sum(-1), axis=1)
        labels[small] = keep[nearest]
        labels = np.unique(labels, return_inverse=True)[1]
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
