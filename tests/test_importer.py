"""The import stage end to end: canonical table, meta.json, flipped and cropped stack, and
one clear error per kind of bad input, with nothing half-written left behind."""

from __future__ import annotations

import json
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
from particle_data import (
    CTF_FIELDS,
    make_particles,
    write_mrcs,
    write_stacks,
    write_star30,
    write_star31,
)

from gmmscape.cli import main
from gmmscape.ctf import CTFParams, ctf_2d, phase_flip
from gmmscape.errors import InputError
from gmmscape.fourier import fourier_crop, to_fourier, to_real
from gmmscape.geometry import angle_between
from gmmscape.images import cropped_source
from gmmscape.importer import (
    MapFrame,
    import_particles,
    junk_of_half,
    load_meta,
    load_table,
    summary,
    table_poses,
    training_frame,
)
from gmmscape.io import read_map, write_lst, write_map
from gmmscape.io.eman2 import ctf_to_eman2, pose_to_xform
from gmmscape.io.hdf import write_hdf_stack
from gmmscape.table import TABLE_COLUMNS


@pytest.fixture
def dataset(tmp_path):
    p = make_particles(n=11, box=32, apix=1.5)
    write_stacks(p, tmp_path / "Extract", n_stacks=2)
    return p, write_star31(p, tmp_path / "particles.star")


def expected_image(p, i, box):
    one = CTFParams(**{f: p.ctf[f][i : i + 1] for f in CTF_FIELDS})
    return fourier_crop(phase_flip(p.images[i][None], one, float(p.apix[i])), box)[0]


def test_import_writes_table_meta_and_flipped_cropped_stack(tmp_path, dataset):
    p, star = dataset
    write_map(tmp_path / "map.mrc", np.zeros((32, 32, 32)), 1.5)
    result = import_particles(
        star, tmp_path / "import", map_path=tmp_path / "map.mrc", box=16, chunk=4
    )
    assert sorted(f.name for f in (tmp_path / "import").iterdir()) == [
        "junk.csv", "meta.json", "particles.csv", "stack.mrcs",
    ]  # fmt: skip
    meta = load_meta(tmp_path / "import" / "meta.json")
    assert meta == result.meta
    assert meta | {"optics_groups": None, "notes": None} == {
        "apix": 3.0, "box": 16, "apix_original": 1.5, "box_original": 32, "extent": 48.0,
        "n_particles": 11, "n_junk": 0, "source_file": str(star.resolve()),
        "format": "relion31", "flipped": True, "stack_ctf": "flipped", "source_ctf": "raw",
        "source_flipped": False, "has_ctf": True, "halves": [6, 5], "optics_groups": None,
        "notes": None,
    }  # fmt: skip
    assert meta["notes"] == [
        "no _rlnPhaseShift: 0 for every particle (RELION's default)",
        "no _rlnCtfBfactor: 0 for every particle (RELION's default)",
    ]
    table = load_table(result.table)
    assert list(table.columns) == TABLE_COLUMNS
    np.testing.assert_array_equal(table["index"], np.arange(11))
    np.testing.assert_array_equal(table["stack_index"], np.arange(11))
    assert sorted(np.bincount(table["subset"])[1:]) == [5, 6]
    R, shifts = table_poses(table, 16)
    assert angle_between(R, p.R).max() < 0.01
    np.testing.assert_allclose(shifts, p.shifts * 16 / 32, atol=1e-5)
    with mrcfile.open(result.stack) as mrc:
        assert mrc.data.shape == (11, 16, 16) and mrc.data.dtype == np.float32
        assert float(mrc.voxel_size.x) == pytest.approx(3.0)
        assert mrc.header.dmax == pytest.approx(mrc.data.max(), rel=1e-5)
        for i in range(11):
            np.testing.assert_allclose(mrc.data[i], expected_image(p, i, 16), atol=1e-5)


