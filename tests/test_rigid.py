"""Rigid-body mode: a masked domain decoded as one rotation and translation."""

from __future__ import annotations

import landscape_data
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import train_data
from scipy.spatial.transform import Rotation
from scipy.stats import spearmanr

from gmmscape import phantoms
from gmmscape.decode import load_decoder
from gmmscape.embedding import fit_pca
from gmmscape.errors import InputError
from gmmscape.io.mrc import write_map
from gmmscape.masks import mask_inside, soft_mask
from gmmscape.projection import density
from gmmscape.rigid import (
    RigidSpace,
    build_space,
    domain_motion,
    relative_motion,
    rotation_matrices,
    space_from_dict,
    write_domain_motion,
)
from gmmscape.streaming import load_particles
from gmmscape.train import TrainSettings, train
from gmmscape.trajectory import pc_trajectories


def test_rotation_matrices_match_scipy_and_are_smooth_at_zero():
    rng = np.random.default_rng(0)
    w = np.concatenate([rng.normal(size=(20, 3)), [[0.0, 0.0, 0.0], [1e-5, -2e-5, 0.0]]])
    ours = rotation_matrices(w.astype(np.float32)).numpy()
    np.testing.assert_allclose(ours, Rotation.from_rotvec(w).as_matrix(), atol=2e-6)
    zero = tf.Variable(tf.zeros([1, 3]))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(rotation_matrices(zero) * rng.normal(size=(1, 3, 3)))
    assert np.isfinite(tape.gradient(total, zero).numpy()).all()


