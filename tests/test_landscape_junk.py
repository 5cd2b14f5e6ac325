"""Junk particles in the landscape table (the latent.csv contract: one row per particle):
present, by index, with no latent and cluster -1, and left out of the class counts,
class subsets, PCA, nearest-particle searches and plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import starfile

from gmmscape.clustering import UNASSIGNED, LatentClusters, cluster_counts
from gmmscape.embedding import LatentEmbedding, embedded, fit_pca, make_landscape, with_junk
from gmmscape.plots import landscape_figures
from gmmscape.subsets import write_class_subsets
from gmmscape.trajectory import nearest_particles, pc_trajectories

JUNK = [3, 10]  # particles 0..21 of the run, two of them junk
META = {"apix_original": 1.0, "box_original": 16}
VIEW = ["z0", "z1", "z2", "pc0", "pc1"]


@pytest.fixture
def landscape() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(landscape table of the 20 trained particles, out of index order; with the junk)."""
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(0, 0.3, (12, 3)), rng.normal(3, 0.3, (8, 3))])
    latent = pd.DataFrame(z, columns=["z0", "z1", "z2"])
    latent.insert(0, "index", rng.permutation(np.setdiff1d(np.arange(22), JUNK)))
    table = make_landscape(
        latent, LatentEmbedding(umap=False), LatentClusters("kmeans", n_clusters=2), "pca"
    )
    return table, with_junk(table, np.array(JUNK))


def test_every_particle_has_a_row_and_junk_has_no_latent_and_no_class(landscape, tmp_path):
    table, full = landscape
    assert full["index"].tolist() == list(range(22))
    assert list(full.columns) == list(table.columns)
    junk = full["index"].isin(JUNK)
    assert full.loc[junk, VIEW].isna().all().all() and full.loc[~junk, VIEW].notna().all().all()
    assert (full.loc[junk, "cluster"] == UNASSIGNED).all()
    kept = embedded(full).set_index("index")
    pd.testing.assert_frame_equal(kept, table.set_index("index").sort_index())
    full.to_csv(tmp_path / "latent.csv", index=False)
    line = (tmp_path / "latent.csv").read_text().splitlines()[1 + JUNK[0]]
    assert line == f"{JUNK[0]},,,,,,-1"  # empty latent in the CSV
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "latent.csv"), full)


def test_junk_is_in_no_class_subset_pca_neighbourhood_or_plot(landscape, tmp_path):
    table, full = landscape
    counts = cluster_counts(full["cluster"].to_numpy())
    assert counts.loc[counts["cluster"] == UNASSIGNED, "particles"].tolist() == [len(JUNK)]
    pd.testing.assert_series_equal(
        counts.loc[counts["cluster"] >= 0, "particles"].reset_index(drop=True),
        cluster_counts(table["cluster"].to_numpy())["particles"],
    )
    rows = pd.DataFrame({"rlnImageName": [f"{i + 1:06d}@stack.mrcs" for i in range(22)]})
    starfile.write({"particles": rows}, tmp_path / "p.star")
    subsets = write_class_subsets(tmp_path / "p.star", full, tmp_path / "subsets", META)
    assert subsets["particles"].sum() == len(table)

    kept = embedded(full)
    latent = kept[["z0", "z1", "z2"]].to_numpy()
    (trajectory,) = pc_trajectories(latent, fit_pca(latent), 1, n_points=3)
    near = np.concatenate(nearest_particles(latent, trajectory.latent, k=len(latent)))
    assert not np.isin(kept["index"].to_numpy()[near], JUNK).any()
    assert sorted(landscape_figures(full, tmp_path)) == ["pca_density.png", "pca_scatter.png"]
