"""Gradient features and particle streaming: against the kernels, junk handling, sidecar checks."""

import json
import shutil

import mrcfile
import numpy as np
import pandas as pd
import pytest
import train_data

from gmmscape.errors import InputError
from gmmscape.features import (
    compute_features,
    feature_part,
    gather_features,
    gmm_checksum,
    open_features,
    sidecar_path,
)
from gmmscape.projection import FourierGrid, images_ft, particle_gradients
from gmmscape.streaming import chunk_order, load_particles, part_count, read_rows

BAND = (None, 48.0)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """100 linear-system particles, their neutral model and features."""
    root = train_data.dataset("linear", 5)
    particles = load_particles(root / "import/particles.csv", root / "import/stack.mrcs")
    neutral = train_data.truth_models(root)["state_010"]
    path = tmp_path_factory.mktemp("features") / "all.npy"
    info = compute_features(neutral, particles, path, res_lo=BAND[0], res_hi=BAND[1], batch=24)
    return root, particles, neutral, path, info


def test_features_are_normalised_kernel_gradients(small):
    _, particles, neutral, path, info = small
    rows = np.array([3, 17, 42, 99])
    grid = FourierGrid(particles.box, particles.apix, *BAND)
    i_re, i_im = images_ft(particles.images(rows), grid)
    raw = particle_gradients(
        neutral, particles.rotations[rows], particles.shifts[rows], i_re, i_im, grid
    ).numpy()
    raw = raw.reshape(len(rows), -1)
    feats = read_rows(path, rows)
    scale = np.tile(info.scale, len(neutral))
    # Centring removes a shared vector: differences between particles are raw / scale.
    np.testing.assert_allclose(
        (feats[1:] - feats[0]) * scale, raw[1:] - raw[0], rtol=1e-3, atol=1e-3 * np.abs(raw).max()
    )
    full = np.load(path)
    assert full.shape == (particles.n, 5 * len(neutral))
    kinds = full.reshape(particles.n, -1, 5)
    np.testing.assert_allclose(np.sqrt((kinds**2).mean(axis=(0, 1))), 1.0, rtol=1e-3)
    np.testing.assert_allclose(full.mean(axis=0), 0.0, atol=1e-4)


def test_sidecar_ties_features_to_gmm_table_and_stack(small, tmp_path):
    root, particles, neutral, path, info = small
    assert info.gmm_sha256 == gmm_checksum(neutral) and info.n_particles == particles.n
    assert open_features(path, neutral, particles) == info
    other = neutral.copy()
    other[0, 0] += 0.01
    with pytest.raises(InputError, match="another GMM"):
        open_features(path, other, particles)
    table = pd.read_csv(root / "import/particles.csv")
    table.iloc[:50].to_csv(tmp_path / "half.csv", index=False)
    with pytest.raises(InputError, match="hold 100 particles"):
        open_features(path, neutral, load_particles(tmp_path / "half.csv", particles.stack))
    with pytest.raises(InputError, match="not found"):
        open_features(tmp_path / "missing.npy", neutral, particles)


def test_stack_from_another_box_is_caught(small, tmp_path):
    root, particles, neutral, path, _ = small
    with mrcfile.new(tmp_path / "stack.mrcs") as mrc:
        mrc.set_data(np.zeros((particles.n, 16, 16), np.float32))
        mrc.voxel_size = 16.0
    with pytest.raises(InputError, match="box 32"):
        open_features(
            path, neutral, load_particles(root / "import/particles.csv", tmp_path / "stack.mrcs")
        )


def test_junk_particles_are_zeroed_and_listed(small, tmp_path):
    root, _, neutral, _, _ = small
    shutil.copy(root / "import/stack.mrcs", tmp_path / "stack.mrcs")
    with mrcfile.mmap(tmp_path / "stack.mrcs", mode="r+") as mrc:
        mrc.data[7, 3, 3] = np.nan
        mrc.data[60] = np.inf
    particles = load_particles(root / "import/particles.csv", tmp_path / "stack.mrcs")
    info = compute_features(neutral, particles, tmp_path / "f.npy", res_lo=None, res_hi=48.0)
    junk = (
        particles.index[particles.stack_index == 7].tolist()
        + particles.index[particles.stack_index == 60].tolist()
    )
    assert sorted(info.junk_index) == sorted(junk)
    data = np.load(tmp_path / "f.npy")
    assert np.isfinite(data).all() and not data[info.junk_rows].any()
    assert json.loads(sidecar_path(tmp_path / "f.npy").read_text())["junk_rows"] == info.junk_rows


