"""Even/odd class matching (Hungarian on map FSC) and the reproducibility verdict."""

from __future__ import annotations

import landscape_data
import numpy as np
import pandas as pd
import pytest
import train_data

from gmmscape.clustering import LatentClusters, cluster_counts
from gmmscape.embedding import LatentEmbedding, make_landscape
from gmmscape.importer import load_meta, load_table
from gmmscape.io.mrc import read_map
from gmmscape.projection import density
from gmmscape.reconstruct import cropped_source, reconstruct_classes, reconstruct_with_halves
from gmmscape.reproducibility import compare_halves, expected_fsc, match

BOX, APIX = 32, 5.0


def test_hungarian_matching_recovers_a_planted_permutation():
    rng = np.random.default_rng(0)
    for k in (2, 5, 9):
        perm = rng.permutation(k)
        score = rng.uniform(0.0, 0.6, (k, k))
        score[np.arange(k), perm] += 0.5  # the true partner is best, but not always by row max
        score[0, perm[1]] = 1.05  # a greedy row-wise choice would take this one
        score[0, perm[0]] = 1.04
        score[1, perm[1]] = 1.1
        assert match(score) == list(zip(range(k), perm.tolist(), strict=True))
    assert match(np.array([[0.1, 0.9, 0.2]])) == [(0, 1)]  # rectangular: best column only


