"""Each particle's latent as the posterior mean over decoded candidate models."""

from __future__ import annotations

import landscape_data
import numpy as np
import pytest
import train_data
from scipy.stats import spearmanr

from gmmscape.posterior import candidate_losses, posterior_mean, score_latents
from gmmscape.projection import FourierGrid, frc_loss, images_ft
from gmmscape.streaming import load_particles
from gmmscape.weighting import ctf_amplitude

N = 300  # particles scored


class PathDecoder:
    """z0 in [0, 1] -> the linear system's true GMM there, interpolated between the two
    nearest true states: a decoder that knows the motion, so the scoring is judged alone."""

    def __init__(self, root):
        self.models = np.stack(list(train_data.truth_models(root).values())).astype(np.float64)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        position = np.clip(z[:, 0], 0, 1) * (len(self.models) - 1)
        low = np.minimum(position.astype(int), len(self.models) - 2)
        t = (position - low)[:, None, None]
        return ((1 - t) * self.models[low] + t * self.models[low + 1]).astype(np.float32)


@pytest.fixture(scope="module")
def linear():
    root = train_data.dataset("linear", landscape_data.PER_STATE)
    particles = load_particles(root / "import" / "particles.csv", root / "import" / "stack.mrcs")
    rows = np.random.default_rng(0).choice(particles.n, N, replace=False)
    truth = train_data.ground_truth(root, particles.index[rows])["coordinate"].to_numpy()
    grid = FourierGrid(particles.box, particles.apix, **train_data.BAND)
    return root, particles, rows, truth, grid


@pytest.mark.slow  # simulates the linear system's particles (shared with the training tests)
def test_candidate_losses_are_the_training_loss_of_each_particle_against_each_model(linear):
    root, particles, rows, _, grid = linear
    rows = rows[:5]
    models = PathDecoder(root)(np.array([[0.0], [0.5], [1.0]]))
    got = candidate_losses(models, particles, rows, grid, use_ctf=True)
    for i, r in enumerate(rows):  # one particle, one model at a time
        i_re, i_im = images_ft(particles.images(rows[i : i + 1]), grid)
        ctf = ctf_amplitude(particles, rows[i : i + 1], grid)
        for c, model in enumerate(models):
            pose = particles.rotations[r : r + 1], particles.shifts[r : r + 1]
            want = frc_loss(model[None], *pose, i_re, i_im, grid, ctf).numpy()[0]
            assert got[i, c] == pytest.approx(want, abs=1e-5)


def test_posterior_mean_weighs_candidates_by_their_loss_on_the_losses_own_scale():
    rng = np.random.default_rng(1)
    losses, centres = rng.uniform(0.3, 0.5, (20, 6)), rng.normal(size=(6, 3))
    got = posterior_mean(losses, centres, temperature=0.5)
    scale = 0.5 * np.median([np.std(row) for row in losses])
    for row, mean in zip(losses, got, strict=True):
        weights = [np.exp(-(loss - row.min()) / scale) for loss in row]
        want = sum(w * c for w, c in zip(weights, centres, strict=True)) / sum(weights)
        np.testing.assert_allclose(mean, want, rtol=1e-5)
    # Multiplying the losses' spread leaves the weights unchanged; equal losses: plain mean.
    np.testing.assert_allclose(posterior_mean(0.4 + 3 * (losses - 0.4), centres, 0.5), got, 1e-4)
    flat = posterior_mean(np.full((2, 6), 0.4), centres, 1.0)
    np.testing.assert_allclose(flat, np.repeat(centres.mean(axis=0, keepdims=True), 2, 0), 1e-5)


@pytest.mark.slow
def test_scoring_against_decoded_models_recovers_the_motion_a_noisy_encoder_lost(linear):
    """Latents = the truth plus noise of half the motion's range: the posterior means of
    16 candidates follow the true position far better (SNR 0.1 particles)."""
    root, particles, rows, truth, grid = linear
    noisy = (truth + np.random.default_rng(2).normal(0, 0.5, N))[:, None].astype(np.float32)
    refined = score_latents(
        noisy,
        PathDecoder(root),
        particles,
        rows,
        grid,
        True,
        candidates=16,
        temperature=1.0,
        seed=0,
    )
    before, after = abs(spearmanr(noisy[:, 0], truth)[0]), abs(spearmanr(refined[:, 0], truth)[0])
    print(f"noisy latent rho {before:.3f} -> posterior mean {after:.3f}")
    assert before < 0.7  # measured 0.574
    assert after > 0.9  # measured 0.952


def test_a_decoder_that_ignores_the_latent_is_reported_and_nothing_is_scored(linear, caplog):
    """A training that never started (its decoder's ReLUs dead, seen at a 6 A band on the
    realistic set) decodes every latent point to the same model: scoring would give every
    particle the plain mean of the candidates, one point, so the encoder's latents are
    kept and the log says why. The same for latents that are all one point."""
    root, particles, rows, _, grid = linear
    neutral = PathDecoder(root)(np.zeros((1, 1), np.float32))

    def dead(z):
        return np.repeat(neutral, len(z), axis=0)

    varied = np.random.default_rng(0).normal(0, 0.1, (N, 4)).astype(np.float32)
    for latent, decode in ((varied, dead), (np.full((N, 4), 0.25, np.float32), PathDecoder(root))):
        caplog.clear()
        out = score_latents(
            latent, decode, particles, rows, grid, True, candidates=8, temperature=0.3, seed=0
        )
        np.testing.assert_array_equal(out, latent)
        assert "the decoder's models do not change with the latent" in caplog.text
