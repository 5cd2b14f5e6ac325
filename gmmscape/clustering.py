"""Classes on the landscape: k-means, Gaussian mixture, spectral, or a method that picks
the count.

Labels are renumbered by decreasing population (class 0 is the largest), so the same
partition always gets the same names whatever order the algorithm found it in.
``hdbscan`` leaves outliers unassigned (label -1), as latent.csv does junk particles
(gmmscape.embedding.with_junk): they get no class map or subset.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import HDBSCAN, KMeans, SpectralClustering
from sklearn.mixture import GaussianMixture

from .errors import InputError
from .states import find_classes
from .table import SUBSETS

METHODS = ("auto", "kmeans", "gmm", "spectral", "bic", "hdbscan")
SPACES = ("latent", "pca", "umap")
UNASSIGNED = -1
# hdbscan's density estimate uses each point's min_samples nearest neighbours; sklearn's
# default (= min_cluster_size, 2,000 for 100,000 particles) took 6.3 GB, 25 takes < 1 GB.
HDBSCAN_MIN_SAMPLES = 25
# spectral: neighbours per point of the affinity graph. On the demo's UMAP views (2,000
# and 4,000 particles) 20-80 gave the same split; 10-15 cut one run along its motion.
SPECTRAL_NEIGHBORS = 30


class LatentClusters(ClusterMixin, BaseEstimator):
    """Cluster points (n, d) of the latent space or of its 2D embedding.

    method: ``auto`` finds the distinct states (gmmscape.states: compositional groups of
    the decoded ``amplitudes`` given to ``fit`` first, else gaps in the latent space; one
    class for a continuum), its reason in ``reason_``;
    ``kmeans``, ``gmm`` (full-covariance Gaussian mixture) and ``spectral``
    (normalised cut of the k-nearest-neighbour graph: follows curved, elongated clusters
    such as those of UMAP views) use ``n_clusters``; ``bic`` fits Gaussian mixtures of
    1..``max_clusters`` components and keeps the lowest BIC; ``hdbscan`` finds
    density-separated clusters of at least ``min_cluster_size`` points (default: 2 % of
    the points, at least 10).
    After ``fit``: ``labels_`` and ``n_clusters_``.
    """

    def __init__(
        self,
        method: str = "auto",
        n_clusters: int = 2,
        max_clusters: int = 8,
        min_cluster_size: int | None = None,
        random_state: int = 0,
    ):
        self.method = method
        self.n_clusters = n_clusters
        self.max_clusters = max_clusters
        self.min_cluster_size = min_cluster_size
        self.random_state = random_state

    def fit(self, X: np.ndarray, y=None, amplitudes: np.ndarray | None = None) -> LatentClusters:
        X = np.asarray(X, dtype=np.float64)
        self.reason_ = f"{self.method} clustering"
        if self.method not in METHODS:
            raise InputError(
                f"landscape.cluster.method: expected one of {METHODS}, got {self.method!r}"
            )
        fixed = self.method in ("kmeans", "gmm", "spectral")
        wanted = self.n_clusters if fixed else self.max_clusters
        if wanted < 1 or (fixed and wanted > len(X)):
            raise InputError(
                f"landscape.cluster: cannot make {wanted} clusters of {len(X)} particles"
            )
        if self.method == "auto":
            labels, self.reason_ = find_classes(X, amplitudes, self.max_clusters, self.random_state)
        else:
            labels = getattr(self, f"_{self.method}")(X)
        self.labels_ = _by_population(labels)
        self.n_clusters_ = int(self.labels_.max()) + 1
        return self

    def _kmeans(self, X: np.ndarray) -> np.ndarray:
        return KMeans(self.n_clusters, n_init=10, random_state=self.random_state).fit_predict(X)

    def _mixture(self, X: np.ndarray, k: int) -> GaussianMixture:
        return GaussianMixture(k, n_init=3, random_state=self.random_state).fit(X)

    def _gmm(self, X: np.ndarray) -> np.ndarray:
        return self._mixture(X, self.n_clusters).predict(X)

    def _spectral(self, X: np.ndarray) -> np.ndarray:
        model = SpectralClustering(
            self.n_clusters,
            affinity="nearest_neighbors",
            n_neighbors=min(SPECTRAL_NEIGHBORS, len(X) - 1),
            assign_labels="cluster_qr",
            random_state=self.random_state,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "graph is not fully connected": separate islands
            return model.fit_predict(X)

    def _bic(self, X: np.ndarray) -> np.ndarray:
        models = [self._mixture(X, k) for k in range(1, min(self.max_clusters, len(X)) + 1)]
        self.bic_ = np.array([m.bic(X) for m in models])
        return models[int(np.argmin(self.bic_))].predict(X)

    def _hdbscan(self, X: np.ndarray) -> np.ndarray:
        size = self.min_cluster_size or max(10, len(X) // 50)
        samples = min(size, HDBSCAN_MIN_SAMPLES)
        labels = HDBSCAN(min_cluster_size=size, min_samples=samples, copy=True).fit_predict(X)
        if (labels == UNASSIGNED).all():
            raise InputError(
                f"landscape.cluster: hdbscan found no cluster of at least {size} particles "
                "(lower min_cluster_size or use another method)"
            )
        return labels


def _by_population(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0.. by decreasing size (ties by first appearance), keep -1."""
    labels = np.asarray(labels)
    found = [k for k in dict.fromkeys(labels.tolist()) if k != UNASSIGNED]
    sizes = {k: int((labels == k).sum()) for k in found}
    order = sorted(found, key=lambda k: -sizes[k])  # stable: ties keep first appearance
    out = np.full(len(labels), UNASSIGNED)
    for new, old in enumerate(order):
        out[labels == old] = new
    return out


def cluster_counts(labels: np.ndarray, subset: np.ndarray | None = None) -> pd.DataFrame:
    """Per-cluster table: cluster, particles, percent (and even/odd counts when given)."""
    labels = np.asarray(labels)
    clusters = np.unique(labels)
    table = pd.DataFrame(
        {
            "cluster": clusters,
            "particles": [int((labels == k).sum()) for k in clusters],
        }
    )
    table["percent"] = 100.0 * table["particles"] / len(labels)
    if subset is not None:
        for name, value in SUBSETS.items():
            table[name] = [int(((labels == k) & (subset == value)).sum()) for k in clusters]
    return table
