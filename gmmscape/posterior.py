"""Each particle's latent vector as the posterior mean over the decoder's own models.

The encoder maps a particle's features to its latent vector in one pass (amortised
inference). At low SNR that pass is where most of the recoverable motion is lost:
scoring each particle against the decoded GMMs of a few candidate latent points, at
its own pose and CTF, with the training loss, and taking the candidates' mean weighted
by exp(-(loss - min) / (T s)) recovers it (docs/validation.md, "Scoring each particle
against the decoder's own models"). The candidates are k-means centres of the
encoder's latents, so they cover the landscape the encoder found; ``s``, the median
over particles of the spread of their candidate losses, puts the temperature ``T`` on
the scale of the data's own noise, whatever the SNR and the band.

This is the E-step of a classification against the decoder's models; the result stays
inside the candidates' hull, so it keeps the latent's scale and its origin.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from sklearn.cluster import KMeans

from .projection import FourierGrid, batch_signature, frc_loss, images_ft
from .streaming import ParticleSet
from .weighting import ctf_amplitude

log = logging.getLogger(__name__)

BLOCK = 256  # particles read and transformed at a time
PAIR_BUDGET = 2**24  # Gaussians x frequency lines per graph call (~64 MB per factor)


def candidate_points(latent: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(k', d) float32 k-means centres of the latents (k' = min(k, distinct points))."""
    k = min(k, len(np.unique(latent, axis=0)))
    model = KMeans(k, n_init=3, random_state=seed).fit(latent)
    return model.cluster_centers_.astype(np.float32)


def _pair_graph(grid: FourierGrid, n_gaussians: int, use_ctf: bool):
    """Graph of the loss of every (particle, model) pair of a batch: (B, K), one call."""
    models_spec = tf.TensorSpec((None, n_gaussians, 5), tf.float32)

    @tf.function(input_signature=batch_signature(grid, models_spec, use_ctf))
    def graph(models, rot, shift, i_re, i_im, *ctf):
        b, k = tf.shape(rot)[0], tf.shape(models)[0]

        def each(t):  # pair (particle i, model c) at row i * k + c
            return tf.repeat(t, k, axis=0)

        pairs = [each(t) for t in (rot, shift, i_re, i_im, *ctf)]
        per = frc_loss(tf.tile(models, [b, 1, 1]), *pairs[:4], grid, *pairs[4:])
        return tf.reshape(per, [b, k])

    return graph


def candidate_losses(
    models: np.ndarray,
    particles: ParticleSet,
    rows: np.ndarray,
    grid: FourierGrid,
    use_ctf: bool,
) -> np.ndarray:
    """(len(rows), K) training loss of every particle against every model (K, N, 5);
    logs its progress every tenth of the particles."""
    k, n_gaussians = models.shape[:2]
    graph = _pair_graph(grid, n_gaussians, use_ctf)
    per_call = int(np.clip(PAIR_BUDGET // (k * n_gaussians * sum(grid.shape)), 1, BLOCK))
    models_t = tf.constant(models, tf.float32)
    losses = np.zeros((len(rows), k), np.float32)
    tenth = max(len(rows) // 10, 1)
    for start in range(0, len(rows), BLOCK):
        block = rows[start : start + BLOCK]
        i_re, i_im = images_ft(particles.images(block), grid)
        ctf = ctf_amplitude(particles, block, grid) if use_ctf else None
        for first in range(0, len(block), per_call):
            part = slice(first, first + per_call)
            r = block[part]
            tensors = [particles.rotations[r], particles.shifts[r], i_re[part], i_im[part]]
            tensors += [] if ctf is None else [ctf[part]]
            losses[start + first : start + first + len(r)] = graph(models_t, *tensors).numpy()
        done = start + len(block)
        if done // tenth > start // tenth or done == len(rows):
            log.info("train: candidates scored for %d/%d particles", done, len(rows))
    return losses


def posterior_mean(losses: np.ndarray, centres: np.ndarray, temperature: float) -> np.ndarray:
    """(n, d) mean of the centres (K, d) weighted by exp(-(loss - min) / (T s)) per row.

    ``s`` is the median over rows of the standard deviation of a row's K losses; rows
    whose losses are all equal get the plain mean of the centres.
    """
    spread = float(np.median(losses.std(axis=1)))
    scale = temperature * spread if spread > 0 else 1.0
    weights = np.exp(-(losses - losses.min(axis=1, keepdims=True)) / scale)
    weights /= weights.sum(axis=1, keepdims=True)
    return (weights @ centres).astype(np.float32)


def score_latents(
    latent: np.ndarray,
    decode: Callable[[np.ndarray], np.ndarray],
    particles: ParticleSet,
    rows: np.ndarray,
    grid: FourierGrid,
    use_ctf: bool,
    *,
    candidates: int,
    temperature: float,
    seed: int,
) -> np.ndarray:
    """The posterior-mean latents (n, d) of the particles ``rows`` whose encoder latents
    are ``latent`` (n, d); ``decode`` maps latent points (K, d) to GMMs (K, N, 5)."""
    t0 = time.perf_counter()
    centres = candidate_points(latent, candidates, seed)
    models = decode(centres)
    if len(centres) < 2 or np.ptp(models, axis=0).max() == 0:
        log.warning(
            "train: the decoder's models do not change with the latent, so the training "
            "separated nothing (if loss.csv stayed flat, it never started: rerun with "
            "another seed or a coarser train.res_hi); the encoder's latents are kept"
        )
        return latent
    log.info(
        "train: scoring %d particles against %d decoded candidate models", len(rows), len(centres)
    )
    losses = candidate_losses(models, particles, rows, grid, use_ctf)
    refined = posterior_mean(losses, centres, temperature)
    log.info(
        "train: latents replaced by their posterior mean (median loss spread %.2e, %.0f s)",
        float(np.median(losses.std(axis=1))),
        time.perf_counter() - t0,
    )
    return refined