def test_chunk_size_does_not_change_the_result(tmp_path, dataset):
    _, star = dataset
    a = import_particles(star, tmp_path / "a", box=16, chunk=3)
    b = import_particles(star, tmp_path / "b", box=16, chunk=1000)
    with mrcfile.open(a.stack) as x, mrcfile.open(b.stack) as y:
        np.testing.assert_array_equal(x.data, y.data)
    assert a.table.read_text() == b.table.read_text()


def test_optics_groups_with_different_pixel_sizes_share_one_crop(tmp_path):
    """Group 2 holds the same particles binned 2x: both crop to the same 16-px images."""
    p = make_particles(n=4, box=32, apix=1.5)
    write_stacks(p, tmp_path / "g1", n_stacks=1)
    binned = [fourier_crop(img[None], 16)[0] for img in p.images]
    write_mrcs(tmp_path / "g2.mrcs", np.stack(binned), 3.0)
    both = make_particles(n=8, box=32, apix=1.5)
    both.R, both.shifts = np.concatenate([p.R, p.R]), np.concatenate([p.shifts, p.shifts / 2])
    both.ctf = {f: np.concatenate([v, v]) for f, v in p.ctf.items()}
    both.apix = np.array([1.5] * 4 + [3.0] * 4)
    both.images = p.images + binned
    both.stacks = p.stacks + [tmp_path / "g2.mrcs"] * 4
    both.stack_index = np.concatenate([p.stack_index, np.arange(4)])
    star = write_star31(both, tmp_path / "groups.star", groups=[1] * 4 + [2] * 4)
    result = import_particles(star, tmp_path / "import", box=8)
    table = load_table(result.table)
    np.testing.assert_array_equal(table["box"], [32] * 4 + [16] * 4)
    np.testing.assert_allclose(
        table_poses(table, 8)[1][:4], table_poses(table, 8)[1][4:], atol=1e-5
    )
    assert result.meta["apix"] == pytest.approx(6.0)
    with mrcfile.open(result.stack) as mrc:
        np.testing.assert_allclose(mrc.data[:4], mrc.data[4:], atol=1e-5)


def test_eman2_import_without_ctf_needs_phase_flipped_true(tmp_path):
    p = make_particles(n=4, box=16, apix=2.0)
    write_hdf_stack(tmp_path / "ptcls.hdf", np.stack(p.images), 2.0)
    records = [
        (i, "ptcls.hdf", {"xform.projection": pose_to_xform(p.R[i], p.shifts[i])}) for i in range(4)
    ]
    write_lst(tmp_path / "ptcls.lst", records)
    with pytest.raises(InputError, match=r"ptcls\.lst row 0.*no CTF.*phase_flipped: true"):
        import_particles(tmp_path / "ptcls.lst", tmp_path / "import")
    assert not (tmp_path / "import").exists() or not any((tmp_path / "import").iterdir())
    result = import_particles(tmp_path / "ptcls.lst", tmp_path / "import", phase_flipped=True)
    assert result.meta["format"] == "eman2" and result.meta["has_ctf"] is False
    assert result.meta["source_flipped"] is True and result.meta["stack_ctf"] == "flipped"
    with mrcfile.open(result.stack) as mrc:
        np.testing.assert_allclose(mrc.data, np.stack(p.images), atol=1e-5)


# ---------------------------------------------------------------- bad input, one test each


def test_missing_star_column(tmp_path, dataset):
    _, star = dataset
    data = starfile.read(star)
    data["particles"] = data["particles"].drop(columns="rlnDefocusU")
    starfile.write(data, star)
    with pytest.raises(InputError, match=r"particles\.star: missing column _rlnDefocusU"):
        import_particles(star, tmp_path / "import")


def test_image_index_past_the_end_of_its_stack(tmp_path, dataset):
    _, star = dataset
    data = starfile.read(star)
    data["particles"].loc[3, "rlnImageName"] = "000009@Extract/stack1.mrcs"
    starfile.write(data, star)
    with pytest.raises(InputError) as err:
        import_particles(star, tmp_path / "import")
    message = str(err.value)
    assert "particles.star row 3" in message and "image 9" in message
    assert "stack1.mrcs, which holds 5 images" in message
    assert not (tmp_path / "import").exists()


