"""RELION STAR import (3.0 and 3.1, optics groups, subsets, paths) and the 3.1 writer."""

from __future__ import annotations

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

from gmmscape.errors import InputError
from gmmscape.geometry import angle_between, matrix_to_relion
from gmmscape.importer import build_table, even_odd
from gmmscape.io import read_star, write_star

NUMERIC = [
    "source_index", "rot", "tilt", "psi", "shift_x", "shift_y", *CTF_FIELDS, "apix", "box",
]  # fmt: skip


@pytest.fixture
def particles(tmp_path):
    p = make_particles(n=12)
    write_stacks(p, tmp_path / "Extract" / "job007", n_stacks=3)
    return p


def assert_matches_truth(records, p, atol=1e-5):
    assert angle_between(records.rotations, p.R).max() < 0.01
    np.testing.assert_allclose(records.shifts, p.shifts, atol=atol)
    for field in CTF_FIELDS:
        np.testing.assert_allclose(records.ctf[field], p.ctf[field], rtol=1e-6)
    assert records.source == [str(s.resolve()) for s in p.stacks]
    np.testing.assert_array_equal(records.source_index, p.stack_index)


def test_star31_and_star30_import_to_the_same_table(tmp_path, particles):
    r31 = read_star(write_star31(particles, tmp_path / "p31.star"))
    r30 = read_star(write_star30(particles, tmp_path / "p30.star"))
    assert (r31.format, r30.format) == ("relion31", "relion30")
    assert_matches_truth(r31, particles)
    assert_matches_truth(r30, particles)
    t31, t30 = build_table(r31), build_table(r30)
    np.testing.assert_allclose(
        t31[NUMERIC].to_numpy(float), t30[NUMERIC].to_numpy(float), atol=1e-5
    )
    assert (t31["source"] == t30["source"]).all()
    np.testing.assert_array_equal(t31["apix"], 1.5)
    np.testing.assert_array_equal(t31["box"], 32)


def test_star30_pixel_size_from_override_or_clear_error(tmp_path, particles):
    path = write_star30(particles, tmp_path / "p30.star", detector=False)
    with pytest.raises(InputError, match=r"p30\.star.*pixel size.*apix"):
        read_star(path)
    records = read_star(path, apix=1.5)
    assert_matches_truth(records, particles)


def test_optics_groups_with_their_own_pixel_size_box_and_optics(tmp_path):
    """Group 2 is binned 2x (3 A/px, box 16): same box in A, own voltage, Cs and Q0."""
    p = make_particles(n=8)
    groups = np.array([1, 2] * 4)
    binned = groups == 2
    p.apix[binned] = 3.0
    p.images = [img[::2, ::2].copy() if b else img for img, b in zip(p.images, binned, strict=True)]
    p.ctf["voltage"][binned], p.ctf["cs"][binned], p.ctf["amp_contrast"][binned] = 200.0, 2.0, 0.07
    folder = tmp_path / "stacks"
    folder.mkdir()
    p.stacks, p.stack_index = [None] * p.n, np.zeros(p.n, dtype=int)
    for g in (1, 2):
        members = np.flatnonzero(groups == g)
        path = write_mrcs(folder / f"g{g}.mrcs", np.stack([p.images[i] for i in members]), 1.0)
        for k, i in enumerate(members):
            p.stacks[i], p.stack_index[i] = path, k
    records = read_star(write_star31(p, tmp_path / "groups.star", groups=groups))
    assert_matches_truth(records, p)  # shifts in pixels of each group's own pixel size
    np.testing.assert_array_equal(records.optics_group, groups)
    np.testing.assert_array_equal(records.apix, np.where(binned, 3.0, 1.5))
    np.testing.assert_array_equal(records.box, np.where(binned, 16, 32))


def test_random_subset_is_respected(tmp_path, particles):
    subset = np.array([1, 2, 2, 1, 1, 1, 2, 2, 1, 2, 2, 2])
    records = read_star(write_star31(particles, tmp_path / "p.star", rlnRandomSubset=subset))
    np.testing.assert_array_equal(build_table(records)["subset"], subset)


def test_random_subset_values_are_checked(tmp_path, particles):
    path = write_star31(particles, tmp_path / "p.star", rlnRandomSubset=[1, 2, 3] * 4)
    with pytest.raises(InputError, match=r"p\.star row 2.*rlnRandomSubset 3"):
        read_star(path)


