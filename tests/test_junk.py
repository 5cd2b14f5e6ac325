"""Junk particles as statistical outliers, on a simulated data set with 5 % junk of four
kinds (pure noise, inverted contrast, all zero, bright ice-like blobs); and junk kept out
of the features' statistics."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import train_data
from train_data import BAND

from gmmscape.features import compute_features
from gmmscape.junk import (
    JUNK_KINDS,
    JunkSettings,
    add_simulated_junk,
    find_junk,
    flag_junk,
    junk_recovery,
    junk_rows,
    plot_junk,
    robust_z,
)
from gmmscape.streaming import load_particles, read_rows
from gmmscape.train import TrainSettings, train


def test_robust_z_is_the_normal_z_and_ignores_outliers():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, 20000)
    np.testing.assert_allclose(robust_z(x), (x - 3.0) / 2.0, atol=0.05)
    spoiled = np.concatenate([x, np.full(1000, 1e6), [np.nan]])  # 5 % wild values
    np.testing.assert_allclose(robust_z(spoiled)[:20000], (x - 3.0) / 2.0, rtol=0.1, atol=0.1)
    assert np.abs((spoiled[:20000] - np.nanmean(spoiled)) / np.nanstd(spoiled)).max() < 0.3
    assert np.isnan(robust_z(spoiled)[-1])


@pytest.fixture(scope="module")
def junk_set(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("junk")
    root = train_data.dataset("composition", 50)
    shutil.copy(root / "import/stack.mrcs", tmp / "stack.mrcs")
    kinds = add_simulated_junk(tmp / "stack.mrcs")
    particles = load_particles(root / "import/particles.csv", tmp / "stack.mrcs")
    neutral = train_data.average_model(root)
    table = find_junk(neutral, particles, tmp / "junk.csv", **BAND)
    return tmp, particles, neutral, kinds, table


def test_junk_of_four_kinds_is_found_and_good_particles_kept(junk_set):
    tmp, particles, _, kinds, table = junk_set
    scores = junk_recovery(table, kinds)
    print("fraction flagged:", {k: round(v, 4) for k, v in scores.items()})
    assert scores["junk"] >= 0.9 and min(scores[k] for k in JUNK_KINDS) >= 0.75
    assert scores["good"] <= 0.02
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


@pytest.mark.slow
def test_junk_is_left_out_of_the_feature_statistics(junk_set):
    tmp, particles, neutral, _, table = junk_set
    rows = junk_rows(table)
    info = compute_features(neutral, particles, tmp / "f.npy", exclude=list(rows), **BAND)
    assert set(info.junk_rows) == set(rows)
    features = read_rows(tmp / "f.npy", np.arange(particles.n))
    good = np.setdiff1d(np.arange(particles.n), list(rows))
    assert not features[list(rows)].any()
    np.testing.assert_allclose(features[good].mean(axis=0), 0.0, atol=1e-3)
    assert JunkSettings().threshold == 4.0
    short = TrainSettings(epochs=1, hidden=(32, 32), pretrain_steps=5, chunk=256, **BAND)
    train(neutral, particles, tmp / "f.npy", tmp / "run", short, junk_reasons=rows)
    listed = pd.read_csv(tmp / "run/junk.csv").set_index("index")["reason"]
    expected = {int(particles.index[r]): reason for r, reason in rows.items()}
    assert listed.to_dict() == expected
    assert not pd.read_csv(tmp / "run/latent.csv")["index"].isin(list(expected)).any()
