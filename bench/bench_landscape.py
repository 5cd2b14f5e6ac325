"""Benchmark: UMAP + clustering + reconstruction of a 100,000-particle landscape.

Synthetic 4D latents (four clusters, one of them a curve) and a random box-64 noise stack
on disk with random poses and CTFs stand in for a trained run. Each stage runs in a fresh
process, which reports its wall time and peak RSS (ru_maxrss):
- embed: PCA + seeded UMAP to 2D (numba's one-time compilation timed apart, on 500 points);
- cluster: Gaussian mixture (k = 4) on the latent, hdbscan and spectral (k = 4) on the
  UMAP view;
- reconstruct: consensus map and both half maps of all particles (trilinear, then nearest).

    .venv/bin/python bench/bench_landscape.py [--n 100000] [--box 64]
    .venv/bin/pytest -q -s -m bench bench/bench_landscape.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gmmscape.geometry import random_rotations
from gmmscape.io.mrc import write_stack

APIX = 4.0


def make_latent(n: int, rng: np.random.Generator) -> np.ndarray:
    """Four clusters in 4D: three blobs and one curved arc."""
    label = rng.integers(0, 4, n)
    centres = 2.5 * np.eye(4)
    z = centres[label] + 0.3 * rng.standard_normal((n, 4))
    arc = label == 3
    angle = rng.uniform(0, np.pi, arc.sum())
    z[arc, :2] += np.column_stack([np.cos(angle), np.sin(angle)])
    return z


def make_table(n: int, box: int, rng: np.random.Generator) -> pd.DataFrame:
    """A canonical particle table (the columns reconstruction reads) with random poses/CTFs."""
    R = random_rotations(n, rng).reshape(n, 9)
    defocus = rng.uniform(8000, 25000, n)
    table = pd.DataFrame(R, columns=[f"r{i}{j}" for i in range(3) for j in range(3)])
    table.insert(0, "stack_index", np.arange(n))
    table.insert(0, "index", np.arange(n))
    table["shift_x"], table["shift_y"] = rng.uniform(-3, 3, (2, n))
    table["defocus_u"], table["defocus_v"] = defocus, defocus - 300.0
    table["defocus_angle"] = rng.uniform(0, 180, n)
    table["voltage"], table["cs"], table["amp_contrast"] = 300.0, 2.7, 0.1
    table["phase_shift"], table["bfactor"] = 0.0, 0.0
    table["box"], table["subset"] = box, np.arange(n) % 2 + 1
    return table


def make_inputs(folder: Path, n: int, box: int) -> None:
    rng = np.random.default_rng(0)
    np.save(folder / "latent.npy", make_latent(n, rng))
    make_table(n, box, rng).to_csv(folder / "particles.csv", index=False)
    chunks = (
        rng.standard_normal((min(1000, n - i), box, box), dtype=np.float32)
        for i in range(0, n, 1000)
    )
    write_stack(folder / "stack.mrcs", n, box, APIX, chunks)
    meta = {"apix": APIX, "box": box, "box_original": box, "apix_original": APIX}
    (folder / "meta.json").write_text(json.dumps(meta))


def stage(name: str, folder: Path) -> dict:
    """Run one stage in this process; returns its timings (s)."""
    times = {}
    if name == "embed":
        from gmmscape.embedding import LatentEmbedding

        z = np.load(folder / "latent.npy")
        start = time.perf_counter()
        LatentEmbedding(random_state=0).fit(z[:500])  # numba compiles UMAP's kernels once
        times["umap_compile"] = time.perf_counter() - start
        start = time.perf_counter()
        view = LatentEmbedding(random_state=0).fit_transform(z)
        times["pca_umap"] = time.perf_counter() - start
        np.save(folder / "view.npy", view)
    elif name == "cluster":
        from gmmscape.clustering import LatentClusters

        z, view = np.load(folder / "latent.npy"), np.load(folder / "view.npy")
        for method, points in (("gmm", z), ("hdbscan", view[:, 2:]), ("spectral", view[:, 2:])):
            start = time.perf_counter()
            model = LatentClusters(method, n_clusters=4, random_state=0).fit(points)
            times[method] = time.perf_counter() - start
            times[f"{method}_clusters"] = model.n_clusters_
    else:
        from gmmscape.images import cropped_source
        from gmmscape.reconstruct import reconstruct_with_halves

        table = pd.read_csv(folder / "particles.csv")
        source = cropped_source(
            folder / "stack.mrcs", json.loads((folder / "meta.json").read_text())
        )
        for interpolation in ("trilinear", "nearest"):
            start = time.perf_counter()
            reconstruct_with_halves(
                table, source, [np.arange(len(table))], interpolation=interpolation
            )
            times[interpolation] = time.perf_counter() - start
    return times


def run(folder: Path, n: int, box: int) -> dict:
    start = time.perf_counter()
    make_inputs(folder, n, box)
    result = {"n": n, "box": box, "generate_s": time.perf_counter() - start}
    for name in ("embed", "cluster", "reconstruct"):
        out = subprocess.run(
            [sys.executable, __file__, "--stage", name, "--folder", str(folder)],
            check=True,
            capture_output=True,
            text=True,
        )
        result[name] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _child(name: str, folder: Path) -> None:
    import resource

    start = time.perf_counter()
    times = stage(name, folder)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    times |= {"total_s": time.perf_counter() - start, "peak_mb": peak_mb}
    print(json.dumps(times))


@pytest.mark.bench
def test_landscape_benchmark():
    folder = Path(tempfile.mkdtemp(prefix="gmmscape-bench-landscape-"))
    try:
        result = run(folder, 100_000, 64)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print("\n" + json.dumps(result, indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--box", type=int, default=64)
    parser.add_argument("--stage", choices=["embed", "cluster", "reconstruct"])
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    if args.stage:
        _child(args.stage, args.folder)
    else:
        folder = Path(tempfile.mkdtemp(prefix="gmmscape-bench-landscape-"))
        try:
            print(json.dumps(run(folder, args.n, args.box), indent=1))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
