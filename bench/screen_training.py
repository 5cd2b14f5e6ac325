"""Training settings one change at a time on a realistic set at CI size.

    .venv/bin/python bench/screen_training.py protein_hinge '{}' '{"epochs": 24}' ...

Each JSON argument overrides TrainSettings (plus "band", the loss band in Angstrom; the
features follow its band and frc_weights) on the same particles, neutral model (the
mean of the true models) and SNR weights as tests/test_realistic.py; prints the best
latent axis' |rho| against the true motion.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from gmmscape import benchmark, choices
from gmmscape.features import compute_features
from gmmscape.importer import import_particles
from gmmscape.streaming import load_particles
from gmmscape.train import TrainSettings, train

OUT = Path(__file__).resolve().parent / "out" / "screen"
BASE = dict(epochs=12, lr=1e-3, noise=0.15, frc_weights="snr")


def main(system: str, specs: list[str]) -> None:
    root = OUT / system
    sim = root / "sim"
    if not (sim / "particles.star").exists():
        sim = benchmark.dataset(system, root, "ci", with_oracle=False)
    chosen = choices.choose(sim / "particles.star", sim / "consensus.mrc", root / "c.yaml", {})
    if not (root / "import" / "stack.mrcs").exists():
        import_particles(sim / "particles.star", root / "import", box=chosen["box"].value)
    particles = load_particles(root / "import" / "particles.csv", root / "import" / "stack.mrcs")
    models = [np.load(p) for p in sorted((sim / "truth_gmm").glob("state_*.npy"))]
    neutral, snr = np.mean(models, axis=0), choices.load_snr(root / "c.yaml")
    truth = pd.read_csv(sim / "ground_truth.csv").set_index("index")
    for spec in specs:
        change = json.loads(spec)
        band = change.pop("band", chosen["train.res_hi"].value)
        run = root / f"run_{hashlib.sha1(spec.encode()).hexdigest()[:10]}"
        start = time.time()
        weights = change.get("frc_weights", BASE["frc_weights"])  # features share the loss
        features = root / f"features_{band}_{weights}.npy"
        if not features.exists():
            compute_features(
                neutral, particles, features, res_lo=None, res_hi=band, frc_weights=weights, snr=snr
            )
        settings = TrainSettings(**{**BASE, "res_hi": band, **change})
        train(neutral, particles, features, run, settings, snr=snr)
        latent = pd.read_csv(run / "latent.csv")
        z = latent.filter(regex=r"^z\d+$").to_numpy()
        latent[["pc0", "pc1"]] = PCA(2).fit_transform(z)
        coordinate = truth.loc[latent["index"], "coordinate"].to_numpy()
        rho = benchmark.best_axis(latent, coordinate)[1]
        print(f"{system} {spec} band {band}: rho {rho:.3f} ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
