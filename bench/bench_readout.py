"""How much of the true motion the encoder's input holds: a cross-validated ridge
read-out of the true coordinate from the features' leading principal components.

    .venv/bin/python bench/bench_readout.py RUN SIM [--res-hi A] [--weights snr|flat]

RUN: a finished pipeline output directory (its import and neutral GMM are used); SIM:
the simulated set (ground_truth.csv). Features are computed afresh with the given band
and weighting; the read-out's |rho| bounds what a linear encoder can reach.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from gmmscape.benchmark import readout
from gmmscape.choices import load_snr
from gmmscape.features import compute_features
from gmmscape.gmmio import read_text
from gmmscape.streaming import load_particles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("sim", type=Path)
    parser.add_argument("--res-hi", type=float, default=None, help="default: the run's band")
    parser.add_argument("--weights", default="snr", choices=("snr", "flat"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    particles = load_particles(args.run / "import/all.csv", args.run / "import/stack.mrcs")
    neutral, _, _ = read_text(args.run / "gmm/all/neutral.txt")
    choices = args.run / "choices.yaml"
    res_hi = args.res_hi or json.loads((args.run / "features/all.json").read_text())["res_hi"]
    out = args.run / "features" / f"readout_{res_hi}_{args.weights}.npy"
    compute_features(
        neutral, particles, out, res_lo=None, res_hi=res_hi,
        frc_weights=args.weights, snr=load_snr(choices),
    )  # fmt: skip
    truth = pd.read_csv(args.sim / "ground_truth.csv").set_index("index")
    coordinate = truth.loc[particles.index, "coordinate"].to_numpy()
    rho = readout(np.load(out), coordinate)
    print(json.dumps({"res_hi": res_hi, "weights": args.weights, "readout_rho": round(rho, 3)}))


if __name__ == "__main__":
    main()