def model_and_domain(n: int = 30, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gmm = np.column_stack(
        [rng.uniform(-0.3, 0.3, (n, 3)), rng.uniform(0.5, 1.0, n), rng.uniform(0.02, 0.04, n)]
    )
    return gmm.astype(np.float32), np.arange(n) < n // 3


def test_domain_moves_as_one_body_about_its_centre_and_nothing_else_moves():
    neutral, inside = model_and_domain()
    space = build_space(neutral, "rigid", inside)
    out = np.array([[0.3, -0.2, 0.5, 0.05, -0.02, 0.01], [0, 0, 0, 0, 0, 0]], np.float32)
    gmm = space.to_gmm(out).numpy()
    weight = neutral[inside, 3]
    centre = (neutral[inside, :3] * weight[:, None]).sum(0) / weight.sum()
    rot = Rotation.from_rotvec(out[0, :3].astype(np.float64)).as_matrix()
    expected = (neutral[inside, :3] - centre) @ rot.T + centre + out[0, 3:]
    np.testing.assert_allclose(gmm[0, inside, :3], expected, atol=1e-6)
    moved_centre = (gmm[0, inside, :3] * weight[:, None]).sum(0) / weight.sum()
    np.testing.assert_allclose(moved_centre - centre, out[0, 3:], atol=1e-6)
    np.testing.assert_array_equal(gmm[:, ~inside], np.broadcast_to(neutral[~inside], (2, 20, 5)))
    np.testing.assert_array_equal(gmm[:, :, 3:], np.broadcast_to(neutral[:, 3:], (2, 30, 2)))
    np.testing.assert_allclose(gmm[1], neutral, atol=1e-7)  # no motion: the neutral model
    assert space.free[:, :3].sum() == 3 * inside.sum() and not space.free[:, 3:].any()
    again = space_from_dict(space.to_dict())
    assert isinstance(again, RigidSpace)
    np.testing.assert_array_equal(again.to_gmm(out).numpy(), gmm)
    with pytest.raises(InputError, match="'rigid' needs train.mask"):
        build_space(neutral, "rigid", None)


def test_domain_motion_reads_degrees_and_angstrom():
    def model(z, training=False):  # rotation |w| = z0 rad about z, translation z0 box along x
        z = np.asarray(z, np.float64)[:, :1]
        zero = np.zeros_like(z)
        return np.concatenate([zero, zero, z, z, zero, zero], axis=1)

    z = np.array([[0.1], [0.4]])
    table = domain_motion(model, z, box=32, apix=8.0)
    np.testing.assert_allclose(table["rotation_deg"], np.rad2deg([0.1, 0.4]))
    np.testing.assert_allclose(table["axis_z"], [1.0, 1.0])
    np.testing.assert_allclose(table["tx_A"], [25.6, 102.4])
    rotation, translation = relative_motion(model, z, box=32, apix=8.0)
    assert rotation == pytest.approx(np.rad2deg(0.3), abs=1e-3)
    assert translation == pytest.approx(0.3 * 256.0, rel=1e-6)


def domain_mask(root, box: int, apix: float, path):
    """A soft mask around the moving domain where the neutral model (the mean of the
    states) holds it, as a user would draw it on the consensus map; written to path.

    The simulator's moving_mask.mrc covers the domain's whole path, taking in 53 body
    Gaussians beside it that a rigid domain would drag along (translation rank
    correlation 0.90 with it, 0.92 with the domain's mask, 10 epochs)."""
    neutral = train_data.average_model(root)
    part = train_data.gaussian_parts(root)
    vol = density(neutral[part == phantoms.DOMAIN], box)
    write_map(path, soft_mask(vol, 0.3 * vol.max(), 0, 1), apix)
    return path


@pytest.mark.slow
def test_rigid_mode_tracks_the_domain_position_and_moves_nothing_outside(tmp_path):
    """Linear system (1,000 particles, box 32), rigid mode with the domain's mask, 1D
    latent, 10 epochs: the decoded domain translation along the path ranks the particles
    like their true positions (|rho| >= 0.9), no Gaussian outside the mask moves, and a
    PC1 trajectory reports the domain's rotation (degrees) and translation (Angstrom)."""
    root = train_data.dataset("linear", 50)
    particles = load_particles(root / "import" / "particles.csv", root / "import" / "stack.mrcs")
    neutral = train_data.average_model(root)
    mask = domain_mask(root, 32, 8.0, tmp_path / "domain.mrc")
    inside = mask_inside(mask, neutral, particles)
    part = train_data.gaussian_parts(root)
    np.testing.assert_array_equal(inside, part == phantoms.DOMAIN)
    # the features of these particles against this neutral model, as the position run has
    features = landscape_data.trained_run("linear", "all", "position", 1) / "features.npy"
    settings = TrainSettings(mode="rigid", latent_dim=1, **dict(train_data.FAST, noise=0.15))
    train(neutral, particles, features, tmp_path / "run", settings, inside=inside)

    decoder = load_decoder(tmp_path / "run")
    latent = pd.read_csv(tmp_path / "run" / "latent.csv")
    z = latent[["z0"]].to_numpy()
    motion = domain_motion(decoder.model, z, decoder.box, decoder.apix)
    truth = train_data.ground_truth(root, latent["index"].to_numpy())
    rho = spearmanr(motion["tx_A"], truth["coordinate"])[0]
    print(f"rigid mode: translation along the path vs true position rho {rho:.3f}")
    assert abs(rho) >= 0.9
    gmms = decoder.decode(z)
    np.testing.assert_array_equal(
        gmms[:, ~inside], np.broadcast_to(decoder.neutral[~inside], gmms[:, ~inside].shape)
    )

    (pc1,) = pc_trajectories(z, fit_pca(z), n_components=1, n_points=5)
    table = tmp_path / "trajectory.csv"
    pd.DataFrame({"point": range(5), "t": pc1.t}).to_csv(table, index=False)
    ends = write_domain_motion(decoder, pc1, table)
    written = pd.read_csv(table)
    assert {"rotation_deg", "translation_A", "tx_A"} <= set(written.columns)
    path = 2 * phantoms.LINEAR_HALF_PATH * 0.9 * 32 * 8.0  # 5th to 95th percentile, Angstrom
    print(f"PC1: domain moves {ends['domain_translation_A']:.1f} A (true {path:.1f} A), "
          f"turns {ends['domain_rotation_deg']:.1f} degrees")  # fmt: skip
    assert 0.5 * path < ends["domain_translation_A"] < 1.3 * path
    assert ends["domain_rotation_deg"] < 15.0
