"""Classes that choose their count (gmmscape.states): gaps between states, not continua."""

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from gmmscape.states import amplitude_components, distinct_groups, find_classes, valley_ratio


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


def test_a_gap_along_a_minor_axis_is_found_when_the_motion_dominates():
    # The demo's decoded amplitudes: the motion moves more amplitude than the missing
    # domain, so 2-means of all components cuts the motion (no dip) and the gap lies
    # along the second principal axis only.
    rng = np.random.default_rng(3)
    n = 2000
    present = rng.integers(0, 2, n)
    motion = rng.uniform(-1.0, 1.0, n)
    points = np.column_stack([3.0 * motion, 0.6 * present, np.zeros(n)])
    points += rng.normal(0, 0.1, (n, 3))
    joint = KMeans(2, n_init=4, random_state=0).fit_predict(points)
    assert adjusted_rand_score(present, joint) < 0.1  # the joint cut follows the motion
    assert adjusted_rand_score(present, distinct_groups(points, 4)) > 0.95
    assert distinct_groups(points[present == 1], 4).max() == 0  # the motion alone: one


def test_groups_found_in_the_amplitudes_are_refined_in_the_latent():
    # The amplitudes show the gap but blur it (noise: ~3 % misread at the cut); the
    # latent holds the same state cleanly beside the motion. The refinement moves the
    # boundary to the latent's; a latent without the state leaves the groups as found.
    rng = np.random.default_rng(4)
    n = 2000
    present = rng.integers(0, 2, n)
    latent = continuum(n, rng)
    latent[:, 3] += 0.6 * present
    amplitudes = np.ones((n, 30)) + rng.normal(0, 0.02, (n, 30))
    amplitudes[:, :6] += (0.25 * present + rng.normal(0, 0.065, n))[:, None]
    found = distinct_groups(amplitude_components(amplitudes), 4)
    assert found.max() == 1 and adjusted_rand_score(present, found) < 0.92
    labels, _ = find_classes(latent, amplitudes, 4)
    assert adjusted_rand_score(present, labels) > 0.95
    labels, _ = find_classes(continuum(n, rng), amplitudes, 4)
    assert adjusted_rand_score(found, labels) == 1.0