def test_seeded_split_is_balanced_and_reproducible():
    unknown = np.zeros(101, dtype=int)
    a, b, c = even_odd(unknown, 7), even_odd(unknown, 7), even_odd(unknown, 8)
    assert set(np.unique(a)) == {1, 2} and abs((a == 1).sum() - (a == 2).sum()) <= 1
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


def test_image_paths_relative_to_cwd_as_relion_does(tmp_path, particles, monkeypatch):
    """RELION writes paths relative to its project folder; the STAR may live elsewhere."""
    (tmp_path / "Refine3D").mkdir()
    p = write_star31(particles, tmp_path / "p.star")  # names relative to tmp_path
    moved = tmp_path / "Refine3D" / "run_data.star"
    p.rename(moved)
    monkeypatch.chdir(tmp_path)
    assert_matches_truth(read_star(moved), particles)


def test_missing_stack_names_the_file(tmp_path, particles):
    path = write_star31(particles, tmp_path / "p.star")
    particles.stacks[0].unlink()
    with pytest.raises(InputError, match=r"p\.star row 0.*stack0\.mrcs.*not found"):
        read_star(path)


def test_image_size_must_match_stack(tmp_path, particles):
    path = write_star31(particles, tmp_path / "p.star")
    data = starfile.read(path)
    data["optics"]["rlnImageSize"] = 64
    starfile.write(data, path)
    with pytest.raises(InputError, match=r"rlnImageSize is 64.*32 x 32"):
        read_star(path)


def test_unknown_optics_group_is_named(tmp_path, particles):
    path = write_star31(particles, tmp_path / "p.star", rlnOpticsGroup=[1] * 11 + [5])
    with pytest.raises(InputError, match=r"p\.star row 11.*optics group 5"):
        read_star(path)


def test_write_star_is_a_relion31_file(tmp_path):
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnImagePixelSize": [1.25]})
    rows = pd.DataFrame({"rlnImageName": ["000001@a.mrcs", "000002@a.mrcs"], "rlnOpticsGroup": 1})
    path = tmp_path / "out" / "subset.star"
    write_star(path, optics, rows)
    text = path.read_text()
    assert text.count("# version 30001") == 2 and "data_optics" in text and "data_particles" in text
    back = starfile.read(path)
    pd.testing.assert_frame_equal(back["particles"], rows, check_dtype=False)
    assert [f.name for f in path.parent.iterdir()] == ["subset.star"]  # no temporary left


def test_optional_ctf_columns_take_relion_defaults_noted_once(tmp_path, particles):
    """A RELION 3.0 file without _rlnAmplitudeContrast (RELION assumes 0.1), phase shift
    or B-factor imports with those defaults, each noted once."""
    path = write_star30(particles, tmp_path / "p30.star")
    data = starfile.read(path).drop(columns="rlnAmplitudeContrast")
    starfile.write(data, path)
    records = read_star(path)
    np.testing.assert_array_equal(records.ctf["amp_contrast"], 0.1)
    np.testing.assert_array_equal(records.ctf["phase_shift"], 0.0)
    np.testing.assert_array_equal(records.ctf["bfactor"], 0.0)
    assert records.notes == [
        "no _rlnAmplitudeContrast: 0.1 for every particle (RELION's default)",
        "no _rlnPhaseShift: 0 for every particle (RELION's default)",
        "no _rlnCtfBfactor: 0 for every particle (RELION's default)",
    ]
    with_all = read_star(write_star31(particles, tmp_path / "p31.star", rlnPhaseShift=5.0,
                                      rlnCtfBfactor=20.0))  # fmt: skip
    assert with_all.notes == []
    np.testing.assert_array_equal(with_all.ctf["phase_shift"], 5.0)


