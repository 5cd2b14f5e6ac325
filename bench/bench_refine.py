"""Throughput of local pose refinement (particles/s per round) at N = 2048, box 128.

    .venv/bin/python bench/bench_refine.py [--particles 128] [--steps 40] [--res-hi 8]

A random GMM of N Gaussians (centres within radius 0.3 of the box, width ~1.5 pixels)
is projected at random poses with a little noise, the poses are perturbed by 3 degrees
and 1 pixel, and each batch is refined as gmmscape.refine.refine_poses does it (coarse
band, then the whole band up to --res-hi Angstrom at 2 A/pixel; --steps each). Reading
the images from disk is left out: it is the import's mapped stack, ~1 ms per batch.
Prints a Markdown row.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--particles", type=int, default=128)
    parser.add_argument("--gaussians", type=int, default=2048)
    parser.add_argument("--box", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--res-hi", type=float, default=8.0)
    args = parser.parse_args()

    from scipy.spatial.transform import Rotation

    from gmmscape.geometry import random_rotations
    from gmmscape.projection import FourierGrid, images_ft, project_real
    from gmmscape.refine import RefineSettings, _loss_and_gradient, refine_batch

    rng = np.random.default_rng(0)
    n, box, apix = args.gaussians, args.box, 2.0
    direction = rng.normal(size=(n, 3))
    radius = 0.3 * rng.uniform(0, 1, n) ** (1 / 3)
    centres = direction / np.linalg.norm(direction, axis=1, keepdims=True) * radius[:, None]
    gmm = np.column_stack([centres, np.ones(n), np.full(n, 1.5 / box)]).astype(np.float32)
    rot = random_rotations(args.particles, rng).astype(np.float32)
    shift = rng.normal(0, 1, (args.particles, 2)).astype(np.float32)
    images = project_real(gmm, rot, shift, box).numpy()
    images += rng.normal(0, images.std(), images.shape).astype(np.float32)

    settings = RefineSettings(steps=args.steps, batch=args.batch, res_hi=args.res_hi)
    fine = FourierGrid(box, apix, None, args.res_hi)
    coarse = FourierGrid(box, apix, None, box * apix / max(fine.ring_lo + 1, fine.ring_hi // 2))
    steps = tuple(_loss_and_gradient(g) for g in (coarse, fine))
    turn = Rotation.from_rotvec(np.deg2rad(rng.normal(0, 3 / np.sqrt(3), (args.particles, 3))))
    tilted = (turn.as_matrix() @ rot).astype(np.float32)
    start = time.perf_counter()
    for b in range(0, args.particles, args.batch):
        part = slice(b, b + args.batch)
        spectra = tuple(images_ft(images[part], g) for g in (coarse, fine))
        per = np.broadcast_to(gmm, (len(rot[part]), n, 5))
        refine_batch(
            steps, per, tilted[part].astype(np.float32), shift[part] + 1.0, spectra, settings
        )
    seconds = time.perf_counter() - start
    columns = "Gaussians | box | band | steps (coarse + whole) | batch | particles | time (s)"
    print(f"| {columns} | particles/s |")
    print("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| {n} | {box} | to {args.res_hi:g} A (rings {fine.ring_lo}-{fine.ring_hi}) | "
        f"{args.steps} + {args.steps} | {args.batch} | {args.particles} | {seconds:.1f} | "
        f"{args.particles / seconds:.2f} |"
    )


if __name__ == "__main__":
    main()
