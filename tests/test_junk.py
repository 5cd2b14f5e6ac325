"""Junk particles as statistical outliers, on a simulated data set with 5 % junk of four
kinds (pure noise, inverted contrast, all zero, bright ice-like blobs); and junk kept out
of the features' statistics."""

from __future__ import annotations

import shutil

import mrcfile
import numpy as np
import pandas as pd
import pytest
import train_data
from train_data import BAND

from gmmscape.features import compute_features
from gmmscape.junk import JunkSettings, find_junk, flag_junk, junk_rows, plot_junk, robust_z
from gmmscape.streaming import load_particles, read_rows

KINDS = ("noise", "inverted", "zero", "blob")


def test_robust_z_is_the_normal_z_and_ignores_outliers():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, 20000)
    np.testing.assert_allclose(robust_z(x), (x - 3.0) / 2.0, atol=0.05)
    spoiled = np.concatenate([x, np.full(1000, 1e6), [np.nan]])  # 5 % wild values
    np.testing.assert_allclose(robust_z(spoiled)[:20000], (x - 3.0) / 2.0, rtol=0.1, atol=0.1)
    assert np.abs((spoiled[:20000] - np.nanmean(spoiled)) / np.nanstd(spoiled)).max() < 0.3
    assert np.isnan(robust_z(spoiled)[-1])


def add_junk(stack, fraction=0.05, seed=0):
    """Replace a fraction of the images by junk, kinds in turn; returns {row: kind}."""
    rng = np.random.default_rng(seed)
    with mrcfile.mmap(stack, mode="r+") as mrc:
        data = mrc.data
        n, box, _ = data.shape
        noise = float(np.median(data.std(axis=(1, 2))))
        rows = rng.choice(n, int(round(fraction * n)), replace=False)
        y, x = np.mgrid[:box, :box]
        kinds = {}
        for k, row in enumerate(rows):
            kind = kinds[int(row)] = KINDS[k % 4]
            if kind == "noise":  # as noisy as a particle image, without a particle
                data[row] = rng.normal(0.0, noise, (box, box))
            elif kind == "inverted":
                data[row] = -data[row]
            elif kind == "zero":
                data[row] = 0.0
            else:  # a blob of 3 pixels, twice as bright as the particle's brightest pixel
                cy, cx = rng.uniform(4, box - 4, 2)
                blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * 3.0**2))
                data[row] = data[row] + 2 * np.abs(data[row]).max() * blob
    return kinds


@pytest.fixture(scope="module")
def junk_set(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("junk")
    root = train_data.dataset("composition", 50)
    shutil.copy(root / "import/stack.mrcs", tmp / "stack.mrcs")
    kinds = add_junk(tmp / "stack.mrcs")
    particles = load_particles(root / "import/particles.csv", tmp / "stack.mrcs")
    neutral = train_data.average_model(root)
    table = find_junk(neutral, particles, tmp / "junk.csv", **BAND)
    return tmp, particles, neutral, kinds, table


def test_junk_of_four_kinds_is_found_and_good_particles_kept(junk_set):
    tmp, particles, _, kinds, table = junk_set
    flagged = (table["reason"] != "").to_numpy()
    truth = np.zeros(particles.n, bool)
    truth[list(kinds)] = True
    per_kind = {kind: flagged[[r for r, k in kinds.items() if k == kind]].mean() for kind in KINDS}
    print(f"junk flagged {flagged[truth].mean():.3f} {per_kind}, good {flagged[~truth].mean():.4f}")
    assert flagged[truth].mean() >= 0.9 and min(per_kind.values()) >= 0.75
    assert flagged[~truth].mean() <= 0.02
    assert (
        table.loc[[r for r, k in kinds.items() if k == "zero"], "reason"] == "constant image"
    ).all()
    frc_reasons = table.loc[[r for r, k in kinds.items() if k in ("noise", "inverted")], "reason"]
    assert frc_reasons.str.startswith("low FRC").mean() >= 0.9
    assert table["index"].tolist() == particles.index.tolist()
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp / "junk.csv").drop(columns="reason"),
        table.drop(columns="reason"),
        check_dtype=False,
    )
    plot_junk(table, particles, 4.0, tmp / "junk.png")
    assert (tmp / "junk.png").stat().st_size > 10_000


def test_threshold_none_keeps_only_constant_and_non_finite(junk_set):
    _, _, _, kinds, table = junk_set
    reasons = flag_junk(table.copy(), None)
    zero = [r for r, k in kinds.items() if k == "zero"]
    assert set(np.flatnonzero(reasons != "")) == set(zero)
    assert len(junk_rows(table)) == int((table["reason"] != "").sum())


def test_junk_is_left_out_of_the_feature_statistics(junk_set):
    tmp, particles, neutral, _, table = junk_set
    rows = junk_rows(table)
    info = compute_features(neutral, particles, tmp / "f.npy", exclude=list(rows), **BAND)
    assert set(info.junk_rows) == set(rows)
    features = read_rows(tmp / "f.npy", np.arange(particles.n))
    good = np.setdiff1d(np.arange(particles.n), list(rows))
    assert not features[list(rows)].any()
    np.testing.assert_allclose(features[good].mean(axis=0), 0.0, atol=1e-3)
    settings = JunkSettings()
    assert settings.threshold == 4.0