@pytest.mark.parametrize("version", ["3.0", "3.1"])
def test_flip_flags_in_the_optics_or_the_particle_table(tmp_path, particles, version):
    """_rlnCtfDataArePhaseFlipped / _rlnCtfDataAreCtfPremultiplied, per particle (3.0) or
    per optics group (3.1); premultiplied wins when both are set."""
    flags = {"rlnCtfDataArePhaseFlipped": np.arange(12) % 3 == 1}
    flags["rlnCtfDataAreCtfPremultiplied"] = np.arange(12) % 3 == 2
    flags = {k: v.astype(int) for k, v in flags.items()}
    if version == "3.0":
        path = write_star30(particles, tmp_path / "p.star", **flags)
    else:  # three optics groups, the flags in data_optics
        path = write_star31(particles, tmp_path / "p.star", groups=np.arange(12) % 3 + 1)
        data = starfile.read(path)
        data["optics"]["rlnCtfDataArePhaseFlipped"] = [0, 1, 1]
        data["optics"]["rlnCtfDataAreCtfPremultiplied"] = [0, 0, 1]
        starfile.write(data, path)
    states = read_star(path).ctf_state
    assert list(states) == ["raw", "flipped", "premultiplied"] * 4


def relion_text(p, star_dir, version="30001", general="", optics_extra=None, extra=None) -> str:
    """The particles as RELION itself writes a Refine3D run_data.star: '# version' lines,
    'loop_ ' and '_rlnName #n ' with trailing blanks, right-aligned fixed-width numbers,
    a blank-but-one-space line closing each loop, and CtfRefine/Polish/helical extras."""
    angles = matrix_to_relion(p.R)
    optics = {
        "rlnOpticsGroupName": ["opticsGroup1"],
        "rlnOpticsGroup": [1],
        "rlnMicrographOriginalPixelSize": [0.885],
        "rlnVoltage": [p.ctf["voltage"][0]],
        "rlnSphericalAberration": [p.ctf["cs"][0]],
        "rlnAmplitudeContrast": [p.ctf["amp_contrast"][0]],
        "rlnImagePixelSize": [p.apix[0]],
        "rlnImageSize": [p.images[0].shape[0]],
        "rlnImageDimensionality": [2],
        "rlnCtfDataArePhaseFlipped": [0],
        "rlnCtfDataAreCtfPremultiplied": [0],
    } | (optics_extra or {})
    where = zip(p.stack_index, p.stacks, strict=True)
    names = [f"{k + 1:06d}@{s.relative_to(star_dir)}" for k, s in where]
    rows = {
        "rlnCoordinateX": np.full(p.n, 1442.0),
        "rlnCoordinateY": np.full(p.n, 1822.0),
        "rlnClassNumber": np.ones(p.n, int),
        "rlnAnglePsi": angles[:, 2],
        "rlnImageName": names,
        "rlnMicrographName": ["MotionCorr/job002/Movies/x.mrc"] * p.n,
        "rlnOpticsGroup": np.ones(p.n, int),
        "rlnDefocusU": p.ctf["defocus_u"],
        "rlnDefocusV": p.ctf["defocus_v"],
        "rlnDefocusAngle": p.ctf["defocus_angle"],
        "rlnCtfBfactor": np.zeros(p.n),
        "rlnCtfScalefactor": np.ones(p.n),
        "rlnPhaseShift": np.zeros(p.n),
        "rlnAngleRot": angles[:, 0],
        "rlnAngleTilt": angles[:, 1],
        "rlnOriginXAngst": -p.shifts[:, 0] * p.apix,
        "rlnOriginYAngst": -p.shifts[:, 1] * p.apix,
        "rlnNormCorrection": np.ones(p.n),
        "rlnLogLikeliContribution": np.full(p.n, 4.345006e05),
        "rlnRandomSubset": np.arange(p.n) % 2 + 1,
    } | (extra or {})

    def value(v) -> str:
        if isinstance(v, str):
            return v
        if isinstance(v, (int, np.integer)):
            return f"{v:12d}"
        return f"{v:12.6f}"

    def block(name: str, table: dict) -> str:
        head = [f"\n# version {version}\n\ndata_{name}\n\nloop_ "]
        head += [f"_{c} #{i + 1} " for i, c in enumerate(table)]
        n = len(next(iter(table.values())))
        lines = [" ".join(value(v[i]) for v in table.values()) + " " for i in range(n)]
        return "\n".join(head + lines) + "\n \n"

    return general + block("optics", optics) + block("particles", rows)