def test_particle_and_map_boxes_disagree(tmp_path, dataset):
    _, star = dataset
    write_map(tmp_path / "map.mrc", np.zeros((48, 48, 48)), 1.5)
    with pytest.raises(InputError) as err:
        import_particles(star, tmp_path / "import", map_path=tmp_path / "map.mrc")
    message = str(err.value)
    assert "box mismatch" in message and "map.mrc is 48 px" in message
    assert "particles.star" in message


def test_non_square_images(tmp_path, dataset):
    p, star = dataset
    write_mrcs(p.stacks[1], np.zeros((5, 32, 30)), 1.5)
    with pytest.raises(
        InputError, match=r"stack1\.mrcs: images are 30 x 32 pixels, expected square"
    ):
        import_particles(star, tmp_path / "import")


def test_truncated_stack_is_named_before_the_stack_pass(tmp_path, dataset):
    """An interrupted copy or extraction leaves a stack shorter than its header says."""
    p, star = dataset
    data = p.stacks[1].read_bytes()
    p.stacks[1].write_bytes(data[:-100])
    with pytest.raises(InputError) as err:
        import_particles(star, tmp_path / "import")
    message = str(err.value)
    assert "stack1.mrcs: truncated: the header gives 5 images of 32 x 32" in message
    assert f"{len(data) - 100} bytes" in message and "\n" not in message
    assert not (tmp_path / "import").exists()


def test_float16_stacks_import_like_float32(tmp_path):
    """RELION 4+ and cryoSPARC 4 can extract in float16 (MRC mode 12)."""
    p = make_particles(n=6, box=32, apix=1.5)
    p.images = [img.astype(np.float16).astype(np.float32) for img in p.images]
    results = []
    for mode, dtype in (("f32", np.float32), ("f16", np.float16)):
        write_stacks(p, tmp_path / mode / "Extract", n_stacks=2)
        for path in set(p.stacks):
            with mrcfile.open(path, "r+") as mrc:
                mrc.set_data(mrc.data.astype(dtype))
        star = write_star31(p, tmp_path / mode / "particles.star")
        results.append(import_particles(star, tmp_path / mode / "import", box=16))
    with mrcfile.open(results[0].stack) as a, mrcfile.open(results[1].stack) as b:
        np.testing.assert_array_equal(a.data, b.data)
        assert np.abs(a.data).max() > 0.1


def test_unreadable_lst_record(tmp_path):
    write_hdf_stack(tmp_path / "ptcls.hdf", np.zeros((2, 16, 16)), 2.0)
    good = {"xform.projection": pose_to_xform(np.eye(3), [0, 0])}
    write_lst(tmp_path / "ptcls.lst", [(0, "ptcls.hdf", good), (1, "ptcls.hdf", '{"xform.proj')])
    with pytest.raises(InputError, match=r"ptcls\.lst record 1 \(line 5\): invalid JSON"):
        import_particles(tmp_path / "ptcls.lst", tmp_path / "import", phase_flipped=True)


def all_junk(p):
    """Every image of the data set non-finite or constant: the import fails after its pass."""
    write_mrcs(p.stacks[0], np.full((6, 32, 32), np.inf), 1.5)
    write_mrcs(p.stacks[1], np.ones((5, 32, 32)), 1.5)


def test_failed_import_leaves_no_partial_output(tmp_path, dataset):
    """A failure at the end of the stack pass (every particle junk) leaves nothing."""
    p, star = dataset
    all_junk(p)
    out = tmp_path / "import"
    with pytest.raises(InputError, match="every particle is junk"):
        import_particles(star, out, box=16, chunk=2)
    assert list(out.iterdir()) == []


def test_failed_import_keeps_previous_outputs_intact(tmp_path, dataset):
    p, star = dataset
    out = tmp_path / "import"
    import_particles(star, out, box=16)
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    all_junk(p)
    with pytest.raises(InputError):
        import_particles(star, out, box=8, chunk=2)
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    assert json.loads(before["meta.json"])["box"] == 16


