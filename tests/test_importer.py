"""The import stage end to end: canonical table, meta.json, flipped and cropped stack, and
one clear error per kind of bad input, with nothing half-written left behind."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pytest
import starfile
from particle_data import CTF_FIELDS, make_particles, write_mrcs, write_stacks, write_star31

from gmmscape.ctf import CTFParams, phase_flip
from gmmscape.errors import InputError
from gmmscape.fourier import fourier_crop
from gmmscape.geometry import angle_between
from gmmscape.importer import TABLE_COLUMNS, import_particles, load_meta, load_table, table_poses
from gmmscape.io import write_lst, write_map
from gmmscape.io.eman2 import pose_to_xform
from gmmscape.io.hdf import write_hdf_stack


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
