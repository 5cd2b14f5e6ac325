"""Symmetry expansion: RELION's operators, expanded poses, the automatic ASU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
import train_data
from scipy import ndimage
from test_projection import brute_force_density, random_gmm, rel_err, rotate_and_project

from gmmscape import phantoms
from gmmscape.decode import load_decoder
from gmmscape.embedding import with_junk
from gmmscape.errors import InputError
from gmmscape.features import compute_features
from gmmscape.fourier import to_fourier
from gmmscape.geometry import random_rotations, relion_to_matrix
from gmmscape.importer import import_particles
from gmmscape.projection import FourierGrid, project_ft
from gmmscape.reconstruct import copies, table_rows
from gmmscape.simulate import simulate
from gmmscape.streaming import ParticleSet, load_particles
from gmmscape.subsets import write_class_subsets
from gmmscape.symmetry import (
    asu_inside,
    copy_recovery,
    expand_table,
    free_gaussians,
    is_expanded,
    operators,
    parse_group,
    write_expanded,
)
from gmmscape.table import ROTATION_COLUMNS
from gmmscape.train import TrainSettings, train

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
    for views in ft:
        for view in views[1:]:
            assert rel_err(view, views[0]) < 1e-4


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


def expanded_oligomer(group: str, per_state: int, root: Path) -> tuple[ParticleSet, np.ndarray]:
    """The oligomer phantom simulated at train_data's sampling (box 64, 4 A/pixel, imported
    with a crop to box 32) at SNR 0.3, its table expanded; the consensus-like neutral GMM."""
    system = phantoms.oligomer_system(group)
    paths = simulate(
        system, root / "sim", per_state=per_state, box=train_data.SIM_BOX,
        apix=train_data.SIM_APIX, snr=0.3, seed=3,
    )  # fmt: skip
    import_particles(paths["particles"], root / "import", box=train_data.BOX)
    write_expanded(root / "import" / "particles.csv", root / "expanded.csv", group)
    particles = load_particles(root / "expanded.csv", root / "import" / "stack.mrcs")
    return particles, system.models.mean(axis=0)


@pytest.mark.slow
def test_copies_recover_which_subunit_moved_and_how_far(tmp_path):
    """C3 oligomer, 300 particles (900 copies, box 32) in which one random subunit's domain
    has slid along its path: after expansion, position training with only the automatic
    ASU free (1D latent, 10 epochs, band to 32 A) separates the copy holding the moved
    subunit from the resting ones (2-means ARI) and orders the moved copies by how far
    (|rho|); no Gaussian outside the ASU moves. Measured: ARI 0.95, |rho| 0.73 (0.76
    over every copy, resting ones at 0); a copy-to-subunit mapping off by one operator
    gives ARI 0."""
    particles, neutral = expanded_oligomer("C3", 20, tmp_path)
    inside = free_gaussians("C3", neutral, particles)
    band = dict(res_lo=None, res_hi=32.0)
    compute_features(neutral, particles, tmp_path / "features.npy", **band)
    settings = TrainSettings(mode="position", latent_dim=1, epochs=10, lr=1e-3, **band)
    train(neutral, particles, tmp_path / "features.npy", tmp_path / "run", settings, inside=inside)
    latent = pd.read_csv(tmp_path / "run" / "latent.csv")
    assert list(latent.columns[:2]) == ["index", "copy"] and len(latent) == 3 * 300
    truth = train_data.ground_truth(tmp_path, latent["index"].to_numpy())
    score = copy_recovery(latent, truth)
    print(f"C3 copies: moved vs resting ARI {score['ari']:.3f}, moved domain position |rho| "
          f"{score['rho_moved']:.3f}, every copy |rho| {score['rho_every']:.3f}")  # fmt: skip
    assert score["ari"] >= 0.85
    assert score["rho_moved"] >= 0.65 and score["rho_every"] >= 0.7
    z = latent[["z0"]].to_numpy()
    gmms = load_decoder(tmp_path / "run").decode(z[::50])
    np.testing.assert_array_equal(
        gmms[:, ~inside],
        np.broadcast_to(neutral[~inside], gmms[:, ~inside].shape).astype(np.float32),
    )


def test_copies_join_back_to_their_particles_and_junk_gets_every_copy():
    table = pd.DataFrame({"index": [4, 4, 9, 9], "copy": [0, 1, 0, 1], "z0": [0.1, 0.2, 0.3, 0.4]})
    table["cluster"] = [0, 1, 1, 0]
    full = with_junk(table, np.array([2]))
    assert full[["index", "copy"]].values.tolist() == [
        [2, 0],
        [2, 1],
        [4, 0],
        [4, 1],
        [9, 0],
        [9, 1],
    ]
    assert full["cluster"].tolist() == [-1, -1, 0, 1, 1, 0] and full["z0"].isna().sum() == 2
    expanded = expand_table(pd.DataFrame({"index": [9, 4, 2], "stack_index": [0, 1, 2]}), "C2")
    rows = table_rows(expanded, full["index"].to_numpy(), copies(full))
    assert (
        expanded.iloc[rows][["index", "copy"]].values.tolist()
        == full[["index", "copy"]].values.tolist()
    )
    with pytest.raises(InputError, match="symmetry copies"):
        table_rows(expanded.drop(columns="copy"), full["index"].to_numpy(), copies(full))
    with pytest.raises(InputError, match="symmetry copies"):
        table_rows(expanded, full["index"].to_numpy())


def test_class_subsets_of_copies_are_expanded_stars_or_their_particles_once(tmp_path):
    """Expanded: RELION's symmetry-expanded form (each copy its particle's row with the
    copy's angles, origins kept); else every particle with a copy in the class, once."""
    from test_subsets import META, assert_same_rows, particle_table

    particles = particle_table(4)
    particles["rlnOriginXAngst"] = [1.0, -2.0, 0.5, 3.0]
    star = tmp_path / "particles.star"
    optics = pd.DataFrame(
        {"rlnOpticsGroup": [1], "rlnImagePixelSize": [1.25], "rlnImageSize": [64]}
    )
    starfile.write({"optics": optics, "particles": particles}, star)
    table = pd.DataFrame({"index": np.arange(4)})
    table[ROTATION_COLUMNS] = relion_to_matrix(
        particles["rlnAngleRot"], particles["rlnAngleTilt"], particles["rlnAnglePsi"]
    ).reshape(4, 9)
    table[["rot", "tilt", "psi"]] = particles[
        ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
    ].to_numpy()
    expanded = expand_table(table, "C3")
    landscape = pd.DataFrame(
        {"index": [0, 0, 2, 3, 3], "copy": [1, 2, 0, 2, 0], "cluster": [0, 0, 0, 1, -1]}
    )
    written = write_class_subsets(star, landscape, tmp_path / "exp", META, expanded)
    assert written["particles"].tolist() == [3, 1]
    got = starfile.read(tmp_path / "exp" / "class_00.star")["particles"]
    want = particles.iloc[[0, 0, 2]].reset_index(drop=True)
    ops = operators("C3")
    rot = relion_to_matrix(got["rlnAngleRot"], got["rlnAngleTilt"], got["rlnAnglePsi"])
    original = table[ROTATION_COLUMNS].to_numpy().reshape(-1, 3, 3)
    for r, (i, k) in enumerate([(0, 1), (0, 2), (2, 0)]):
        np.testing.assert_allclose(rot[r], original[i] @ ops[k], atol=1e-5)
    kept = [c for c in want.columns if c not in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")]
    assert_same_rows(got[kept], want[kept])
    once = write_class_subsets(star, landscape, tmp_path / "once", META, expanded, expanded=False)
    assert once["particles"].tolist() == [2, 1]
    got = starfile.read(tmp_path / "once" / "class_00.star")["particles"]
    assert_same_rows(got, particles.iloc[[0, 2]].reset_index(drop=True))


@pytest.mark.slow
def test_explorer_links_the_copies_of_the_particle_under_the_pointer(tmp_path):
    """A landscape of two copies per particle: the page joins the pointed particle's copies."""
    import landscape_data
    from test_explorer import CHROMIUM, CHROMIUM_ARGS, VIEWPORT

    from gmmscape.explorer import ExplorerInputs, write_explorer

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} missing (apt-get install chromium)")
    train_dir = landscape_data.trained_run(
        "composition", "even", "all", 2, landscape_data.HEAVY
    )  # the explorer's run
    first = pd.read_csv(train_dir / "latent.csv").head(200)
    second = first.assign(z0=-first["z0"] - 0.5)  # copy 1 far from copy 0
    landscape = pd.concat([first.assign(copy=0), second.assign(copy=1)], ignore_index=True)
    landscape["cluster"] = landscape["copy"]
    inputs = ExplorerInputs(
        run="all_all", landscape=landscape, classes=pd.DataFrame({"cluster": [0, 1]}),
        trajectories={}, class_dir=str(tmp_path), particles=None, meta=None,
    )  # fmt: skip
    page_path = write_explorer(tmp_path / "explorer.html", inputs, load_decoder(train_dir))
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_path.as_uri())
        page.wait_for_function("window.explorer && explorer.stats().firstPaintMs !== null")
        page.evaluate("explorer.setView('pca'); explorer.setTool('explore')")
        box = page.locator("#overlay").bounding_box()
        for x, y in ((0.3, 0.2), (-0.4, -0.1)):
            sx, sy = page.evaluate(f"explorer.toScreen({x}, {y})")
            page.mouse.move(box["x"] + sx, box["y"] + sy)
            page.evaluate("explorer.idle()")
            ((_, row),) = page.evaluate("explorer.nearest('pca', ...explorer.cursor(), 1)")
            siblings = np.flatnonzero(landscape["index"] == landscape["index"].iloc[row])
            assert len(siblings) == 2 and sorted(page.evaluate("explorer.linked()")) == list(
                siblings
            )
        browser.close()
    assert errors == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"symmetry": "C3", "refine": {"rounds": 1}},
            "refine.rounds: pose refinement of symmetry copies is not supported",
        ),
        ({"asu_mask": "asu.mrc"}, "asu_mask: set only with a symmetry other than C1"),
    ],
    ids=["with-refine", "asu-mask-c1"],
)
def test_bad_symmetry_config_fails_before_any_job(tmp_path, config, message):
    from workflow import snakemake, write_config

    result = snakemake(tmp_path, "--cores", "1", "--configfile", write_config(tmp_path, config))
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "results").exists()