# ---------------------------------------------------------------- what the images hold


def blob_particles(n=40, box=32, apix=1.5, seed=3):
    """Noise-free particles: one CTF-free projection P (an off-centre asymmetric blob pair)
    modulated by each particle's CTF. Returns the data set (images = CTF * P) and P."""
    p = make_particles(n=n, box=box, apix=apix, seed=seed)
    y, x = np.mgrid[:box, :box] - box // 2
    clean = np.exp(-((x - 3) ** 2 + (y + 2) ** 2) / 8.0) + 0.6 * np.exp(
        -((x + 5) ** 2 + (y - 4) ** 2) / 4.0
    )
    ctf = ctf_2d(CTFParams(**{f: p.ctf[f] for f in CTF_FIELDS}), box, apix)
    p.images = list(to_real(to_fourier(clean) * ctf, box).astype(np.float32))
    return p, clean, ctf


def ring_agreement(images, clean):
    """Per Fourier ring (1..b/2-1): the sign of the correlation of the images' mean with P."""
    box = clean.shape[-1]
    product = (to_fourier(images.mean(axis=0)) * np.conj(to_fourier(clean))).real
    ky, kx = np.fft.fftfreq(box, 1 / box)[:, None], np.arange(box // 2 + 1)[None, :]
    ring = np.round(np.hypot(kx, ky)).astype(int)
    return np.array([np.sign(product[ring == r].sum()) for r in range(1, box // 2)])


def test_flagged_phase_flipped_star_is_not_flipped_twice(tmp_path):
    """Round trip: images flipped before the import and flagged so keep the sign of the
    CTF-free projection in every ring; flipping them again (phase_flipped: false) does not."""
    p, clean, ctf = blob_particles()
    p.images = list(to_real(to_fourier(np.stack(p.images)) * np.sign(ctf), 32).astype(np.float32))
    write_stacks(p, tmp_path / "Extract", n_stacks=1)
    star = write_star31(p, tmp_path / "flipped.star")
    data = starfile.read(star)
    data["optics"]["rlnCtfDataArePhaseFlipped"] = 1
    starfile.write(data, star)
    result = import_particles(star, tmp_path / "auto")
    assert result.meta["source_ctf"] == "flipped" and result.meta["stack_ctf"] == "flipped"
    assert "11 particles flagged" not in " ".join(result.meta["notes"])
    assert "40 particles flagged flipped by the input" in result.meta["notes"]
    with mrcfile.open(result.stack) as mrc:
        np.testing.assert_allclose(mrc.data, np.stack(p.images), atol=1e-5)
        assert (ring_agreement(mrc.data, clean) > 0).all()
    twice = import_particles(star, tmp_path / "twice", phase_flipped=False)
    assert "phase_flipped: false overrides 40 particles flagged flipped" in twice.meta["notes"]
    with mrcfile.open(twice.stack) as mrc:
        assert (ring_agreement(mrc.data, clean) < 0).any()


def test_premultiplied_images_are_kept_and_raw_ones_premultiplied(tmp_path):
    """Group 2 is CTF-premultiplied (CTF * X): never flipped; the raw group 1 is multiplied
    by its CTF so the stack holds CTF * X for all, reconstructed with CTF^2 weights."""
    p, clean, ctf = blob_particles(n=8)
    raw = np.stack(p.images)
    premultiplied = to_real(to_fourier(raw) * ctf, 32).astype(np.float32)
    p.images = list(np.concatenate([raw[:4], premultiplied[4:]]))
    write_stacks(p, tmp_path / "Extract", n_stacks=1)
    star = write_star31(p, tmp_path / "p.star", groups=[1] * 4 + [2] * 4)
    data = starfile.read(star)
    data["optics"]["rlnCtfDataAreCtfPremultiplied"] = [0, 1]
    starfile.write(data, star)
    result = import_particles(star, tmp_path / "import")
    assert result.meta["stack_ctf"] == "premultiplied" and result.meta["source_ctf"] == "mixed"
    with mrcfile.open(result.stack) as mrc:
        np.testing.assert_allclose(mrc.data, premultiplied, atol=1e-5)
    assert cropped_source(result.stack, result.meta).images_ctf == "premultiplied"
    assert [g["images"] for g in result.meta["optics_groups"]] == ["raw", "premultiplied"]
    assert "images: mixed (per optics group); the stack: premultiplied" in summary(result.meta)


def test_flagged_eman2_ctf_flip_stack_with_ctf_is_not_flipped(tmp_path):
    p, clean, ctf = blob_particles(n=6)
    flipped = to_real(to_fourier(np.stack(p.images)) * np.sign(ctf), 32).astype(np.float32)
    headers = [{"ctf": ctf_to_eman2({f: p.ctf[f][i] for f in CTF_FIELDS}, 1.5)} for i in range(6)]
    write_hdf_stack(tmp_path / "mic__ctf_flip.hdf", flipped, 1.5, headers)
    records = [
        (i, "mic__ctf_flip.hdf", {"xform.projection": pose_to_xform(p.R[i], p.shifts[i])})
        for i in range(6)
    ]
    write_lst(tmp_path / "ptcls.lst", records)
    result = import_particles(tmp_path / "ptcls.lst", tmp_path / "import")
    assert result.meta["has_ctf"] and result.meta["source_ctf"] == "flipped"
    with mrcfile.open(result.stack) as mrc:
        np.testing.assert_allclose(mrc.data, flipped, atol=1e-5)


def test_phase_flipped_setting_is_checked(tmp_path, dataset):
    with pytest.raises(InputError, match="phase_flipped: expected auto, true or false"):
        import_particles(dataset[1], tmp_path / "import", phase_flipped="yes")


# ---------------------------------------------------------------- optics groups and frames


def sampled_blob(box, apix, shift_a, ctf):
    """The same physical object (Gaussians in Angstrom) sampled at apix, shifted by shift_a
    Angstrom, with the CTF applied on that grid."""
    y, x = (np.mgrid[:box, :box] - box // 2) * apix
    x, y = x - shift_a[0], y - shift_a[1]
    image = np.exp(-((x - 4) ** 2 + (y + 3) ** 2) / 18.0) + 0.7 * np.exp(
        -((x + 6) ** 2 + (y - 5) ** 2) / 10.0
    )
    return to_real(to_fourier(image) * ctf_2d(ctf, box, apix)[0], box).astype(np.float32)


def test_optics_groups_of_different_size_in_angstrom_share_one_frame(tmp_path):
    """Group 1 spans 64 A (64 px x 1.0 A), group 2 70.4 A (64 px x 1.1 A): group 2 is cropped
    to 58 px (63.8 A) before the Fourier crop, keeps its own pixel size in the table, and
    the same object gives the same training image and the same shift in both."""
    p = make_particles(n=4, box=64, apix=1.0)
    one = CTFParams(6000.0, 5800.0, 30.0, 300.0, 2.7, 0.1)
    shift = np.array([2.2, -1.1])  # Angstrom
    p.apix = np.array([1.0, 1.0, 1.1, 1.1])
    p.shifts = shift / p.apix[:, None]
    p.ctf = {f: np.full(4, getattr(one, f)) for f in CTF_FIELDS}
    for group, apix in ((0, 1.0), (1, 1.1)):
        write_mrcs(
            tmp_path / f"g{group}.mrcs", np.stack([sampled_blob(64, apix, shift, one)] * 2), apix
        )
    p.stacks = [tmp_path / f"g{i // 2}.mrcs" for i in range(4)]
    p.stack_index = np.array([0, 1, 0, 1])
    star = write_star31(p, tmp_path / "p.star", groups=[1, 1, 2, 2])
    result = import_particles(star, tmp_path / "import", box=32)
    table = load_table(result.table)
    np.testing.assert_array_equal(table["window"], [64, 64, 58, 58])
    np.testing.assert_array_equal(table["apix"], [1.0, 1.0, 1.1, 1.1])
    assert result.meta["apix"] == pytest.approx(2.0) and result.meta["extent"] == 64.0
    shifts = table_poses(table, 32)[1]
    np.testing.assert_allclose(shifts, np.broadcast_to(shift / 2.0, (4, 2)), rtol=0.005)
    with mrcfile.open(result.stack) as mrc:
        a, b = mrc.data[0], mrc.data[2]
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99
    assert [g["window"] for g in result.meta["optics_groups"]] == [64, 58]


def frame_of(boxes, apixes, box=None, consensus=None):
    table = pd.DataFrame({"optics_group": np.arange(len(boxes)) + 1, "box": boxes, "apix": apixes})
    return training_frame(table, box, consensus, Path("p.star"))


def test_groups_0_8_percent_apart_in_pixel_size_are_reconciled():
    """1.24 vs 1.25 A in the same 196 px box: the second is cropped to 194 px (0.2 % off)."""
    frame = frame_of([196, 196], [1.24, 1.25])
    np.testing.assert_array_equal(frame.windows, [196, 194])
    assert frame.box == 194 and frame.extent == pytest.approx(243.04)
    consensus = MapFrame(Path("map.mrc"), 196, 1.25)  # the map decides the reference
    np.testing.assert_array_equal(frame_of([196, 196], [1.24, 1.25], 128, consensus).windows,
                                  [198, 196])  # fmt: skip


def test_what_cannot_be_reconciled_is_named():
    with pytest.raises(InputError, match=r"optics group 2 \(96 px x 2.5 A = 240.0 A\) would lose"):
        frame_of([96, 96], [1.25, 2.5])
    with pytest.raises(
        InputError, match=r"box 128: larger than the 98-pixel frame of optics group 2 \(96 px"
    ):
        frame_of([196, 96], [1.25, 2.5], 128)
    with pytest.raises(InputError) as err:
        frame_of([196, 196], [1.24, 1.25], consensus=MapFrame(Path("map.mrc"), 196, 1.0))
    message = str(err.value)
    assert "map map.mrc is 196 px at 1 A/px (196.0 A)" in message
    assert "optics group 1 (196 px x 1.24 A = 243.0 A), optics group 2 (196 px x 1.25 A" in message
    assert "set apix" in message


# ---------------------------------------------------------------- pixel sizes of the map


def test_map_with_voxel_size_0_needs_apix(tmp_path, dataset):
    _, star = dataset
    write_map(tmp_path / "map.mrc", np.zeros((32, 32, 32)), 1.5)
    with mrcfile.open(tmp_path / "map.mrc", mode="r+") as mrc:
        mrc.voxel_size = 0.0
    with pytest.raises(
        InputError, match=r"map\.mrc: the MRC header gives voxel size 0 A.*set apix"
    ):
        import_particles(star, tmp_path / "import", map_path=tmp_path / "map.mrc")
    result = import_particles(star, tmp_path / "import", map_path=tmp_path / "map.mrc", apix=1.5)
    assert result.meta["apix"] == 1.5
    assert read_map(tmp_path / "map.mrc", 1.5)[1] == 1.5


def test_apix_reaches_particles_and_map(tmp_path, dataset):
    """A wrong pixel size in both headers (1.5 A) is overridden by apix for both."""
    _, star = dataset
    write_map(tmp_path / "map.mrc", np.zeros((32, 32, 32)), 1.5)
    result = import_particles(
        star, tmp_path / "import", map_path=tmp_path / "map.mrc", apix=1.4, box=16
    )
    assert result.meta["apix"] == pytest.approx(2.8)
    assert "apix 1.4 A replaces the pixel size the input states (1.5 A)" in result.meta["notes"]
    write_map(tmp_path / "map2.mrc", np.zeros((32, 32, 32)), 1.4)  # a right map, wrong stars
    with pytest.raises(InputError, match="box mismatch: map .*map2.mrc is 32 px at 1.4 A/px"):
        import_particles(star, tmp_path / "import", map_path=tmp_path / "map2.mrc")


# ---------------------------------------------------------------- junk and halves


def test_nan_and_constant_particles_are_junk_listed_and_left_out(tmp_path, dataset):
    p, star = dataset
    images = np.stack(p.images[1::2])
    images[3, 5, 7] = np.nan  # particle 7 = image 3 of stack1
    images[1] = 0.25  # particle 3: a constant image
    write_mrcs(p.stacks[1], images, 1.5)
    result = import_particles(star, tmp_path / "import", chunk=2, box=16)
    junk = pd.read_csv(result.junk)
    assert list(junk.columns) == ["index", "reason", "subset"]
    assert junk.drop(columns="subset").to_dict("list") == {
        "index": [3, 7], "reason": ["constant image", "non-finite pixels"],
    }  # fmt: skip
    even, odd = (junk_of_half(result.junk, half).tolist() for half in ("even", "odd"))
    assert junk_of_half(result.junk, "all").tolist() == [3, 7] and sorted(even + odd) == [3, 7]
    assert even == junk.loc[junk["subset"] == 1, "index"].tolist()
    table = load_table(result.table)
    assert 3 not in set(table["index"]) and 7 not in set(table["index"]) and len(table) == 9
    assert result.meta["n_particles"] == 9 and result.meta["n_junk"] == 2
    with mrcfile.open(result.stack) as mrc:
        assert len(mrc.data) == 11 and not mrc.data[[3, 7]].any()
        for row in table.itertuples():
            expected = expected_image(p, row.index, 16)
            np.testing.assert_allclose(mrc.data[row.stack_index], expected, atol=1e-5)


def test_an_empty_half_warns_without_split_and_fails_with_it(tmp_path, caplog):
    p = make_particles(n=6, box=32)
    write_stacks(p, tmp_path / "Extract", n_stacks=1)
    star = write_star31(p, tmp_path / "p.star", rlnRandomSubset=np.ones(6, dtype=int))
    with caplog.at_level("WARNING"):
        result = import_particles(star, tmp_path / "import")
    assert result.meta["halves"] == [6, 0]
    assert "half 2 (odd) is empty: all 6 particles are in half 1" in caplog.text
    with pytest.raises(InputError, match=r"half 2 \(odd\) is empty.*split: true needs both"):
        import_particles(star, tmp_path / "split", split=True)
    assert not (tmp_path / "split").exists()


# ---------------------------------------------------------------- gmmscape import


def test_cli_import_prints_the_summary(tmp_path, capsys):
    p = make_particles(n=6, box=32)
    write_stacks(p, tmp_path / "Extract", n_stacks=2)
    star = write_star30(p, tmp_path / "p30.star")
    data = starfile.read(star).drop(columns="rlnAmplitudeContrast")
    starfile.write(data, star)
    out = tmp_path / "import"
    code = main(["import", str(star), "--out", str(out), "--box", "16", "--apix", "1.5"])
    assert code == 0
    text = capsys.readouterr().out
    assert f"6 particles from {star.resolve()} (relion30), 0 junk" in text
    assert "optics group 1: 6 particles, 1.5 A/px, box 32, 300 kV, Cs 2.7 mm, Q0 0.1, " in text
    assert " um, raw images\n" in text
    lo, hi = (p.ctf["defocus_u"] + p.ctf["defocus_v"]) / 2 / 1e4 * [[1], [1]]
    assert f"defocus {lo.min():.2f}-{hi.max():.2f} um" in text
    assert "training frame: box 16 at 3 A/px (48.0 A)" in text
    assert "images: raw, phase-flipped at import" in text and "halves: 3 even, 3 odd" in text
    assert "note: no _rlnAmplitudeContrast: 0.1 for every particle (RELION's default)" in text
    assert sorted(f.name for f in out.iterdir()) == [
        "junk.csv", "meta.json", "particles.csv", "stack.mrcs",
    ]  # fmt: skip
    assert main(["import", str(tmp_path / "x.star"), "--out", str(out)]) == 2
    assert "gmmscape import: " in capsys.readouterr().err
