"""2D views of the latent space: PCA (invertible, for trajectories) and UMAP (for clusters).

PCA keeps every component so ``pca_.inverse_transform`` maps any point of PC space
back to a latent vector the decoder accepts (paper: "PCA conveniently preserves the
inverse transform"); the full SVD with sklearn's sign convention makes it a pure
function of the data, so later stages refit it instead of storing it. UMAP is seeded,
which also makes umap-learn run single-threaded and deterministic. Above ``fit_max``
points UMAP (quadratic in memory through its neighbour graph, and hours single-threaded
at a million points) is fitted on a seeded subsample and places the other points with
its out-of-sample ``transform``, and says so in the log.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA

from .clustering import SPACES, UNASSIGNED
from .errors import InputError

log = logging.getLogger(__name__)
UMAP_FIT_MAX = 200_000  # points UMAP is fitted on; the rest are transformed


def latent_columns(frame: pd.DataFrame) -> list[str]:
    """The latent columns z0..z{d-1} of a latent table, in order; raises if there are none."""
    columns: list[str] = []
    while f"z{len(columns)}" in frame.columns:
        columns.append(f"z{len(columns)}")
    if not columns:
        raise InputError(
            "latent table: expected columns z0, z1, ... (the latent.csv contract, README Outputs)"
        )
    return columns


def embedded(landscape: pd.DataFrame) -> pd.DataFrame:
    """The rows of a landscape table that have a latent vector: junk particles have none
    (``with_junk``), so PCA, nearest-particle searches and plots must leave them out."""
    return landscape[landscape[latent_columns(landscape)].notna().all(axis=1)]


def fit_pca(latent: np.ndarray) -> PCA:
    """PCA of latent vectors (n, d) with all d components, deterministic and invertible."""
    latent = np.asarray(latent, dtype=np.float64)
    if latent.ndim != 2 or len(latent) < 2:
        raise InputError(f"latent vectors: expected at least 2 rows of (n, d), got {latent.shape}")
    return PCA(n_components=latent.shape[1], svd_solver="full").fit(latent)


class LatentEmbedding(TransformerMixin, BaseEstimator):
    """PCA and (optionally) UMAP of latent vectors, as columns pc0, pc1[, umap0, umap1].

    Parameters mirror umap-learn's; ``random_state`` seeds UMAP. After ``fit``:
    ``pca_`` (all components), ``embedding_`` (n, 2) UMAP coordinates of the fitted
    points or None, ``columns_`` the names of ``fit_transform``'s columns.
    """

    def __init__(
        self,
        umap: bool = True,
        n_neighbors: int = 15,
        min_dist: float = 0.1,
        random_state: int = 0,
        fit_max: int = UMAP_FIT_MAX,
    ):
        self.umap = umap
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.random_state = random_state
        self.fit_max = fit_max

    def fit(self, X: np.ndarray, y=None) -> LatentEmbedding:
        X = np.asarray(X, dtype=np.float64)
        self.pca_ = fit_pca(X)
        self.embedding_ = self._umap(X) if self.umap else None
        self.columns_ = ["pc0", "pc1"] + (["umap0", "umap1"] if self.umap else [])
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """PC coordinates of any points; UMAP columns only for the fitted points themselves."""
        pcs = self._first_two(self.pca_.transform(np.asarray(X, dtype=np.float64)))
        if self.embedding_ is None:
            return pcs
        if len(X) != len(self.embedding_):
            raise ValueError("UMAP coordinates exist only for the fitted points")
        return np.column_stack([pcs, self.embedding_])

    def fit_transform(self, X: np.ndarray, y=None) -> np.ndarray:
        return self.fit(X).transform(X)

    @staticmethod
    def _first_two(pcs: np.ndarray) -> np.ndarray:
        """pc0, pc1 (a 1D latent gets a zero pc1, so every table has both columns)."""
        return pcs[:, :2] if pcs.shape[1] >= 2 else np.column_stack([pcs, np.zeros(len(pcs))])

    def _umap(self, X: np.ndarray) -> np.ndarray:
        import umap  # imports TensorFlow (parametric UMAP): only when UMAP runs

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # n_jobs overridden by random_state, spectral init
            model = umap.UMAP(
                n_components=2,
                n_neighbors=max(2, min(self.n_neighbors, len(X) - 1)),
                min_dist=self.min_dist,
                random_state=self.random_state,
            )
            if len(X) <= self.fit_max:
                return model.fit_transform(X).astype(np.float64)
            fitted = np.zeros(len(X), bool)
            rng = np.random.default_rng(self.random_state)
            fitted[rng.choice(len(X), self.fit_max, replace=False)] = True
            log.info(
                "UMAP: fitted on a seeded subsample of %d of %d points; the other %d are "
                "placed by its out-of-sample transform",
                self.fit_max,
                len(X),
                len(X) - self.fit_max,
            )
            out = np.empty((len(X), 2))
            out[fitted] = model.fit(X[fitted]).embedding_
            out[~fitted] = model.transform(X[~fitted])
            return out


def whitened(pca: PCA, latent: np.ndarray) -> np.ndarray:
    """PC scores scaled to unit variance. The latent's axes have no common scale; two
    parallel curves (a composition split across a motion) longer than their gap are cut
    along their length by k-means on the raw latent and across it once whitened."""
    std = np.sqrt(np.maximum(pca.explained_variance_, 1e-12 * pca.explained_variance_.max()))
    return pca.transform(latent) / std


def make_landscape(
    latent: pd.DataFrame,
    embedding: LatentEmbedding,
    clusters: BaseEstimator,
    space: str = "umap",
    amplitudes: np.ndarray | None = None,
) -> pd.DataFrame:
    """The landscape table of the trained particles (``with_junk`` adds the junk ones for
    the latent.csv contract): the training latent table plus ``pc0, pc1[, umap0, umap1]`` and
    ``cluster``, clustered in ``space`` (``latent``: z columns, ``pca``: all PCs
    whitened, ``umap``: the 2D UMAP view); the ``auto`` method always takes the latent
    vectors and the decoded ``amplitudes`` (n, N) of the same particles."""
    z = latent[latent_columns(latent)].to_numpy(np.float64)
    if space not in SPACES:
        raise InputError(f"landscape.cluster.space: expected one of {SPACES}, got {space!r}")
    if space == "umap" and not embedding.umap:
        raise InputError("landscape.cluster.space: 'umap' needs landscape.umap: true")
    view = pd.DataFrame(embedding.fit_transform(z), columns=embedding.columns_, index=latent.index)
    points = {"latent": z, "pca": whitened(embedding.pca_, z), "umap": embedding.embedding_}[space]
    table = pd.concat(
        [latent.drop(columns=["cluster", *view.columns], errors="ignore"), view], axis=1
    )
    if getattr(clusters, "method", None) == "auto":
        table["cluster"] = clusters.fit(z, amplitudes=amplitudes).labels_
    else:
        table["cluster"] = clusters.fit_predict(points)
    return table


def with_junk(table: pd.DataFrame, junk_index: np.ndarray) -> pd.DataFrame:
    """A landscape table with one row per particle of the run (README: latent.csv), by
    ``index``: training leaves junk particles (non-finite image or loss, train/{run}/junk.csv)
    out of its latent table, so they come back here with NaN latent and view coordinates
    and cluster -1 (unassigned), and results still join back to every input row. A table
    of symmetry copies (``copy`` column) gets every copy of a junk particle back."""
    junk_index = np.asarray(junk_index, np.int64)
    if "copy" not in table:
        index = np.union1d(table["index"].to_numpy(np.int64), junk_index)
        full = table.set_index("index").reindex(index)
        full["cluster"] = full["cluster"].fillna(UNASSIGNED).astype(np.int64)
        return full.rename_axis("index").reset_index()
    keys = ["index", "copy"]
    copies = np.arange(int(table["copy"].max()) + 1)
    junk = pd.MultiIndex.from_product([junk_index, copies], names=keys)
    rows = pd.MultiIndex.from_frame(table[keys].astype(np.int64)).union(junk).sort_values()
    full = table.set_index(keys).reindex(rows)
    full["cluster"] = full["cluster"].fillna(UNASSIGNED).astype(np.int64)
    return full.reset_index()
