"""Symmetry expansion: RELION's operators, expanded poses, the automatic ASU."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from test_projection import brute_force_density, random_gmm, rel_err, rotate_and_project

from gmmscape import phantoms
from gmmscape.errors import InputError
from gmmscape.fourier import to_fourier
from gmmscape.geometry import random_rotations, relion_to_matrix
from gmmscape.importer import ROTATION_COLUMNS
from gmmscape.projection import FourierGrid, project_ft
from gmmscape.symmetry import (
    asu_inside,
    expand_table,
    free_gaussians,
    is_expanded,
    operators,
    parse_group,
)

BOX = 48
C120, S120 = -0.5, np.sqrt(3) / 2


def test_operators_are_relions_written_out():
    """RELION: Cn = rot_axis n 0 0 1, R_j = rotation3DMatrix(j 360/n, z)^T (identity
    first, the original row of relion_particle_symmetry_expand); Dn adds rot_axis 2 1 0 0
    and closes the group: [C_1..C_{n-1}, X, C_1 X, ..]."""
    c3 = [np.eye(3), [[C120, S120, 0], [-S120, C120, 0], [0, 0, 1]]]
    c3.append([[C120, -S120, 0], [S120, C120, 0], [0, 0, 1]])
    np.testing.assert_allclose(operators("C3"), c3, atol=1e-12)
    d2 = [np.eye(3), np.diag([-1, -1, 1]), np.diag([1, -1, -1]), np.diag([-1, 1, -1])]
    np.testing.assert_allclose(operators("d2"), d2, atol=1e-12)
    np.testing.assert_allclose(operators("C1"), [np.eye(3)])
    assert not is_expanded("C1") and is_expanded("C2")
    for group, order in (("C5", 5), ("D3", 6), ("D7", 14)):
        ops = operators(group)
        assert len(ops) == order
        np.testing.assert_allclose(np.linalg.det(ops), 1.0)
        products = (ops[:, None] @ ops[None]).reshape(-1, 1, 3, 3)
        nearest = np.abs(products - ops[None]).max(axis=(2, 3)).min(axis=1)
        assert nearest.max() < 1e-9  # closed under products: a group
    for bad in ("C0", "T", "I2", "D", "c3x", "O"):
        with pytest.raises(InputError, match="symmetry"):
            parse_group(bad)


def symmetric_model(group: str, rng) -> np.ndarray:
    """A random asymmetric unit, placed by every operator: a map invariant under the group."""
    unit = random_gmm(rng, n=6, spread=0.08)
    unit[:, 0] += 0.14
    return np.concatenate(
        [np.column_stack([unit[:, :3] @ op.T, unit[:, 3:]]) for op in operators(group)]
    )


def expanded_poses(group: str, n: int, rng) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A canonical-like table of n random poses and its expansion."""
    rot = random_rotations(n, rng)
    table = pd.DataFrame(rot.reshape(n, 9), columns=ROTATION_COLUMNS)
    table.insert(0, "index", np.arange(n) * 10)
    table[["shift_x", "shift_y"]] = rng.uniform(-3, 3, (n, 2))
    table[["rot", "tilt", "psi"]] = 0.0
    return table, expand_table(table, group)


@pytest.mark.parametrize("group", ["C3", "D2"])
def test_expanded_poses_compose_the_operators_on_the_right(group):
    rng = np.random.default_rng(0)
    table, out = expanded_poses(group, 5, rng)
    ops = operators(group)
    assert len(out) == 5 * len(ops)
    np.testing.assert_array_equal(out["index"], np.repeat(table["index"], len(ops)))
    np.testing.assert_array_equal(out["copy"], np.tile(np.arange(len(ops)), 5))
    assert list(out.columns[:2]) == ["index", "copy"]
    rot = out[ROTATION_COLUMNS].to_numpy().reshape(-1, 3, 3)
    original = table[ROTATION_COLUMNS].to_numpy().reshape(-1, 3, 3)
    for r in range(len(out)):
        i, k = divmod(r, len(ops))
        np.testing.assert_allclose(rot[r], original[i] @ ops[k], atol=1e-12)
    angles = out[["rot", "tilt", "psi"]].to_numpy()
    np.testing.assert_allclose(relion_to_matrix(*angles.T), rot, atol=1e-9)
    np.testing.assert_array_equal(
        out[["shift_x", "shift_y"]], np.repeat(table[["shift_x", "shift_y"]], len(ops), axis=0)
    )
    junk = pd.DataFrame({"index": table["index"], "reason": ["", "nan", "", "", ""]})
    repeated = expand_table(junk, group)
    assert list(repeated["reason"]) == list(np.repeat(junk["reason"], len(ops)))
    with pytest.raises(InputError, match="already expanded"):
        expand_table(out, group)


