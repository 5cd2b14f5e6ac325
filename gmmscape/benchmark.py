"""The realistic benchmark: protein-like data sets (gmmscape.protein) and recovery scores.

Two sets, each with ground truth and an oracle ceiling (gmmscape.oracle):
``protein_hinge`` (a domain hinging by 12 A at its tip) and ``protein_composition``
(the same plus a 13 % domain missing from half the particles, independent of the
motion), simulated as a refinement hands them over: RELION 3.1 STAR, astigmatic CTF
with defocus 0.8-2.5 um, shifts, images not phase-flipped, the consensus map and half
maps reconstructed from the particles. ``SIZES`` gives the full size (5,000 particles,
box 64, 2 A/pixel, SNR 0.05) and the CI size.

A run is scored by what a user would read off it: the best latent axis (any ``z``,
``pc0`` or ``pc1``) as a rank correlation with the true motion, and the run's own
classes (``cluster``) against the true composition (adjusted Rand index).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeCV
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import cross_val_predict

from .oracle import oracle
from .simulate import simulate

SYSTEMS = ("protein_hinge", "protein_composition")


@dataclass(frozen=True)
class Size:
    per_state: int  # x 40 states
    box: int
    apix: float
    snr: float


SIZES = {
    "full": Size(per_state=125, box=64, apix=2.0, snr=0.05),
    "ci": Size(per_state=30, box=64, apix=2.0, snr=0.05),
}
DEFOCUS = (8000.0, 25000.0)  # Angstrom
ORACLE_PARTICLES = 1000  # the ceiling's estimate: its rho is within ~0.005 of all 5,000


def dataset(
    system: str, root: str | Path, size: str = "full", seed: int = 7, with_oracle: bool = True
) -> Path:
    """The simulated set (made once) with its oracle table, under root/system."""
    folder = Path(root) / f"{system}_{size}_{seed}"
    if not (folder / "particles.star").is_file():
        simulate(system, folder, **asdict(SIZES[size]), seed=seed, defocus=DEFOCUS,
                 maps="reconstructed")  # fmt: skip
    if with_oracle and not (folder / "oracle.csv").is_file():
        oracle(folder, limit=ORACLE_PARTICLES).to_csv(folder / "oracle.csv", index=False)
    return folder


def best_axis(latent: pd.DataFrame, truth: np.ndarray) -> tuple[str, float]:
    """The latent column (z*, pc0, pc1) whose ranks follow the truth best, and its |rho|."""
    columns = [c for c in latent.columns if c.startswith("z") or c in ("pc0", "pc1")]
    rho = {c: abs(spearmanr(latent[c], truth)[0]) for c in columns}
    best = max(rho, key=lambda c: rho[c])
    return best, float(rho[best])


def score(landscape: str | Path, sim_dir: str | Path) -> dict[str, float | str]:
    """Recovery of one run's landscape/{run} folder against a simulated set's truth."""
    latent = pd.read_csv(Path(landscape) / "latent.csv").dropna(subset=["z0"])
    truth = pd.read_csv(Path(sim_dir) / "ground_truth.csv").set_index("index")
    truth = truth.loc[latent["index"]]
    axis, rho = best_axis(latent, truth["coordinate"].to_numpy())
    result: dict[str, float | str] = {"best_axis": axis, "rho": rho}
    if truth["composition"].nunique() > 1:
        comp = truth["composition"].to_numpy()
        z = latent[[c for c in latent.columns if c.startswith("z")]].to_numpy()
        result |= {
            "classes": int(latent["cluster"].max()) + 1,
            "class_ari": float(adjusted_rand_score(comp, latent["cluster"])),
            "kmeans2_ari": kmeans2_ari(z, comp),
        }
    return result


def readout(features: np.ndarray, truth: np.ndarray, components: int = 200) -> float:
    """|rho| of a 5-fold cross-validated ridge read-out of the truth from the features'
    leading principal components: how much of the motion the encoder's input holds (a
    linear encoder reaches about this; a band that discards the motion's signal cannot)."""
    x = PCA(min(components, *features.shape), random_state=0).fit_transform(features)
    ridge = RidgeCV(alphas=np.logspace(-3, 4, 15))
    return float(abs(spearmanr(cross_val_predict(ridge, x, truth, cv=5), truth)[0]))


def kmeans2_ari(z: np.ndarray, composition: np.ndarray) -> float:
    """ARI of an unsupervised 2-means split of the latent against the true composition."""
    two = KMeans(2, n_init=10, random_state=0).fit_predict(z)
    return float(adjusted_rand_score(composition, two))


def oracle_score(sim_dir: str | Path, res_hi: float | None = None) -> dict[str, float]:
    """The ceiling: the oracle's rank correlation and composition accuracy (with res_hi,
    within that band: the ceiling of a training band, made once per band)."""
    name = "oracle.csv" if res_hi is None else f"oracle_{res_hi:.2f}A.csv"
    path = Path(sim_dir) / name
    if not path.is_file():
        oracle(sim_dir, limit=ORACLE_PARTICLES, res_hi=res_hi).to_csv(path, index=False)
    table = pd.read_csv(path)
    return {
        "rho": float(spearmanr(table["coordinate"], table["oracle_coordinate"])[0]),
        "composition_accuracy": float((table["composition"] == table["oracle_composition"]).mean()),
    }
