"""Features stored as float16 against float32: disk, rounding and recovery, in one run.

    nice -n 10 .venv/bin/python bench/bench_feature_dtype.py [--size ci|full] [--epochs N]

On the realistic motion-plus-composition set (gmmscape.benchmark), with the settings
derived from the data (gmmscape.choices) and the mean of the true models as the neutral
GMM, the features are written in both storages and the same training (same seed) runs
on each; printed per storage: file size, the largest rounding error, and the recovery
(best latent axis |rho| with the true motion, 2-means ARI with the composition).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from gmmscape import benchmark, choices
from gmmscape.features import DTYPES, compute_features
from gmmscape.importer import import_particles
from gmmscape.streaming import load_particles
from gmmscape.train import TrainSettings, train


def recovery(run: Path, sim: Path) -> dict[str, float]:
    latent = pd.read_csv(run / "latent.csv")
    z = latent.filter(regex=r"^z\d+$").to_numpy()
    latent[["pc0", "pc1"]] = PCA(2).fit_transform(z)
    truth = pd.read_csv(sim / "ground_truth.csv").set_index("index").loc[latent["index"]]
    rho = benchmark.best_axis(latent, truth["coordinate"].to_numpy())[1]
    ari = benchmark.kmeans2_ari(z, truth["composition"].to_numpy())
    return {"rho": round(rho, 3), "kmeans2_ari": round(ari, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="ci", choices=("ci", "full"))
    parser.add_argument("--epochs", type=int, default=None, help="default: derived")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="gmmscape-dtype-"))
    sim = benchmark.dataset("protein_composition", root, args.size, with_oracle=False)
    chosen = choices.choose(sim / "particles.star", sim / "consensus.mrc", root / "c.yaml", {})
    import_particles(sim / "particles.star", root / "import", box=chosen["box"].value)
    particles = load_particles(root / "import" / "particles.csv", root / "import" / "stack.mrcs")
    models = [np.load(p) for p in sorted((sim / "truth_gmm").glob("state_*.npy"))]
    neutral = np.mean(models, axis=0)
    snr, band = choices.load_snr(root / "c.yaml"), chosen["train.res_hi"].value
    epochs = args.epochs or chosen["train.epochs"].value
    reference = None
    for dtype in DTYPES:
        features = root / f"features_{dtype}.npy"
        compute_features(
            neutral, particles, features, res_lo=None, res_hi=band, frc_weights="snr",
            snr=snr, dtype=dtype,
        )  # fmt: skip
        values = np.load(features).astype(np.float32)
        reference = values if reference is None else reference
        settings = TrainSettings(
            epochs=epochs, lr=1e-3, noise=0.15, res_hi=band, frc_weights="snr"
        )  # the shipped config's lr and noise
        train(neutral, particles, features, root / f"train_{dtype}", settings, snr=snr)
        result = {
            "dtype": dtype,
            "megabytes": round(features.stat().st_size / 2**20, 1),
            "max_rounding": float(np.abs(values - reference).max()),
            "epochs": epochs,
            **recovery(root / f"train_{dtype}", sim),
        }
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