@pytest.mark.parametrize("group", ["C3", "D2"])
def test_symmetric_map_projects_alike_at_every_copy(group):
    rng = np.random.default_rng(1)
    gmm = symmetric_model(group, rng).astype(np.float32)
    _, out = expanded_poses(group, 3, rng)
    rot = out[ROTATION_COLUMNS].to_numpy().reshape(-1, 3, 3)
    shift = out[["shift_x", "shift_y"]].to_numpy()
    re, im = project_ft(gmm, rot, shift, FourierGrid(BOX))
    ft = (re.numpy() + 1j * im.numpy()).reshape(3, len(operators(group)), BOX, -1)
    for copies in ft:
        for copy in copies[1:]:
            assert rel_err(copy, copies[0]) < 1e-4


def rotate_map(vol: np.ndarray, op: np.ndarray) -> np.ndarray:
    """The [z, y, x] map carried by the rotation op: V'(op c) = V(c), voxel by voxel."""
    box = vol.shape[0]
    flip = np.eye(3)[::-1]
    m = flip @ op.T @ flip
    c = np.full(3, box // 2)
    return ndimage.affine_transform(vol, m, offset=c - m @ c, order=5, mode="constant")


@pytest.mark.parametrize("group", ["C3", "D2"])
def test_copies_of_an_asymmetric_map_are_its_symmetry_related_views(group):
    """At copy k's pose the model projects like the map carried by R_k at the particle's
    pose (voxel-wise rotation and projection): a Gaussian at c of the model lands where
    the particle's density at R_k c does."""
    rng = np.random.default_rng(2)
    gmm = random_gmm(rng, n=10)
    vol = brute_force_density(gmm, BOX)
    _, out = expanded_poses(group, 1, rng)
    rot = out[ROTATION_COLUMNS].to_numpy().reshape(-1, 3, 3)
    shift = out[["shift_x", "shift_y"]].to_numpy()
    re, im = project_ft(gmm, rot, shift, FourierGrid(BOX))
    for k, op in enumerate(operators(group)):
        turned = rotate_map(vol, op)
        ref = to_fourier(rotate_and_project(turned, rot[0], shift[0]))
        assert rel_err(re.numpy()[k] + 1j * im.numpy()[k], ref) < 1e-3


def test_automatic_asu_is_one_subunit_and_the_operators_tile_the_model():
    for group in ("C3", "D2"):
        system = phantoms.oligomer_system(group)
        neutral = system.models.mean(axis=0)
        k = len(operators(group))
        unit = len(neutral) // k
        inside = asu_inside(neutral, group)
        np.testing.assert_array_equal(inside, np.arange(len(neutral)) < unit)  # subunit 0
        turned = np.concatenate([neutral[inside, :3] @ op.T for op in operators(group)])
        np.testing.assert_allclose(turned, neutral[:, :3], atol=1e-9)
    # a C3 model turned by 40 degrees: the ASU turns with it (edges where it is thinnest)
    neutral = phantoms.oligomer_system("C3").models.mean(axis=0)
    turn = relion_to_matrix(0.0, 0.0, -40.0)  # +40 degrees about z
    moved = np.column_stack([neutral[:, :3] @ turn.T, neutral[:, 3:]])
    np.testing.assert_array_equal(asu_inside(moved, "C3"), asu_inside(neutral, "C3"))


def test_free_gaussians_restrict_to_the_asu_and_the_mask():
    neutral = phantoms.oligomer_system("C2").models.mean(axis=0)
    mask = np.arange(len(neutral)) % 2 == 0
    assert free_gaussians("C1", neutral, None) is None
    assert free_gaussians("C1", neutral, None, inside=mask) is mask
    asu = free_gaussians("C2", neutral, None)
    np.testing.assert_array_equal(asu, np.arange(len(neutral)) < len(neutral) // 2)
    np.testing.assert_array_equal(free_gaussians("C2", neutral, None, inside=mask), asu & mask)
    with pytest.raises(InputError, match="both in the ASU and in train.mask"):
        free_gaussians("C2", neutral, None, inside=~asu)
