"""Checkpoints: a killed training resumes exactly as if never stopped, and checkpoints of
other data or settings are never continued."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil

import numpy as np
import pandas as pd
import pytest
import train_data
from train_data import BAND

import gmmscape.train as train_module
from gmmscape.features import compute_features
from gmmscape.streaming import load_particles
from gmmscape.train import TrainSettings, train

pytestmark = pytest.mark.slow  # every test here trains, then trains again from a checkpoint

SETTINGS = TrainSettings(
    mode="all",
    latent_dim=2,
    epochs=3,
    lr=1e-3,
    hidden=(32, 32),
    pretrain_steps=10,
    chunk=48,
    **BAND,
)


class Killed(Exception):
    """Stands for kill -9: raised before an epoch starts, after the last checkpoint."""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Particles, neutral model, features and the uninterrupted run's directory."""
    tmp = tmp_path_factory.mktemp("resume")
    root = train_data.dataset("linear", 6)
    particles = load_particles(root / "import/particles.csv", root / "import/stack.mrcs")
    neutral = train_data.truth_models(root)["state_010"]
    compute_features(neutral, particles, tmp / "features.npy", **BAND)
    train(neutral, particles, tmp / "features.npy", tmp / "whole", SETTINGS)
    return particles, neutral, tmp / "features.npy", tmp / "whole"


def killed_before(epoch, monkeypatch):
    """Make training stop (as if killed) when it reaches 0-based `epoch`."""
    real = train_module._run_epoch

    def run_epoch(*args, **kwargs):
        if args[5] == epoch:
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "_run_epoch", run_epoch)


def outputs(run):
    return {name: pd.read_csv(run / name) for name in ("latent.csv", "loss.csv", "junk.csv")}


def test_killed_and_resumed_run_equals_the_uninterrupted_one(data, tmp_path, monkeypatch):
    """Killed after the first epoch's checkpoint: the loss history, junk, optimizer and
    random states must all come back from it."""
    particles, neutral, features, whole = data
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        killed_before(1, patch)
        with pytest.raises(Killed):
            train(neutral, particles, features, run, SETTINGS)
    assert not (run / "latent.csv").exists()
    (run / ".latent.csv.abc.tmp").write_text("half-written")  # as a kill leaves them
    (run / "checkpoints/ckpt-9_temp").mkdir()
    history = train(neutral, particles, features, run, SETTINGS)
    assert history["epoch"].tolist() == [1, 2, 3]
    resumed, uninterrupted = outputs(run), outputs(whole)
    for name, frame in uninterrupted.items():
        pd.testing.assert_frame_equal(
            resumed[name].drop(columns="seconds", errors="ignore"),
            frame.drop(columns="seconds", errors="ignore"),
            check_exact=True,
        )
    assert not list(run.glob(".*.tmp")) and not list(run.glob("checkpoints/*_temp*"))


def test_rerun_of_a_finished_run_rewrites_its_outputs(data, tmp_path):
    """--forcerun deletes a finished run's outputs, not its checkpoints."""
    particles, neutral, features, whole = data
    shutil.copytree(whole / "checkpoints", tmp_path / "run/checkpoints")
    history = train(neutral, particles, features, tmp_path / "run", SETTINGS)
    assert history["epoch"].tolist() == [1, 2, 3]
    pd.testing.assert_frame_equal(
        outputs(tmp_path / "run")["latent.csv"], outputs(whole)["latent.csv"], check_exact=True
    )


def test_checkpoints_of_other_data_or_more_epochs_start_afresh(data, tmp_path, caplog):
    particles, neutral, features, whole = data
    shutil.copytree(whole / "checkpoints", tmp_path / "run/checkpoints")
    other = tmp_path / "other.npy"
    np.save(other, np.load(features)[::-1].copy())  # same shape, other particles' features
    shutil.copy(features.with_suffix(".json"), other.with_suffix(".json"))
    caplog.set_level(logging.INFO, logger="gmmscape")
    one = dataclasses.replace(SETTINGS, epochs=1)
    history = train(neutral, particles, other, tmp_path / "run", one)
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert any("features_sha256 differ" in m and "starting afresh" in m for m in warnings)
    assert history["epoch"].tolist() == [1]
    assert not any("resumed" in r.message for r in caplog.records)
    key = json.loads((whole / "checkpoints/run.json").read_text())
    stale = train_module._stale_reason
    assert stale(whole / "checkpoints", key, 3) is None
    assert (
        stale(whole / "checkpoints", key, 2) == "they are at epoch 3, beyond the 2 epochs asked for"
    )
    assert "table_sha256 differ" in stale(whole / "checkpoints", key | {"table_sha256": "x"}, 3)
