"""Training throughput and the memory of streaming training on large data sets.

    .venv/bin/python bench/bench_train.py throughput [--sizes 512:64 2048:128] [--particles 512]
    .venv/bin/python bench/bench_train.py memory [--counts 10000 100000] [--box 128]

throughput: random GMM and particles (a stack on disk, a canonical table), features,
then two epochs of the default networks (3 x 512, batch 16); the second epoch's
particles/second is reported (the first includes tracing). The band is |k| <= b/4.

memory: for each particle count, a subprocess writes a random box-128 stack in chunks,
computes features and trains one epoch (small networks, N=64: the claim is about the
data path), then reports its peak resident memory (ru_maxrss). Flat across counts
means memory does not grow with the data set.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from gmmscape.geometry import random_rotations
from gmmscape.io.mrc import write_stack
from gmmscape.table import ROTATION_COLUMNS

APIX = 4.0


def random_dataset(folder: Path, n: int, box: int, rng: np.random.Generator, chunk: int = 2000):
    """A canonical table and a random float32 stack of n particles, written chunk by chunk."""
    rot = random_rotations(n, rng).reshape(n, 9)
    table = pd.DataFrame(rot, columns=ROTATION_COLUMNS)
    table.insert(0, "stack_index", np.arange(n))
    table.insert(0, "index", np.arange(n))
    table["shift_x"], table["shift_y"], table["box"] = 0.0, 0.0, box
    table.to_csv(folder / "table.csv", index=False)
    chunks = (
        rng.standard_normal((min(chunk, n - s), box, box), dtype=np.float32)
        for s in range(0, n, chunk)
    )
    write_stack(folder / "stack.mrcs", n, box, APIX, chunks)


def random_gmm(n: int, box: int, rng: np.random.Generator) -> np.ndarray:
    return np.column_stack(
        [rng.uniform(-0.3, 0.3, (n, 3)), rng.uniform(0.2, 1, n), np.full(n, 1.5 / box)]
    ).astype(np.float32)


def run_training(folder: Path, n_gaussians: int, box: int, epochs: int, **settings) -> dict:
    """Features + training on the data set in folder; seconds of each stage and the history."""
    from gmmscape.features import compute_features
    from gmmscape.streaming import load_particles
    from gmmscape.train import TrainSettings, train

    rng = np.random.default_rng(1)
    gmm = random_gmm(n_gaussians, box, rng)
    particles = load_particles(folder / "table.csv", folder / "stack.mrcs")
    band = dict(res_lo=None, res_hi=4 * APIX)  # |k| <= b/4
    t0 = time.perf_counter()
    compute_features(gmm, particles, folder / "features.npy", **band)
    seconds_features = time.perf_counter() - t0
    s = TrainSettings(epochs=epochs, **band, **settings)
    history = train(gmm, particles, folder / "features.npy", folder / "run", s)
    return {"features_s": seconds_features, "history": history.to_dict("list")}


def throughput(args: argparse.Namespace) -> None:
    print("N     box  particles  features p/s  training p/s (epoch 2)")
    for size in args.sizes:
        n, box = map(int, size.split(":"))
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            random_dataset(folder, args.particles, box, np.random.default_rng(0))
            result = run_training(folder, n, box, epochs=2)
        hist = result["history"]
        train_rate = hist["particles"][-1] / hist["seconds"][-1]
        feat_rate = args.particles / result["features_s"]
        print(f"{n:<5d} {box:<4d} {args.particles:<10d} {feat_rate:12.1f}  {train_rate:12.1f}")


def memory_child(n: int, box: int) -> None:
    """Subprocess body: data set, features, one epoch; prints its peak RSS as JSON."""
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        folder = Path(tmp)
        random_dataset(folder, n, box, np.random.default_rng(0))
        t0 = time.perf_counter()
        run_training(folder, 64, box, epochs=1, hidden=(64, 64), pretrain_steps=10, batch=64)
        seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n": n, "box": box, "peak_rss_mb": peak_mb, "seconds": seconds}))


def memory(args: argparse.Namespace) -> None:
    print("particles  box  stack GB  peak RSS MB  seconds")
    for n in args.counts:
        out = subprocess.run(
            [sys.executable, __file__, "memory-child", str(n), str(args.box)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        gb = n * args.box**2 * 4 / 1e9
        print(f"{n:<10d} {args.box:<4d} {gb:8.2f}  {r['peak_rss_mb']:11.0f}  {r['seconds']:7.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--sizes", nargs="+", default=["512:64", "2048:128"], help="N:box")
    t.add_argument("--particles", type=int, default=512)
    m = sub.add_parser("memory")
    m.add_argument("--counts", type=int, nargs="+", default=[10000, 100000])
    m.add_argument("--box", type=int, default=128)
    c = sub.add_parser("memory-child")
    c.add_argument("n", type=int)
    c.add_argument("box", type=int)
    args = ap.parse_args()
    if args.what == "throughput":
        throughput(args)
    elif args.what == "memory":
        memory(args)
    else:
        memory_child(args.n, args.box)


if __name__ == "__main__":
    main()
