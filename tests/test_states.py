"""Classes that choose their count (gmmscape.states): gaps between states, not continua."""

import numpy as np
from sklearn.metrics import adjusted_rand_score

from gmmscape.states import distinct_groups, find_classes, valley_ratio


def continuum(n: int, rng: np.random.Generator) -> np.ndarray:
    """A motion: points spread evenly along a curve in 4D, with a little noise."""
    t = rng.uniform(-1.0, 1.0, n)
    return np.column_stack([t, 0.3 * t**2, 0.1 * t, np.zeros(n)]) + rng.normal(0, 0.05, (n, 4))


def test_valley_ratio_sees_a_gap_and_no_gap():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, (500, 2)), rng.normal(0, 1, (500, 2)) + [6.0, 0.0]
    assert valley_ratio(a, b) < 0.3  # well below DIP: 6 sigma apart
    line = rng.uniform(0, 1, (1000, 1))
    assert valley_ratio(line[line[:, 0] < 0.5], line[line[:, 0] >= 0.5]) > 0.7


def test_a_continuum_is_one_state_and_gaps_make_states():
    rng = np.random.default_rng(1)
    motion = continuum(1500, rng)
    assert distinct_groups(motion, 5).max() == 0  # a mixture would cut it; the dips do not
    truth = rng.integers(0, 3, 1500)
    offsets = np.array([[0, 0, 0, 0], [0, 0, 0, 1.5], [0, 0, 1.5, 1.5]])
    states = distinct_groups(motion + offsets[truth], 5)
    assert adjusted_rand_score(truth, states) > 0.95


def test_composition_in_the_amplitudes_wins_over_motion_in_the_latent():
    rng = np.random.default_rng(2)
    latent = continuum(1200, rng)
    present = rng.integers(0, 2, 1200)
    amplitudes = np.ones((1200, 50)) + rng.normal(0, 0.02, (1200, 50))
    amplitudes[:, :8] *= present[:, None]  # a domain of 8 Gaussians missing in half
    amplitudes[:, 8:20] += 0.1 * latent[:, :1]  # the motion also moves some amplitude
    labels, reason = find_classes(latent, amplitudes, 4)
    assert adjusted_rand_score(present, labels) > 0.95
    assert "compositional" in reason
    labels, reason = find_classes(latent, amplitudes[:, 8:], 4)
    assert labels.max() == 0 and "continuous" in reason
