"""Time and peak memory of the coarse-to-fine neutral GMM build.

    .venv/bin/python bench/bench_gmmfit.py [--epochs 300] [--cases demo box128] [--compare]

Cases: ``demo``, the simulated composition system's consensus map at box 64, 4 A/pixel,
64 -> 512 Gaussians, 40 -> 10 A; ``box128``, the same system at box 128, 2 A/pixel,
256 -> 2048 Gaussians, 40 -> 10 A. Maps are simulated noise-free (the consensus is
the population-weighted average of the true maps), masks as the simulator writes them.
Simulation and build run in their own processes, started by a parent that never imports
TensorFlow (Linux carries a parent's resident size into a child's ``ru_maxrss``), so the
build's peak resident memory is its own; the baseline is the same process after importing
TensorFlow and reading the maps, before the build. Prints a Markdown table.

``--compare`` also measures the choice of loss on the demo's last level (512 Gaussians,
10 A, same start from levels 1-3, same epochs and learning rate): the analytic 3D FSC
used by gmmfit against the paper's mean FRC between GMM projections and projections of
the map (voxel-wise rotation, as tests/test_projection.py checks) over random views.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "demo": dict(box=64, apix=4.0, start_n=64, target_n=512, start_res=40.0, target_res=10.0),
    "box128": dict(box=128, apix=2.0, start_n=256, target_n=2048, start_res=40.0, target_res=10.0),
}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_case(name: str, data: Path, epochs: int) -> dict:
    """Build the case's GMM level by level in this process; timings, memory, FSC reached."""
    from gmmscape.fsc import resolution_at
    from gmmscape.gmmfit import build_level, evaluate
    from gmmscape.io.mrc import read_map
    from gmmscape.levels import level_schedule

    case = CASES[name]
    vol, apix = read_map(data / "consensus.mrc")
    mask, _ = read_map(data / "mask.mrc")
    baseline = peak_mb()
    levels = level_schedule(
        case["start_n"], case["target_n"], case["start_res"], case["target_res"]
    )
    gmm, seconds = None, []
    start = time.perf_counter()
    for level, (n, res) in enumerate(levels):
        t0 = time.perf_counter()
        gmm = build_level(vol, apix, gmm, n, res, mask, epochs, seed=level)
        seconds.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    table = evaluate(gmm, vol, apix)
    below = table[(table.shell >= 1) & (table.resolution >= case["target_res"])]
    return {
        "case": name,
        **case,
        "epochs": epochs,
        "levels": [f"{n}@{res:.1f}" for n, res in levels],
        "level_seconds": [round(s, 1) for s in seconds],
        "seconds": round(total, 1),
        "n_final": len(gmm),
        "baseline_mb": round(baseline),
        "peak_mb": round(peak_mb()),
        "min_fsc_below_target": round(float(below.fsc.min()), 4),
        "res_fsc_095": round(resolution_at(table, 0.95), 2),
    }


def fit_by_projections(start, vol, apix: float, res: float, epochs: int, n_views: int):
    """The paper's formulation: Adam on 1 - mean FRC of GMM vs map projections over views."""
    import numpy as np
    import tensorflow as tf
    from scipy import ndimage

    from gmmscape.geometry import random_rotations
    from gmmscape.gmmfit import LEARNING_RATE, _Model, sigma_range
    from gmmscape.projection import FourierGrid, frc, images_ft, project_ft

    box = vol.shape[0]
    rot = random_rotations(n_views, np.random.default_rng(0)).astype(np.float32)
    flip, centre = np.eye(3)[::-1], np.full(3, box // 2)
    views = []
    for r in rot:
        m = flip @ r.T @ flip  # (x, y, z) rotation acting on [z, y, x] indices
        views.append(ndimage.affine_transform(vol, m, offset=centre - m @ centre, order=3).sum(0))
    grid = FourierGrid(box, apix, None, res)
    i_re, i_im = images_ft(np.array(views, dtype=np.float32), grid)
    shift = np.zeros((n_views, 2), dtype=np.float32)
    model = _Model(start, *sigma_range(res, box, apix))
    opt = tf.keras.optimizers.Adam(LEARNING_RATE)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            p_re, p_im = project_ft(model(), rot, shift, grid)
            loss = 1.0 - tf.reduce_mean(frc(p_re, p_im, i_re, i_im, grid))
        variables = model.trainable_variables
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))

    for _ in range(epochs):
        step()
    return model().numpy()