def noisy(volume: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return volume + sigma * volume.std() * rng.standard_normal(volume.shape).astype(np.float32)


@pytest.fixture(scope="module")
def structures():
    """Three classes: a body alone, with blob A, with blob B (same body, different blobs)."""
    rng = np.random.default_rng(4)
    body = np.column_stack(
        [rng.uniform(-0.2, 0.2, (40, 3)), np.ones(40), np.full(40, 0.05)]
    ).astype(np.float32)
    blob_a = np.array([[0.25, 0.0, 0.0, 3.0, 0.06]], np.float32)
    blob_b = np.array([[-0.1, 0.28, 0.1, 3.0, 0.06]], np.float32)
    return [density(g, BOX) for g in (body, np.vstack([body, blob_a]), np.vstack([body, blob_b]))]


def halves(structures, percent_even, percent_odd, odd_order, seed=0, odd_maps=None):
    rng = np.random.default_rng(seed)
    even_maps = [noisy(v, 0.05, rng) for v in structures]
    odd_maps = odd_maps or [noisy(structures[k], 0.05, rng) for k in odd_order]
    consensus = sum(p / 100 * v for p, v in zip(percent_even, structures, strict=True))
    return dict(
        classes=(class_table(percent_even), class_table(percent_odd)),
        maps=(even_maps, odd_maps),
        consensus_halves=(noisy(consensus, 0.2, rng), noisy(consensus, 0.2, rng)),
        consensus_particles=(2000, 2000),
        apix=APIX,
    )


def class_table(percent):
    """Classes of a half of 2,000 particles."""
    percent = np.asarray(percent)
    return pd.DataFrame(
        {"cluster": range(len(percent)), "particles": 20 * percent, "percent": percent}
    )


def test_expected_fsc_of_smaller_maps():
    """Halves of m particles at FSC 0.5 have per-particle SNR 1/m; n particles give n/m."""
    assert expected_fsc(0.5, 1000, 1000, 1000) == pytest.approx(0.5)
    assert expected_fsc(0.5, 1000, 500, 500) == pytest.approx(1 / 3)
    assert expected_fsc(0.143, 1000, 4000, 4000) == pytest.approx(0.4, abs=0.001)
    assert expected_fsc(0.5, 1000, 1000, 250) == pytest.approx(np.sqrt(0.5 * 0.2))


def test_matching_classes_of_two_halves_is_reproducible(structures):
    args = halves(structures, [50.0, 30.0, 20.0], [25.0, 48.0, 27.0], odd_order=[2, 0, 1])
    result = compare_halves(**args)
    assert result.reproducible
    table = result.table
    assert table[["class_even", "class_odd"]].to_numpy().tolist() == [[0, 1], [1, 2], [2, 0]]
    assert table["percent_even"].tolist() == [50.0, 30.0, 20.0]
    assert table["percent_odd"].tolist() == [48.0, 27.0, 25.0]
    np.testing.assert_allclose(
        table["fsc_expected"],
        [
            expected_fsc(0.5, 2000, 1000, 960),
            expected_fsc(0.5, 2000, 600, 540),
            expected_fsc(0.5, 2000, 400, 500),
        ],
    )
    assert (table["fsc_at_consensus"] >= table["fsc_expected"]).all()
    text = result.verdict()
    assert text.startswith("Reproducible: both halves have 3 classes; populations")
    assert "as well as maps of the same structure from as many particles would" in text


def test_population_difference_makes_it_not_reproducible(structures):
    args = halves(structures, [50.0, 30.0, 20.0], [35.0, 45.0, 20.0], odd_order=[0, 1, 2])
    result = compare_halves(**args, population_tolerance=10.0)
    assert not result.reproducible
    assert result.table["agrees"].tolist() == [False, False, True]
    text = result.verdict()
    assert text.startswith("Not reproducible:") and "differ by more than 10 points" in text
    assert "0/0 (50.0% vs 35.0%)" in text


def test_different_number_of_classes_is_not_reproducible(structures):
    args = halves(structures, [50.0, 30.0, 20.0], [60.0, 40.0], odd_order=[0, 1])
    result = compare_halves(**args)
    assert not result.reproducible and (result.n_even, result.n_odd) == (3, 2)
    assert "the even half has 3 classes and the odd half 2" in result.verdict()
    unmatched = result.table[result.table["class_odd"].isna()]
    assert unmatched["class_even"].tolist() == [2]


def test_a_class_map_that_disagrees_is_not_reproducible(structures):
    rng = np.random.default_rng(9)
    other = density(
        np.column_stack([rng.uniform(-0.2, 0.2, (40, 3)), np.ones(40), np.full(40, 0.05)]), BOX
    )
    maps = [noisy(structures[0], 0.05, rng), noisy(structures[1], 0.05, rng), other]
    args = halves(structures, [50.0, 30.0, 20.0], [50.0, 30.0, 20.0], [0, 1, 2], odd_maps=maps)
    result = compare_halves(**args)
    assert not result.reproducible
    assert result.table["agrees"].tolist() == [True, True, False]
    assert "disagree" in result.verdict()


# --- end to end: even and odd halves trained independently (CI-sized) ------------------


def half_classes(half: str, imported: pd.DataFrame, source, out):
    """Landscape of one half's run (2 classes by k-means on the whitened PCA scores, the
    method that works at CI size; see test_landscape) and the class maps."""
    run = landscape_data.trained_run("composition", half, "all", 2)
    table = make_landscape(
        pd.read_csv(run / "latent.csv"),
        LatentEmbedding(umap=False),
        LatentClusters("kmeans", n_clusters=2, random_state=0),
        space="pca",
    )
    summary, _ = reconstruct_classes(table, imported, source, out / half)
    counts = cluster_counts(table["cluster"].to_numpy())
    summary = summary.merge(counts[["cluster", "percent"]], on="cluster")
    return summary, [read_map(out / half / name)[0] for name in summary["map"]]


@pytest.mark.slow
def test_even_and_odd_halves_find_the_same_classes(tmp_path):
    root = train_data.dataset("composition", landscape_data.PER_STATE)
    imported = load_table(root / "import" / "particles.csv")
    source = cropped_source(
        root / "import" / "stack.mrcs", load_meta(root / "import" / "meta.json")
    )
    even, odd = (half_classes(h, imported, source, tmp_path) for h in ("even", "odd"))
    (consensus,) = reconstruct_with_halves(imported, source, [np.arange(len(imported))])
    sizes = tuple(int((imported["subset"] == s).sum()) for s in (1, 2))
    result = compare_halves(
        (even[0], odd[0]), (even[1], odd[1]), (consensus.half1, consensus.half2), sizes, source.apix
    )
    print(result.table.to_string(), result.verdict(), sep="\n")
    assert result.n_even == result.n_odd
    matched = result.table
    assert ((matched["percent_even"] - matched["percent_odd"]).abs() <= 10).all()
    assert result.reproducible
