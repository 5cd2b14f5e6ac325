"""Does scoring each particle against decoded models beat the encoder's latent?

    .venv/bin/python bench/screen_latent_posterior.py protein_hinge [--epochs 12]

On bench/screen_training.py's CI-size set and a baseline run with the encoder's
latents (train.candidates 0), each particle's latent vector is replaced by (a) the
best of K candidate points (k-means centres of the encoder's latents) by the training
loss at the particle's own pose and CTF, (b) the candidates' mean weighted by
exp(-(loss - min) / (T s)), with s the median over particles of the spread of their K
losses, and (c) gradient descent on the particle's latent vector from the encoder's
(Adam, the best point visited). This is the E-step of a classification against the
decoder's own models: amortised encoders lose to it at low SNR; (b) at T 0.3 is what
training now does by default (gmmscape.posterior). Prints each variant's best axis
|rho| against the true motion and its time.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import tensorflow as tf
from screen_training import best_axis_rho, prepare, trained

from gmmscape.decode import load_decoder
from gmmscape.posterior import candidate_losses, candidate_points, posterior_mean
from gmmscape.projection import FourierGrid, frc_loss, images_ft
from gmmscape.refine import descend_best
from gmmscape.weighting import ctf_amplitude, frc_setup

BATCH = 64


def with_prior(losses: np.ndarray, centres: np.ndarray, z0: np.ndarray, width: float) -> np.ndarray:
    """The T 0.3 posterior mean with the encoder's latent as a Gaussian prior over the
    candidates, of standard deviation `width` times the latents' RMS spread per axis."""
    sigma = width * np.sqrt(((z0 - z0.mean(axis=0)) ** 2).mean())
    penalty = ((z0[:, None, :] - centres[None]) ** 2).sum(axis=-1) / (2 * sigma**2)
    spread = float(np.median(losses.std(axis=1)))
    log_w = -(losses - losses.min(axis=1, keepdims=True)) / (0.3 * spread) - penalty
    weights = np.exp(log_w - log_w.max(axis=1, keepdims=True))
    return (weights / weights.sum(axis=1, keepdims=True)) @ centres


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("system", nargs="?", default="protein_hinge")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--candidates", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--prior", type=float, nargs="*", default=[], help="widths, see with_prior")
    args = parser.parse_args()
    data = prepare(args.system)
    run = trained(data, {"epochs": args.epochs, "candidates": 0}, f"encoder_{args.epochs}")
    latent = pd.read_csv(run / "latent.csv")
    index = latent["index"].to_numpy()
    rows = pd.Series(np.arange(data.particles.n), index=data.particles.index)[index].to_numpy()
    z0 = latent.filter(regex=r"^z\d+$").to_numpy(np.float32)
    print(f"encoder: rho {best_axis_rho(data, index, z0):.3f}", flush=True)
    decoder = load_decoder(run)
    band = data.chosen["train.res_hi"].value
    grid = FourierGrid(data.particles.box, data.particles.apix, None, band)
    grid, _ = frc_setup(data.particles, grid, "snr", data.snr)

    def loss(z, rot, shift, i_re, i_im, ctf):
        gmm = decoder.space.to_gmm(decoder.model(z, training=False))
        return frc_loss(gmm, rot, shift, i_re, i_im, grid, ctf)

    @tf.function(reduce_retracing=True)
    def loss_and_gradient(z, *tensors):
        with tf.GradientTape() as tape:
            tape.watch(z)
            per = loss(z, *tensors)
            total = tf.reduce_sum(per)  # particles are independent: their own gradients
        return per, tape.gradient(total, z)

    def batches() -> Iterator[tuple[slice, list[tf.Tensor]]]:
        for start in range(0, len(rows), BATCH):
            part = slice(start, start + BATCH)
            r = rows[part]
            i_re, i_im = images_ft(data.particles.images(r), grid)
            tensors = [data.particles.rotations[r], data.particles.shifts[r], i_re, i_im,
                       ctf_amplitude(data.particles, r, grid)]  # fmt: skip
            yield part, [tf.constant(t, tf.float32) for t in tensors]

    for k in args.candidates:
        start = time.time()
        centres = candidate_points(z0, k, seed=0)
        losses = candidate_losses(decoder.decode(centres), data.particles, rows, grid, True)
        best = best_axis_rho(data, index, centres[losses.argmin(axis=1)])
        print(f"{k} candidates, best: rho {best:.3f} ({time.time() - start:.0f} s)", flush=True)
        for temperature in (0.3, 1.0, 3.0):
            rho = best_axis_rho(data, index, posterior_mean(losses, centres, temperature))
            print(f"  weighted mean, T {temperature}: rho {rho:.3f}", flush=True)
        for width in args.prior:
            rho = best_axis_rho(data, index, with_prior(losses, centres, z0, width))
            print(f"  weighted mean, T 0.3, encoder prior {width}: rho {rho:.3f}", flush=True)
    for steps, size in ((20, 0.02), (40, 0.05)):
        start = time.time()
        refined = z0.copy()
        for part, tensors in batches():

            def evaluate(z: np.ndarray, tensors=tensors) -> tuple[np.ndarray, np.ndarray]:
                per, grad = loss_and_gradient(tf.constant(z), *tensors)
                return per.numpy(), grad.numpy()

            refined[part] = descend_best(evaluate, z0[part], size, steps)[0]
        rho = best_axis_rho(data, index, refined)
        print(f"gradient, {steps} steps of {size}: rho {rho:.3f} ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
