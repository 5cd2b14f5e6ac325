"""Classes that choose their own count: distinct states, compositional ones first.

A latent space holds motion and composition together, and a continuous motion
dominates its geometry: any fixed-count split of it cuts the motion. Composition
shows where it acts, in the decoded amplitudes: a domain missing from some particles
is a group of Gaussians that fades together. So ``find_classes``

1. decodes every particle's latent vector and takes the leading principal components
   of the decoded amplitudes (``AMPLITUDE_COMPONENTS``);
2. looks there for *distinct* groups (``distinct_groups``): groups are split in two
   while the density between the halves dips below ``DIP`` of the lower of their two
   peaks (any split cuts a continuum too; only a real gap between states counts). The
   motion moves amplitudes too, often more than a missing domain does, so the split is
   sought both in all components at once and along each principal axis alone, and the
   deepest dip wins;
3. if the amplitudes show no distinct groups, looks for them in the whitened latent
   space the same way;
4. if neither does, the landscape is one continuous class.

Groups found either way are then refined in the whitened latent space
(``refine_in_latent``): a mixture with one covariance shared by all groups, started at
the groups' means. A gap shows where it is deepest, but the latent holds the state in
all its dimensions; the motion spreads every state alike, so a shared covariance
absorbs it instead of cutting along it (a full covariance per group does cut it).

The reason for the outcome is returned with the labels, for the log and the report.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import gaussian_kde
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

AMPLITUDE_COMPONENTS = 3
DIP = 0.5  # density at the valley / lower peak density below which two groups are distinct
MIN_SHARE = 0.05  # a group smaller than this share of the particles is not a state
AGREE = 0.5  # a latent refinement must keep this ARI with the groups it started from
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


def deepest_split(points: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    """The two-group split (bool: the second group) of points (n, d) whose density dips
    most between its halves, and that dip (valley_ratio; 1.0 when no split holds
    MIN_SHARE on both sides). Candidates: 2-means in all d dimensions, and 2-means along
    each principal axis alone, since a gap along a minor axis is lost in the joint
    2-means when a wide continuum (a motion) spans the major one."""
    centred = points - points.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    candidates = [_bisect(points, seed)]
    candidates += [_bisect(centred @ axis[:, None], seed) for axis in axes]
    best, dip = candidates[0], 1.0
    for second in candidates:
        if min(second.sum(), (~second).sum()) < MIN_SHARE * len(points):
            continue
        ratio = valley_ratio(points[~second], points[second])
        if ratio < dip:
            best, dip = second, ratio
    return best, dip


def distinct_groups(points: np.ndarray, max_clusters: int, seed: int = 0) -> np.ndarray:
    """Labels 0.. of the distinct groups of points (n, d); all 0 when there are none.

    Divisive: a group is split in two (deepest_split) when the halves hold at least
    MIN_SHARE of the particles each and the density between them dips below DIP; each
    half is then tried again, up to max_clusters groups. A continuum (a motion) never
    dips, so it stays whole however it is cut, and a state gap is found whatever moves
    within it.
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
        second, dip = deepest_split(points[fit], seed)
        if dip >= DIP:
            continue
        a, b = points[fit[~second]], points[fit[second]]
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


def refine_in_latent(whitened: np.ndarray, labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Labels of groups 0..k-1 re-fitted as a tied-covariance Gaussian mixture of the
    whitened latent (n, d) started at their means; the labels as given when a group
    would fall below MIN_SHARE of the particles or the partition would change beyond
    AGREE (the latent does not hold these groups: the refinement found others)."""
    k = int(labels.max()) + 1
    means = np.stack([whitened[labels == g].mean(axis=0) for g in range(k)])
    mixture = GaussianMixture(k, covariance_type="tied", means_init=means, random_state=seed)
    refined = mixture.fit(whitened).predict(whitened)
    kept = np.bincount(refined, minlength=k).min() >= MIN_SHARE * len(labels)
    return refined if kept and adjusted_rand_score(labels, refined) >= AGREE else labels


def find_classes(
    latent: np.ndarray,
    amplitudes: np.ndarray | None,
    max_clusters: int,
    seed: int = 0,
) -> tuple[np.ndarray, str]:
    """Labels (n,) of the distinct states of a landscape and why: compositional groups in
    the decoded amplitudes (n, N) when there are any, else groups of the latent (n, d)."""
    whitened = PCA(whiten=True, svd_solver="full").fit_transform(np.asarray(latent, np.float64))
    if amplitudes is not None and np.ptp(amplitudes, axis=0).max() > 0:
        labels = distinct_groups(amplitude_components(amplitudes), max_clusters, seed)
        if labels.max() > 0:
            labels = refine_in_latent(whitened, labels, seed)
            return labels, f"{labels.max() + 1} compositional states (decoded amplitudes)"
    labels = distinct_groups(whitened, max_clusters, seed)
    if labels.max() > 0:
        labels = refine_in_latent(whitened, labels, seed)
        return labels, f"{labels.max() + 1} distinct states of the latent space"
    return labels, "no distinct states: one continuous landscape (see the trajectories)"
