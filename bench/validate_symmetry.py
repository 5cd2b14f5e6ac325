"""Validation: symmetry expansion on oligomers with ground truth (docs/validation.md).

Simulates gmmscape.phantoms.oligomer_system (in every particle one random subunit's
domain has slid along its path) at box 64, 4 A/pixel, imports it with a crop to box
32, expands it (gmmscape.symmetry), trains position mode with only the automatic ASU
free (1D latent) and prints, per group, the copies' recovery
(gmmscape.symmetry.copy_recovery: changed vs resting copies ARI, |rho| of the moved
domain's position) as a Markdown row.

    .venv/bin/python bench/validate_symmetry.py [--groups C3 D2] [--per-state 60]
        [--snr 0.1] [--epochs 20] [--res-hi 32]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd

from gmmscape import phantoms
from gmmscape.features import compute_features
from gmmscape.importer import import_particles
from gmmscape.simulate import simulate
from gmmscape.streaming import load_particles
from gmmscape.symmetry import copy_recovery, free_gaussians, operators, write_expanded
from gmmscape.train import TrainSettings, train


def recovery(group: str, root: Path, args: argparse.Namespace) -> dict:
    system = phantoms.oligomer_system(group)
    paths = simulate(system, root / "sim", per_state=args.per_state, snr=args.snr, seed=args.seed)
    import_particles(paths["particles"], root / "import", box=32)
    write_expanded(root / "import" / "particles.csv", root / "expanded.csv", group)
    particles = load_particles(root / "expanded.csv", root / "import" / "stack.mrcs")
    neutral = system.models.mean(axis=0)
    inside = free_gaussians(group, neutral, particles)
    band = dict(res_lo=None, res_hi=args.res_hi)
    compute_features(neutral, particles, root / "features.npy", **band)
    settings = TrainSettings(
        mode="position", latent_dim=1, epochs=args.epochs, lr=1e-3, seed=args.seed, **band
    )
    train(neutral, particles, root / "features.npy", root / "run", settings, inside=inside)
    latent = pd.read_csv(root / "run" / "latent.csv")
    truth = pd.read_csv(paths["ground_truth"]).set_index("index").loc[latent["index"]]
    return {"particles": particles.n // len(operators(group)), "copies": particles.n} | (
        copy_recovery(latent, truth)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", nargs="+", default=["C3", "D2"])
    parser.add_argument("--per-state", type=int, default=60)
    parser.add_argument("--snr", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--res-hi", type=float, default=32.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print("| group | particles | copies | SNR | epochs | ARI changed/resting | "
          "rho moved | rho every copy | seconds |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for group in args.groups:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            r = recovery(group, Path(tmp), args)
        print(
            f"| {group} | {r['particles']} | {r['copies']} | {args.snr:g} | {args.epochs} | "
            f"{r['ari']:.3f} | {r['rho_moved']:.3f} | {r['rho_every']:.3f} | "
            f"{time.perf_counter() - start:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
