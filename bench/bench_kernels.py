"""Throughput of projection + FRC + backward: separable ring-limited kernel vs naive.

    .venv/bin/python bench/bench_kernels.py [--n 2048] [--box 128] [--batches 8 64]

The naive version evaluates exp(-2 pi i k.p) with TensorFlow's complex exp for every
Gaussian at every point of the full rfft2 grid (the formulation of a direct port of
the equations). Both run in the same process on the same data; the ratio is the claim.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import tensorflow as tf

from gmmscape.geometry import random_rotations
from gmmscape.projection import FourierGrid, frc, images_ft, project_ft, project_real


def naive_project_ft(gmm, rot, shift, box):
    """Per-pixel complex exponentials on the whole rfft2 grid: (B, b, b//2+1) complex64."""
    ky = np.fft.fftfreq(box, 1.0 / box)
    kx = np.arange(box // 2 + 1)
    kyy, kxx = (tf.constant(a, tf.float32) for a in np.meshgrid(ky, kx, indexing="ij"))
    pos = tf.einsum("bij,nj->bni", rot[:, :2], gmm[:, :3] * box) + shift[:, None]
    sig = gmm[:, 4]
    w = (2 * math.pi) ** 1.5 * gmm[:, 3] * (sig * box) ** 3
    k2 = kyy**2 + kxx**2
    amp = w[:, None, None] * tf.exp(-2 * math.pi**2 * sig[:, None, None] ** 2 * k2)
    phase = (2 * math.pi / box) * (
        pos[..., 0, None, None] * kxx + pos[..., 1, None, None] * kyy
    )  # (B, N, ky, kx)
    terms = tf.complex(amp, tf.zeros_like(amp)) * tf.exp(tf.complex(tf.zeros_like(phase), -phase))
    return tf.reduce_sum(terms, axis=1)


@tf.function(reduce_retracing=True)
def naive_step(gmm, rot, shift, i_re, i_im, grid):
    with tf.GradientTape() as tape:
        tape.watch(gmm)
        p = naive_project_ft(gmm, rot, shift, grid.box)
        p = p[:, :, : len(grid.kx)]
        p = tf.gather(p, grid.rows, axis=1)
        loss = tf.reduce_sum(
            1 - tf.reduce_mean(frc(tf.math.real(p), tf.math.imag(p), i_re, i_im, grid), 1)
        )
    return tape.gradient(loss, gmm)


@tf.function(reduce_retracing=True)
def separable_step(gmm, rot, shift, i_re, i_im, grid):
    with tf.GradientTape() as tape:
        tape.watch(gmm)
        p_re, p_im = project_ft(gmm, rot, shift, grid)
        loss = tf.reduce_sum(1 - tf.reduce_mean(frc(p_re, p_im, i_re, i_im, grid), 1))
    return tape.gradient(loss, gmm)


def throughput(step, args, batch, chunk, min_seconds=3.0):
    """Particles per second of step over a batch run in chunks of particles."""
    gmm, rot, shift, i_re, i_im, grid = args

    def run():
        for s in range(0, batch, chunk):
            sl = slice(s, s + chunk)
            step(gmm, rot[sl], shift[sl], i_re[sl], i_im[sl], grid)

    run()  # warm-up and tracing
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_seconds:
        run()
        n += batch
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--box", type=int, default=128)
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 64])
    ap.add_argument("--naive-chunk", type=int, default=4, help="particles per naive call (memory)")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    gmm = np.column_stack(
        [rng.uniform(-0.3, 0.3, (a.n, 3)), rng.uniform(0.2, 1, a.n), np.full(a.n, 1.5 / a.box)]
    ).astype(np.float32)
    apix = 2.0
    grid = FourierGrid(a.box, apix, res_lo=a.box * apix / 2, res_hi=4 * apix)  # |k| <= b/4
    print(f"N={a.n} box={a.box} band rings {grid.ring_lo}-{grid.ring_hi} grid {grid.shape}")
    print("batch  separable p/s  naive p/s  ratio")
    for batch in a.batches:
        rot = tf.constant(random_rotations(batch, rng), tf.float32)
        shift = tf.constant(rng.uniform(-3, 3, (batch, 2)), tf.float32)
        imgs = project_real(gmm, rot, shift, a.box).numpy() + rng.standard_normal(
            (batch, a.box, a.box)
        ).astype(np.float32)
        i_re, i_im = images_ft(imgs, grid)
        args = (tf.constant(gmm), rot, shift, tf.constant(i_re), tf.constant(i_im), grid)
        fast = throughput(separable_step, args, batch, batch)
        slow = throughput(naive_step, args, batch, min(a.naive_chunk, batch), min_seconds=5.0)
        print(f"{batch:5d}  {fast:13.1f}  {slow:9.2f}  {fast / slow:5.1f}x", flush=True)


if __name__ == "__main__":
    main()