def test_relion_written_files_of_3_1_to_5_with_their_extra_columns(tmp_path, particles):
    """The layout RELION 3.1, 4 and 5 write (comment lines, trailing blanks), a data_general
    block, CtfRefine optics columns ([..] Zernike lists, MagMat), helical and Polish
    columns, and a symmetry-expanded copy of every particle: poses, shifts in pixels,
    CTF and images as written."""
    extra = {
        "rlnHelicalTubeID": np.ones(12, int),
        "rlnAngleTiltPrior": np.full(12, 90.0),
        "rlnImageOriginalName": ["000001@Extract/job007/Movies/x.mrcs"] * 12,
    }
    optics = {
        "rlnBeamTiltX": [0.1],
        "rlnOddZernike": ["[0.470415,0.416253,34.386147,0,0,10.785281]"],
        "rlnEvenZernike": ["[46.106517,61.308936,71.654850,-58.850637,-20.448174]"],
        "rlnMagMat00": [1.007178],
        "rlnMagMat01": [0.00768],
    }
    general = "\n# version 50001\n\ndata_general\n\n_rlnNrOfBodies 1 \n\n"
    for version in ("30001", "40000", "50001"):
        text = relion_text(particles, tmp_path, version, general, optics, extra)
        path = tmp_path / f"run_data_{version}.star"
        path.write_text(text)
        records = read_star(path)
        assert records.format == "relion31" and records.notes == []
        assert_matches_truth(records, particles, atol=1e-5)
        np.testing.assert_array_equal(records.subset, np.arange(12) % 2 + 1)
    # relion_particle_symmetry_expand: each image twice, the copy turned by 180 deg about z
    turn = np.diag([-1.0, -1.0, 1.0])
    both = make_particles(n=24)
    both.R = np.concatenate([particles.R, turn @ particles.R])
    both.shifts = np.concatenate([particles.shifts, particles.shifts])
    both.ctf = {k: np.concatenate([v, v]) for k, v in particles.ctf.items()}
    both.stacks, both.stack_index = particles.stacks * 2, np.tile(particles.stack_index, 2)
    (tmp_path / "expanded.star").write_text(relion_text(both, tmp_path))
    expanded = read_star(tmp_path / "expanded.star")
    assert_matches_truth(expanded, both)
    assert angle_between(expanded.rotations[12:], expanded.rotations[:12]).min() > 179


def test_image_paths_of_a_relion_job_output_from_any_cwd(tmp_path, particles, monkeypatch):
    """Refine3D/job020/run_data.star names Extract/job007/... from the project folder two
    levels up; it is found whatever the current folder."""
    job = tmp_path / "Refine3D" / "job020"
    job.mkdir(parents=True)
    (job / "run_data.star").write_text(relion_text(particles, tmp_path))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert_matches_truth(read_star(job / "run_data.star"), particles)


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("particles", r"tomography particle file \(_rlnTomoName\)"),
        ("general", r"tomography particle file \(_rlnTomoSubTomosAre2DStacks in data_general\)"),
        ("optics", r"row 0 \(0-based\): _rlnImageDimensionality is 3; expected 2"),
    ],
)
def test_relion_tomography_particles_are_refused_in_one_line(tmp_path, particles, where, expected):
    """RELION 4/5 sub-tomograms (3D images, or one 2D stack of tilts per particle) would be
    read as image 1 of a stack: refused, naming the file and the column."""
    extra = {"rlnTomoName": ["TS_01"] * 12} if where == "particles" else None
    optics = {"rlnImageDimensionality": [3]} if where == "optics" else None
    general = "\ndata_general\n\n_rlnTomoSubTomosAre2DStacks 1\n\n" if where == "general" else ""
    path = tmp_path / "particles.star"
    path.write_text(relion_text(particles, tmp_path, "50001", general, optics, extra))
    with pytest.raises(InputError, match=rf"particles\.star.*{expected}") as err:
        read_star(path)
    assert "\n" not in str(err.value)


def test_particles_without_3d_poses_are_refused_in_one_line(tmp_path, particles):
    """Extract and Class2D outputs carry no _rlnAngleRot/_rlnAngleTilt (Class2D: psi only)."""
    path = tmp_path / "run_it025_data.star"
    path.write_text(relion_text(particles, tmp_path))
    data = starfile.read(path)
    data["particles"] = data["particles"].drop(columns=["rlnAngleRot", "rlnAngleTilt"])
    starfile.write(data, path)
    with pytest.raises(InputError, match=r"run_it025_data\.star: no 3D poses \(missing column "
                       r"_rlnAngleRot, _rlnAngleTilt\)"):  # fmt: skip
        read_star(path)