def run_compare(data: Path, epochs: int) -> list[dict]:
    """Last demo level fitted by 3D FSC and by projection FRC from the same start."""
    import numpy as np

    from gmmscape.gmmfit import build_level, evaluate, fit_level, split_gaussians
    from gmmscape.io.mrc import read_map
    from gmmscape.levels import level_schedule

    case = CASES["demo"]
    vol, apix = read_map(data / "consensus.mrc")
    levels = level_schedule(
        case["start_n"], case["target_n"], case["start_res"], case["target_res"]
    )
    gmm = None
    for level, (n, res) in enumerate(levels[:-1]):
        gmm = build_level(vol, apix, gmm, n, res, None, epochs, seed=level)
    n, res = levels[-1]
    start = split_gaussians(gmm, n, np.random.default_rng(len(levels) - 1))
    fits = {"3D FSC (gmmfit)": lambda: fit_level(start, vol, apix, res, epochs)}
    for views in (16, 64):
        fits[f"FRC of {views} projections"] = lambda v=views: fit_by_projections(
            start, vol, apix, res, epochs, v
        )
    rows = []
    for name, fit in fits.items():
        t0 = time.perf_counter()
        out = fit()
        seconds = time.perf_counter() - t0
        table = evaluate(out, vol, apix)
        below = table[(table.shell >= 1) & (table.resolution >= res)]
        rows.append(
            {"loss": name, "seconds": round(seconds, 1), "min": round(float(below.fsc.min()), 4)}
        )
    return rows


def simulate_maps(name: str, data: Path) -> None:
    from gmmscape.simulate import simulate

    case = CASES[name]
    simulate("composition", data, per_state=1, box=case["box"], apix=case["apix"], snr=None)


def markdown(rows: list[dict]) -> str:
    head = (
        "| case | box, Å/px | levels (N@Å) | epochs/level | build time (s) | per level (s) | "
        "peak RSS (MB) | baseline RSS (MB) | N kept | min FSC below target | FSC 0.95 at (Å) |\n"
        "| --- | --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"
    )
    body = [
        f"| {r['case']} | {r['box']}, {r['apix']:g} | {' → '.join(r['levels'])} | {r['epochs']} "
        f"| {r['seconds']} | {', '.join(map(str, r['level_seconds']))} | {r['peak_mb']} "
        f"| {r['baseline_mb']} | {r['n_final']} | {r['min_fsc_below_target']} "
        f"| {r['res_fsc_095']} |"
        for r in rows
    ]
    return "\n".join([head, *body])


def child(data: Path, epochs: int, *flags: str) -> object:
    """Run this script in a fresh process on data; its last stdout line parsed as JSON."""
    cmd = [sys.executable, __file__, "--data", str(data), "--epochs", str(epochs), *flags]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1]) if out.strip() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--compare", action="store_true", help="also compare 3D FSC vs FRC")
    parser.add_argument("--simulate", help=argparse.SUPPRESS)
    parser.add_argument("--run-case", help=argparse.SUPPRESS)
    parser.add_argument("--run-compare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.simulate:
        simulate_maps(args.simulate, args.data)
    elif args.run_case:
        print(json.dumps(run_case(args.run_case, args.data, args.epochs)))
    elif args.run_compare:
        print(json.dumps(run_compare(args.data, args.epochs)))
    else:
        report(args.cases, args.compare, args.epochs)


def report(cases: list[str], compare: bool, epochs: int) -> None:
    """Simulate, build and (optionally) compare, each in a child process; print Markdown."""
    names = [*cases, *(["demo"] if compare and "demo" not in cases else [])]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            child(Path(tmp) / name, epochs, "--simulate", name)
        rows = [child(Path(tmp) / name, epochs, "--run-case", name) for name in cases]
        losses = child(Path(tmp) / "demo", epochs, "--run-compare") if compare else []
    print(markdown(rows))
    if losses:
        print("\n| loss on the last demo level | fit time (s) | min FSC below 10 Å |")
        print("| --- | ---: | ---: |")
        for r in losses:
            print(f"| {r['loss']} | {r['seconds']} | {r['min']} |")


if __name__ == "__main__":
    main()
