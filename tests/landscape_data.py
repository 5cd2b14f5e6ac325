"""Trained runs for the landscape stage's end-to-end tests, made once per test session.

CI-sized like tests/test_train.py: the simulator's systems at box 64 cropped to 32,
50 particles per state, lr 1e-3 over the band up to 48 A, from the mean of the true
GMMs as neutral model; 10 epochs, and for the composition system 30 epochs with latent
noise 0.15 (test_train's settings that separate the compositions). The even and odd
halves train independently (own features, own run), as the pipeline runs them with
`split: true`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pandas as pd
import train_data

from gmmscape.features import compute_features
from gmmscape.streaming import load_particles
from gmmscape.train import TrainSettings, train

PER_STATE = 50
BAND = dict(res_lo=None, res_hi=48.0)
SUBSETS = {"even": 1, "odd": 2}


@cache
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
        frame = pd.read_csv(table)
        frame[frame["subset"] == SUBSETS[half]].to_csv(run / "particles.csv", index=False)
        table = run / "particles.csv"
    particles = load_particles(table, root / "import" / "stack.mrcs")
    neutral = train_data.average_model(root)
    compute_features(neutral, particles, run / "features.npy", **BAND)
    longer = dict(epochs=30, noise=0.15) if system == "composition" else dict(epochs=10)
    settings = TrainSettings(mode=mode, latent_dim=latent_dim, lr=1e-3, **longer, **BAND)
    train(neutral, particles, run / "features.npy", run, settings)
    return run