def test_bad_band_is_an_input_error(small, tmp_path):
    _, particles, neutral, _, _ = small
    with pytest.raises(InputError, match="holds no Fourier ring"):
        compute_features(neutral, particles, tmp_path / "f.npy", res_lo=10.0, res_hi=5.0)


def test_table_poses_and_checks(small, tmp_path):
    root, particles, _, _, _ = small
    table = pd.read_csv(root / "import/particles.csv")
    scale = particles.box / table["box"].to_numpy()[:, None]  # cropped from box 64 to 32
    assert particles.box == 32 and (scale == 0.5).all()
    np.testing.assert_allclose(particles.shifts, table[["shift_x", "shift_y"]] * scale, atol=1e-5)
    table.drop(columns="r11").to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputError, match="r11"):
        load_particles(tmp_path / "t.csv", root / "import/stack.mrcs")
    table.assign(stack_index=table["stack_index"] + 5).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputError, match="stack_index 100"):
        load_particles(tmp_path / "t.csv", root / "import/stack.mrcs")


def test_chunk_order_is_a_seeded_shuffle_of_local_chunks():
    epoch0 = list(chunk_order(103, 10, seed=4, epoch=0))
    assert sorted(np.concatenate(epoch0).tolist()) == list(range(103))
    assert all(np.ptp(c) < 10 for c in epoch0)
    again = list(chunk_order(103, 10, seed=4, epoch=0))
    assert all(np.array_equal(a, b) for a, b in zip(epoch0, again, strict=True))
    epoch1 = np.concatenate(list(chunk_order(103, 10, seed=4, epoch=1)))
    assert not np.array_equal(np.concatenate(epoch0), epoch1)


def test_scattered_parts_gather_into_the_same_bytes(small, tmp_path):
    """Three part jobs (one past the table's end) and a gather write byte for byte what
    one job does with the same parts; with one part the features agree to rounding."""
    _, particles, neutral, _, _ = small
    size, parts = 17, part_count(particles.n, 17) + 1
    band = dict(res_lo=BAND[0], res_hi=BAND[1])
    whole = compute_features(
        neutral, particles, tmp_path / "one.npy", batch=8, part_size=size, parts=parts, **band
    )
    files = [tmp_path / f"part_{k}.npy" for k in range(parts)]
    for k, path in enumerate(files):
        feature_part(neutral, particles, path, k, parts, batch=8, part_size=size, **band)
    assert np.load(files[-1]).shape == (0, neutral.size)
    gathered = gather_features(neutral, particles, files, tmp_path / "gathered.npy", **band)
    assert (tmp_path / "one.npy").read_bytes() == (tmp_path / "gathered.npy").read_bytes()
    assert gathered == whole
    compute_features(neutral, particles, tmp_path / "s.npy", batch=8, **band)
    single = np.load(tmp_path / "s.npy")
    np.testing.assert_allclose(single, np.load(tmp_path / "one.npy"), atol=1e-4)
    with pytest.raises(InputError, match="hold .* rows, expected the table's"):
        gather_features(neutral, particles, files[:1], tmp_path / "short.npy", **band)


def test_float16_storage_halves_the_file_and_reads_as_float32(small, tmp_path):
    """The normalised features stored as float16 take half the disk, agree with float32
    to float16's rounding, and are read back as float32 (what training feeds the encoder);
    an unknown storage type is an input error naming the key."""
    _, particles, neutral, path, _ = small
    band = dict(res_lo=BAND[0], res_hi=BAND[1])
    half = tmp_path / "half.npy"
    compute_features(neutral, particles, half, batch=24, dtype="float16", **band)
    full = np.load(path)
    assert np.load(half).dtype == np.float16
    assert half.stat().st_size < 0.55 * path.stat().st_size
    rows = np.arange(particles.n)
    read = read_rows(half, rows, np.float32)
    assert read.dtype == np.float32
    np.testing.assert_allclose(read, full, rtol=1e-3, atol=1e-3 * np.abs(full).max())
    assert not list(tmp_path.glob(".*"))  # no raw scratch file left behind
    with pytest.raises(InputError, match="train.feature_dtype"):
        compute_features(neutral, particles, tmp_path / "x.npy", dtype="int8", **band)
