"""Screen: the decoder refitted to the posterior latents, then the particles rescored.

    .venv/bin/python bench/screen_decoder_refit.py [--epochs 5] [--lr 1e-4] [--cycles 3]
        [--seed 0]

On bench/screen_training.py's CI-size hinge set and its encoder run (train.candidates
0, 12 epochs), the particles' latents are first the posterior means over K decoded
candidate models (gmmscape.posterior). Then, per cycle, the decoder alone is trained
for a few epochs with each particle's latent fixed at its posterior mean (plus the
training's latent noise), and the particles are scored again against the refitted
decoder's models: a hard EM on the decoder, whose models were fitted to the encoder's
noisier latents. Prints the best axis |rho| against the true motion after each cycle.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import tensorflow as tf
from screen_training import best_axis_rho, prepare, trained

from gmmscape.decode import load_decoder
from gmmscape.posterior import candidate_losses, candidate_points, posterior_mean
from gmmscape.projection import FourierGrid, frc_loss, images_ft
from gmmscape.weighting import ctf_amplitude, frc_setup

BATCH = 16
NOISE = 0.15  # the training's latent noise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="decoder epochs per cycle")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="of the encoder run's training")
    args = parser.parse_args()
    data = prepare("protein_hinge")
    name = "encoder_12" + (f"_seed{args.seed}" if args.seed else "")
    run = trained(data, {"epochs": 12, "candidates": 0, "seed": args.seed}, name)
    latent = pd.read_csv(run / "latent.csv")
    index = latent["index"].to_numpy()
    rows = pd.Series(np.arange(data.particles.n), index=data.particles.index)[index].to_numpy()
    decoder = load_decoder(run)
    grid = FourierGrid(
        data.particles.box, data.particles.apix, None, data.chosen["train.res_hi"].value
    )
    grid, _ = frc_setup(data.particles, grid, "snr", data.snr)
    p = data.particles
    i_re, i_im = images_ft(p.images(rows), grid)  # CI size: every image in memory
    ctf = ctf_amplitude(p, rows, grid)
    optimizer = tf.keras.optimizers.Adam(args.lr)
    noise = tf.random.Generator.from_seed(0)
    variables = decoder.model.trainable_variables

    @tf.function(reduce_retracing=True)
    def step(z, rot, shift, a, b, c):
        with tf.GradientTape() as tape:
            out = decoder.model(z + NOISE * noise.normal(tf.shape(z)), training=True)
            loss = tf.reduce_mean(frc_loss(decoder.space.to_gmm(out), rot, shift, a, b, grid, c))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    def rescored(z: np.ndarray) -> np.ndarray:
        centres = candidate_points(z, args.candidates, seed=0)
        losses = candidate_losses(decoder.decode(centres), p, rows, grid, True)
        return posterior_mean(losses, centres, 0.3)

    z0 = latent.filter(regex=r"^z\d+$").to_numpy(np.float32)
    z = rescored(z0)
    print(f"encoder rho {best_axis_rho(data, index, z0):.3f}, "
          f"posterior {best_axis_rho(data, index, z):.3f}", flush=True)  # fmt: skip
    rng = np.random.default_rng(0)
    for cycle in range(args.cycles):
        start = time.time()
        for _ in range(args.epochs):
            order = rng.permutation(len(rows))
            for first in range(0, len(rows), BATCH):
                b = order[first : first + BATCH]
                r = rows[b]
                step(tf.constant(z[b]), p.rotations[r], p.shifts[r], i_re[b], i_im[b], ctf[b])
        z = rescored(z)
        rho = best_axis_rho(data, index, z)
        print(f"cycle {cycle + 1}: rho {rho:.3f} ({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
