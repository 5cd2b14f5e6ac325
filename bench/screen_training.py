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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from gmmscape import benchmark, choices
from gmmscape.features import compute_features
from gmmscape.fsc import SpectralSNR
from gmmscape.importer import import_particles
from gmmscape.streaming import ParticleSet, load_particles
from gmmscape.train import TrainSettings, train

OUT = Path(__file__).resolve().parent / "out" / "screen"
BASE = dict(epochs=12, lr=1e-3, noise=0.15, frc_weights="snr")


@dataclass(frozen=True)
class Prepared:
    """One CI-size set imported at its derived box, with the tests' neutral model."""

    root: Path
    chosen: dict
    particles: ParticleSet
    neutral: np.ndarray
    snr: SpectralSNR | None
    truth: pd.DataFrame


def prepare(system: str) -> Prepared:
    """Simulate (once), choose the settings, import; the mean true model is neutral."""
    root = OUT / system
    sim = root / "sim"
    if not (sim / "particles.star").exists():
        sim = benchmark.dataset(system, root, "ci", with_oracle=False)
    chosen = choices.choose(sim / "particles.star", sim / "consensus.mrc", root / "c.yaml", {})
    if not (root / "import" / "stack.mrcs").exists():
        import_particles(sim / "particles.star", root / "import", box=chosen["box"].value)
    particles = load_particles(root / "import" / "particles.csv", root / "import" / "stack.mrcs")
    models = [np.load(p) for p in sorted((sim / "truth_gmm").glob("state_*.npy"))]
    truth = pd.read_csv(sim / "ground_truth.csv").set_index("index")
    return Prepared(root, chosen, particles, np.mean(models, axis=0),
                    choices.load_snr(root / "c.yaml"), truth)  # fmt: skip


def trained(data: Prepared, change: dict, name: str) -> Path:
    """A run of the BASE settings with one change (and its features), trained once."""
    change = dict(change)
    band = change.pop("band", data.chosen["train.res_hi"].value)
    weights = change.get("frc_weights", BASE["frc_weights"])  # features share the loss
    features = data.root / f"features_{band}_{weights}.npy"
    if not features.exists():
        compute_features(data.neutral, data.particles, features, res_lo=None, res_hi=band,
                         frc_weights=weights, snr=data.snr)  # fmt: skip
    run = data.root / f"run_{name}"
    if not (run / "latent.csv").exists():
        settings = TrainSettings(**{**BASE, "res_hi": band, **change})
        train(data.neutral, data.particles, features, run, settings, snr=data.snr)
    return run


def best_axis_rho(data: Prepared, index: np.ndarray, z: np.ndarray) -> float:
    """|rho| of the latent column or leading PC that follows the true motion best."""
    latent = pd.DataFrame(z, columns=[f"z{k}" for k in range(z.shape[1])])
    latent[["pc0", "pc1"]] = PCA(2).fit_transform(z)
    return benchmark.best_axis(latent, data.truth.loc[index, "coordinate"].to_numpy())[1]


def main(system: str, specs: list[str]) -> None:
    data = prepare(system)
    for spec in specs:
        start = time.time()
        change = json.loads(spec)
        band = change.get("band", data.chosen["train.res_hi"].value)
        run = trained(data, change, hashlib.sha1(spec.encode()).hexdigest()[:10])
        latent = pd.read_csv(run / "latent.csv")
        rho = best_axis_rho(
            data, latent["index"].to_numpy(), latent.filter(regex=r"^z\d+$").to_numpy()
        )
        print(f"{system} {spec} band {band}: rho {rho:.3f} ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
