"""Trained runs for the landscape stage's end-to-end tests, made once per test session.

CI-sized like tests/test_train.py: the simulator's systems at box 64 cropped to 32,
50 particles per state, from the mean of the true GMMs as neutral model, with
train_data's settings (FAST; COMPOSITION for the composition system, CLASSES for its
scored 4D run on all particles, but 10 epochs when its extra density is scaled up: such
compositions separate with ARI 1.0 by then). The even and odd halves train independently
(own features, own run), as the pipeline runs them with `split: true`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import train_data

from gmmscape.features import compute_features
from gmmscape.streaming import load_particles
from gmmscape.table import SUBSETS, half_rows
from gmmscape.train import TrainSettings, train

PER_STATE = 50
HEAVY = 6.0  # extra density x6 (~40% of the mass): compositions differ more than the noise


@train_data.cache_by_value
def trained_run(
    system: str, half: str, mode: str, latent_dim: int, extra_scale: float = 1.0
) -> Path:
    """Directory of a finished run (latent.csv, decoder) on all particles or one half, of
    the system with its extra density scaled by extra_scale (train_data.dataset)."""
    root = train_data.dataset(system, PER_STATE, extra_scale=extra_scale)
    run = train_data.ROOT / f"landscape_{system}_{half}_{mode}_{latent_dim}_{extra_scale:g}"
    run.mkdir(parents=True)
    table = root / "import" / "particles.csv"
    if half in SUBSETS:
        half_rows(pd.read_csv(table), half).to_csv(run / "particles.csv", index=False)
        table = run / "particles.csv"
    particles = load_particles(table, root / "import" / "stack.mrcs")
    neutral = train_data.average_model(root)
    compute_features(neutral, particles, run / "features.npy", **train_data.BAND)
    knobs = train_data.COMPOSITION if system == "composition" else train_data.FAST
    if extra_scale > 1.0:
        knobs = dict(knobs, epochs=train_data.FAST["epochs"])
    elif system == "composition" and half == "all" and latent_dim == train_data.COMPOSITION_LATENT:
        knobs = train_data.CLASSES
    settings = TrainSettings(mode=mode, latent_dim=latent_dim, **knobs)
    train(neutral, particles, run / "features.npy", run, settings)
    return run
