"""Simulator: phantoms, ground truth, particle formation, SNR, determinism, CLI."""

import json

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
from scipy.spatial.distance import pdist

from gmmscape import phantoms, simulate
from gmmscape.cli import main
from gmmscape.ctf import CTFParams, ctf_2d, phase_flip
from gmmscape.errors import InputError
from gmmscape.fourier import to_fourier, to_real
from gmmscape.geometry import random_rotations, relion_to_matrix
from gmmscape.projection import FourierGrid, project_ft

BOX, APIX, PER_STATE, SEED = 32, 4.0, 4, 3
SMALL = dict(per_state=PER_STATE, box=BOX, apix=APIX, seed=SEED)


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    return simulate.simulate("composition", tmp_path_factory.mktemp("noisy"), snr=0.1, **SMALL)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return simulate.simulate("composition", tmp_path_factory.mktemp("clean"), snr=None, **SMALL)


def read_stack(path):
    with mrcfile.open(path) as mrc:
        return np.array(mrc.data), float(mrc.voxel_size.x)


def read_star(path):
    star = starfile.read(path, always_dict=True)
    return star["optics"], star["particles"]


def voxel(centres, box):
    """[z, y, x] voxel indices of centres given in box fractions (x, y, z)."""
    return tuple((np.rint(centres[:, ::-1] * box).astype(int) + box // 2).T)


def comparable_bytes(path):
    """File content without what legitimately differs between runs: time-stamped labels."""
    data = path.read_bytes()
    if path.suffix in (".mrc", ".mrcs"):
        return data[:220] + data[1024:]  # MRC header bytes 220-1023: nlabl and labels
    if path.suffix == ".star":
        return b"\n".join(line for line in data.splitlines() if not line.startswith(b"#"))
    return data


# --- phantoms ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(phantoms.SYSTEMS))
def test_phantom_stays_inside_the_box_with_shifts(name):
    models = phantoms.build_system(name).models
    reach = np.linalg.norm(models[..., :3], axis=-1) + 3 * models[..., 4]
    assert reach.max() + simulate.MAX_SHIFT * np.sqrt(2) < 0.48


def test_parts_are_fixed_and_the_domain_carries_enough_mass():
    system = phantoms.build_system("composition")
    amp = system.models[1, :, 3]  # composition 1: every part present
    share = {p: amp[system.part == p].sum() / amp.sum() for p in (0, 1, 2)}
    assert 0.10 <= share[phantoms.DOMAIN] <= 0.15
    assert 0.08 <= share[phantoms.EXTRA] <= 0.12
    body = system.part == phantoms.BODY
    assert np.all(system.models[:, body] == system.models[0, body])


def test_linear_domain_moves_along_a_path_longer_than_its_width():
    system = phantoms.build_system("linear")
    domain = system.models[:, system.part == phantoms.DOMAIN, :3]
    centres = domain.mean(axis=1)
    direction = centres[-1] - centres[0]
    length = np.linalg.norm(direction)
    width = pdist(domain[0]).max() + 2 * phantoms.SIGMA
    assert length > width
    # every state on the straight line, at its coordinate, the domain rigidly translated
    expected = centres[0] + system.coordinate[:, None] * direction
    np.testing.assert_allclose(centres, expected, atol=1e-12)
    shape = np.broadcast_to(domain[0] - centres[0], domain.shape)
    np.testing.assert_allclose(domain - centres[:, None], shape, atol=1e-12)
    assert system.coordinate.min() == 0 and system.coordinate.max() == 1


def test_cyclic_domain_goes_around_a_circle_at_its_angle():
    system = phantoms.build_system("cyclic")
    assert system.n_states == 36
    np.testing.assert_array_equal(system.coordinate, np.arange(0, 360, 10))
    domain = system.models[:, system.part == phantoms.DOMAIN, :3]
    centres = domain.mean(axis=1)
    np.testing.assert_allclose(np.hypot(centres[:, 0], centres[:, 2]), phantoms.ORBIT_RADIUS)
    np.testing.assert_allclose(centres[:, 1], phantoms.DOMAIN_HEIGHT)
    angle = np.rad2deg(np.arctan2(-centres[:, 2], centres[:, 0])) % 360
    np.testing.assert_allclose(angle, system.coordinate, atol=1e-9)
    for d in domain:  # the domain turns rigidly with its orbit
        np.testing.assert_allclose(pdist(d), pdist(domain[0]), atol=1e-12)
    assert 2 * phantoms.ORBIT_RADIUS > 0.5 * pdist(domain[0]).max()


def test_composition_adds_the_blob_to_half_of_the_models_only():
    system = phantoms.build_system("composition")
    extra = system.part == phantoms.EXTRA
    np.testing.assert_array_equal(system.models[:, extra, 3].max(axis=1), system.composition)
    linear = phantoms.build_system("linear")
    np.testing.assert_array_equal(system.models[system.composition == 1][:, ~extra], linear.models)


def test_a_heavier_blob_scales_only_its_amplitudes_and_simulates(tmp_path):
    system = phantoms.build_system("composition")
    heavy = phantoms.scale_part(system, phantoms.EXTRA, 4.0)
    extra = system.part == phantoms.EXTRA
    np.testing.assert_array_equal(heavy.models[:, extra, 3], 4.0 * system.models[:, extra, 3])
    np.testing.assert_array_equal(heavy.models[:, ~extra], system.models[:, ~extra])
    paths = simulate.simulate(heavy, tmp_path, per_state=1, box=BOX, snr=None)
    blob = np.load(paths["truth_gmm"] / "state_000_c1.npy")[extra, 3]
    np.testing.assert_array_equal(blob, 4.0)
    assert json.loads(paths["info"].read_text())["system"] == "composition"


# --- particle formation --------------------------------------------------------------


def test_noise_free_particles_are_ctf_modulated_projections_of_their_state(clean):
    images, apix = read_stack(clean["stack"])
    optics, parts = read_star(clean["particles"])
    truth = pd.read_csv(clean["ground_truth"])
    assert apix == APIX and images.shape == (len(parts), BOX, BOX)
    gmms = np.stack(
        [
            np.load(clean["truth_gmm"] / f"state_{s:03d}_c{c}.npy")
            for s, c in zip(truth["state"], truth["composition"], strict=True)
        ]
    )
    rot = relion_to_matrix(parts["rlnAngleRot"], parts["rlnAngleTilt"], parts["rlnAnglePsi"])
    shift = -parts[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy() / apix
    o = optics.iloc[0]
    ctf = CTFParams(
        parts["rlnDefocusU"].to_numpy(),
        parts["rlnDefocusV"].to_numpy(),
        parts["rlnDefocusAngle"].to_numpy(),
        o["rlnVoltage"],
        o["rlnSphericalAberration"],
        o["rlnAmplitudeContrast"],
    )
    re, im = project_ft(gmms, rot, shift, FourierGrid(BOX))
    expected = to_real((re.numpy() + 1j * im.numpy()) * ctf_2d(ctf, BOX, apix), BOX)
    assert np.abs(images - expected).max() < 1e-4 * np.abs(expected).max()
    # protein positive: the low-pass of every particle is positive at its centre of mass
    assert (to_fourier(images)[:, 0, 0].real > 0).all()


def test_phase_flipped_average_recovers_the_projection_sign():
    gmm = phantoms.build_system("linear").models[7]
    n = 400
    rng = np.random.default_rng(0)
    rot = np.repeat(random_rotations(1, rng), n, axis=0)
    shift = np.repeat([[1.5, -2.0]], n, axis=0)
    defocus = np.linspace(*simulate.DEFOCUS_RANGE, n)
    ctf = CTFParams(defocus, defocus - 200.0, np.linspace(0, 180, n), 300.0, 2.7, 0.1)
    images = simulate.clean_particles(gmm, rot, shift, ctf, BOX, APIX)
    average = phase_flip(images, ctf, APIX).mean(axis=0)
    re, im = project_ft(gmm, rot[:1], shift[:1], FourierGrid(BOX))
    truth = re.numpy()[0] + 1j * im.numpy()[0]
    got = to_fourier(average)
    strong = np.abs(truth) > 1e-3 * np.abs(truth).max()
    ratio = got[strong] / truth[strong]  # = mean |CTF| > 0 where flipping is right
    assert strong.sum() > 100
    assert (ratio.real > 0).all()
    assert np.abs(ratio.imag).max() < 1e-3 * np.abs(ratio).max()
    # in real space the flipped average lacks the lowest frequencies (amplitude contrast
    # only), so it matches the projection's sign in its core and correlates with it
    projection = to_real(truth, BOX)
    assert (average[projection > 0.5 * projection.max()] > 0).all()
    assert np.corrcoef(average.ravel(), projection.ravel())[0, 1] > 0.8


def test_snr_matches_the_request(noisy, clean):
    signal = read_stack(clean["stack"])[0]
    noise = read_stack(noisy["stack"])[0] - signal
    measured = signal.reshape(len(signal), -1).var(axis=1).mean() / noise.var()
    assert abs(measured / 0.1 - 1) < 0.1
    info = json.loads(noisy["info"].read_text())
    assert info["snr"] == 0.1 and info["noise_sigma"] == pytest.approx(
        np.sqrt(10 * info["signal_variance"])
    )
    assert json.loads(clean["info"].read_text())["noise_sigma"] is None


# --- outputs -------------------------------------------------------------------------


def test_star_and_ground_truth_agree(noisy):
    optics, parts = read_star(noisy["particles"])
    truth = pd.read_csv(noisy["ground_truth"])
    n = 20 * PER_STATE
    assert len(parts) == len(truth) == n
    assert list(truth.columns) == ["index", "state", "coordinate", "composition"]
    np.testing.assert_array_equal(truth["index"], np.arange(n))
    assert parts["rlnImageName"].iloc[0] == "000001@particles.mrcs"
    assert parts["rlnImageName"].iloc[-1] == f"{n:06d}@particles.mrcs"
    np.testing.assert_array_equal(parts["rlnRandomSubset"], np.arange(n) % 2 + 1)
    assert (parts["rlnClassNumber"] == 1).all() and (parts["rlnOpticsGroup"] == 1).all()
    o = optics.iloc[0]
    assert (o["rlnVoltage"], o["rlnSphericalAberration"], o["rlnAmplitudeContrast"]) == (
        300,
        2.7,
        0.1,
    )
    assert (o["rlnImagePixelSize"], o["rlnImageSize"], o["rlnImageDimensionality"]) == (
        APIX,
        BOX,
        2,
    )
    # states evenly populated, composition half/half in every state, order shuffled
    assert (truth["state"].value_counts() == PER_STATE).all()
    assert (truth.groupby("state")["composition"].sum() == PER_STATE // 2).all()
    assert not truth["state"].is_monotonic_increasing
    coordinate = phantoms.build_system("composition").coordinate[::2]
    np.testing.assert_allclose(truth["coordinate"], coordinate[truth["state"]])
    defocus = parts[["rlnDefocusU", "rlnDefocusV"]].to_numpy()
    assert defocus.min() >= 10000 - 200 and defocus.max() <= 25000 + 200


def test_cyclic_ground_truth_holds_angles(tmp_path):
    paths = simulate.simulate("cyclic", tmp_path, per_state=1, box=BOX, snr=None)
    truth = pd.read_csv(paths["ground_truth"])
    np.testing.assert_array_equal(np.sort(truth["coordinate"]), np.arange(0, 360, 10))
    assert (truth["composition"] == 0).all()
    assert len(list(paths["states"].glob("state_*.mrc"))) == 36


def test_consensus_is_the_population_weighted_average(clean):
    truth = pd.read_csv(clean["ground_truth"])
    counts = truth.groupby(["state", "composition"]).size()
    total = sum(
        k * mrcfile.read(clean["states"] / f"state_{s:03d}_c{c}.mrc")
        for (s, c), k in counts.items()
    )
    consensus, apix = read_stack(clean["consensus"])
    assert apix == APIX
    np.testing.assert_allclose(consensus, total / len(truth), rtol=1e-5, atol=1e-6)


def test_truth_gmms_and_masks_cover_the_molecule_and_the_path(clean):
    system = phantoms.build_system("composition")
    np.testing.assert_array_equal(np.load(clean["truth_gmm"] / "part.npy"), system.part)
    np.testing.assert_array_equal(
        np.load(clean["truth_gmm"] / "state_005_c1.npy"), system.models[11]
    )
    mask = mrcfile.read(clean["mask"])
    moving = mrcfile.read(clean["moving_mask"])
    assert mask.min() >= 0 and mask.max() == 1 and moving.max() == 1
    present = system.models[system.models[..., 3] > 0][:, :3]
    assert mask[voxel(present, BOX)].min() == 1
    domain = system.models[:, system.part == phantoms.DOMAIN, :3].reshape(-1, 3)
    assert moving[voxel(domain, BOX)].min() == 1
    body = system.models[0, system.part == phantoms.BODY, :3]
    assert moving[voxel(body[body[:, 1] < -0.05], BOX)].max() == 0  # the lower body is outside
    assert (moving <= mask).all()


def test_same_seed_gives_the_same_outputs_at_any_chunk_size(noisy, tmp_path):
    again = simulate.simulate("composition", tmp_path, snr=0.1, chunk=7, **SMALL)
    files = sorted(
        p.relative_to(noisy["particles"].parent) for p in noisy["states"].parent.rglob("*")
    )
    assert files == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for rel in files:
        if (tmp_path / rel).is_file():
            assert comparable_bytes(tmp_path / rel) == comparable_bytes(
                again["particles"].parent / rel
            ), rel


def test_another_seed_gives_other_particles(tmp_path, noisy):
    other = simulate.simulate("composition", tmp_path, snr=0.1, **{**SMALL, "seed": SEED + 1})
    assert not np.array_equal(read_stack(other["stack"])[0], read_stack(noisy["stack"])[0])
    assert not pd.read_csv(other["ground_truth"]).equals(pd.read_csv(noisy["ground_truth"]))


def test_a_failed_run_leaves_no_outputs(tmp_path, monkeypatch):
    def fail(*args):
        raise RuntimeError("killed")

    monkeypatch.setattr(simulate, "_write_truth", fail)
    with pytest.raises(RuntimeError):
        simulate.simulate("linear", tmp_path, per_state=1, box=BOX)
    assert [p.name for p in tmp_path.iterdir()] == [simulate.STAGING]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(system="helix"),
        dict(box=31),
        dict(box=24),
        dict(apix=0.0),
        dict(snr=-1.0),
        dict(per_state=0),
        dict(seed=-1),
    ],
)
def test_bad_parameters_are_one_clear_error(tmp_path, kwargs):
    args = {"system": "linear", "per_state": 1, "box": BOX} | kwargs
    with pytest.raises(InputError):
        simulate.simulate(args.pop("system"), tmp_path, **args)
    assert not any(tmp_path.iterdir())


# --- command line --------------------------------------------------------------------


def test_cli_simulate(tmp_path, capsys):
    argv = ["simulate", "--system", "linear", "--out", str(tmp_path), "--per-state", "1"]
    assert main([*argv, "--box", "32", "--apix", "5", "--snr", "inf", "--seed", "1"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "particles.star")
    _, apix = read_stack(tmp_path / "particles.mrcs")
    assert apix == 5.0
    assert json.loads((tmp_path / "simulation.json").read_text())["snr"] is None


def test_cli_input_error_is_one_line_and_exit_code_2(tmp_path, capsys):
    argv = ["simulate", "--system", "linear", "--out", str(tmp_path), "--snr", "-1"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "snr" in err
