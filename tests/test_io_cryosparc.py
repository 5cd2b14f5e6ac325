"""cryoSPARC .cs import: poses, shifts and CTF agree with the same particles as STAR and
with voxel-wise projection; subsets go back out as .cs + .csg with every field intact."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from cryosparc.dataset import Dataset
from particle_data import CTF_FIELDS, make_particles, write_stacks, write_star31
from scipy.spatial.transform import Rotation
from test_projection import brute_force_density, random_gmm, rel_err, rotate_and_project

from gmmscape.errors import InputError
from gmmscape.geometry import angle_between
from gmmscape.importer import import_particles, load_table
from gmmscape.io import read_star
from gmmscape.io.cryosparc import load_particles, passthrough_file, read_cs, write_cs_subset
from gmmscape.projection import project_real
from gmmscape.subsets import write_class_subsets

APIX = 1.5


def rodrigues(v: np.ndarray) -> np.ndarray:
    """E(v) = I + sin|v| K + (1 - cos|v|) K^2: rotation by |v| about v, written out."""
    theta = np.linalg.norm(v)
    x, y, z = v / theta
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + np.sin(theta) * k + (1 - np.cos(theta)) * k @ k


def cs_pose(R: np.ndarray) -> np.ndarray:
    """cryoSPARC pose of our rotation R: the axis-angle vector v with E(v) = R^T."""
    return Rotation.from_matrix(np.transpose(R, (0, 2, 1))).as_rotvec()


def write_cs(p, project, *, sign=-1.0, align_apix=None, job="J24"):
    """The particles as a cryoSPARC refinement job: stacks in J20/extract, poses in
    J24/J24_particles.cs, CTF in J24/J24_passthrough_particles.cs (paths from the project)."""
    write_stacks(p, project / "J20" / "extract", n_stacks=2, suffix=".mrc")
    align_apix = APIX if align_apix is None else align_apix
    n = p.n
    main = Dataset.allocate(
        n,
        [
            ("blob/path", "O"), ("blob/idx", "u4"), ("blob/shape", "u4", (2,)),
            ("blob/psize_A", "f4"), ("blob/sign", "f4"),
            ("alignments3D/pose", "f4", (3,)), ("alignments3D/shift", "f4", (2,)),
            ("alignments3D/psize_A", "f4"), ("alignments3D/split", "u4"),
        ],
    )  # fmt: skip
    main["blob/path"] = [str(s.relative_to(project)) for s in p.stacks]
    main["blob/idx"] = p.stack_index
    main["blob/shape"] = np.tile(p.images[0].shape, (n, 1))
    main["blob/psize_A"] = p.apix
    main["blob/sign"] = sign
    main["alignments3D/pose"] = cs_pose(p.R)
    main["alignments3D/shift"] = -p.shifts * APIX / align_apix  # RELION origin, align pixels
    main["alignments3D/psize_A"] = align_apix
    main["alignments3D/split"] = np.arange(n) % 2
    ctf = Dataset.allocate(
        n,
        [(f"ctf/{f}", "f4") for f in ("df1_A", "df2_A", "df_angle_rad", "accel_kv", "cs_mm")]
        + [("ctf/amp_contrast", "f4"), ("ctf/phase_shift_rad", "f4"), ("ctf/exp_group_id", "u4")],
    )
    ctf["uid"] = main["uid"][::-1]  # another row order: the join goes by uid
    order = np.arange(n)[::-1]
    ctf["ctf/df1_A"] = p.ctf["defocus_u"][order]
    ctf["ctf/df2_A"] = p.ctf["defocus_v"][order]
    ctf["ctf/df_angle_rad"] = np.deg2rad(p.ctf["defocus_angle"][order])
    ctf["ctf/accel_kv"] = p.ctf["voltage"][order]
    ctf["ctf/cs_mm"] = p.ctf["cs"][order]
    ctf["ctf/amp_contrast"] = p.ctf["amp_contrast"][order]
    folder = project / job
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{job}_particles.cs"
    ctf.save(str(folder / f"{job}_passthrough_particles.cs"))
    main.save(str(path))
    return path


@pytest.fixture
def particles(tmp_path):
    return make_particles(n=12, apix=APIX)


def test_cs_and_star_of_the_same_particles_agree(tmp_path, particles):
    cs = read_cs(write_cs(particles, tmp_path / "P1"))
    relion = make_particles(n=12, apix=APIX)  # same seed: same poses and CTF
    write_stacks(relion, tmp_path / "relion")
    star = read_star(
        write_star31(relion, tmp_path / "p.star", rlnRandomSubset=np.arange(12) % 2 + 1)
    )
    assert cs.format == "cryosparc"
    assert angle_between(cs.rotations, star.rotations).max() < 0.01
    np.testing.assert_allclose(cs.shifts, star.shifts, atol=0.01)
    for field in CTF_FIELDS:  # float32 in the .cs
        np.testing.assert_allclose(cs.ctf[field], star.ctf[field], rtol=1e-6, atol=1e-3)
    np.testing.assert_array_equal(cs.ctf["phase_shift"], 0.0)
    np.testing.assert_array_equal(cs.subset, star.subset)
    np.testing.assert_array_equal(cs.source_index, particles.stack_index)
    assert cs.source == [str(s.resolve()) for s in particles.stacks]
    np.testing.assert_array_equal(cs.box, 32)
    np.testing.assert_allclose(cs.apix, APIX)


def test_cs_poses_reproduce_voxelwise_projections(tmp_path):
    """Images made by rotating a map voxel by voxel with E(v)^T and shifting it by -shift
    are the analytic projections at the imported pose."""
    rng = np.random.default_rng(3)
    box = 48
    gmm = random_gmm(rng, box=box)
    vol = brute_force_density(gmm, box)
    p = make_particles(n=3, box=box, apix=APIX, seed=4)
    pose = rng.uniform(-1, 1, (3, 3))
    pose *= rng.uniform(0.2, np.pi, (3, 1)) / np.linalg.norm(pose, axis=1, keepdims=True)
    shift = rng.uniform(-3, 3, (3, 2))  # cryoSPARC's alignments3D/shift
    p.images = [
        rotate_and_project(vol, rodrigues(v).T, -s) for v, s in zip(pose, shift, strict=True)
    ]
    p.R = np.stack([rodrigues(v).T for v in pose])
    p.shifts = -shift
    path = write_cs(p, tmp_path / "P1")
    records = read_cs(path)
    images = project_real(gmm, records.rotations, records.shifts, box).numpy()
    for i in range(3):
        assert rel_err(images[i], p.images[i]) < 1e-4


def test_shifts_are_in_pixels_of_the_alignment(tmp_path, particles):
    """Alignments made on 2x binned particles: shifts scale by their pixel size."""
    records = read_cs(write_cs(particles, tmp_path / "P1", align_apix=2 * APIX))
    np.testing.assert_allclose(records.shifts, particles.shifts, atol=1e-5)


def test_positive_sign_inverts_contrast_through_the_ctf_phase(tmp_path, particles):
    records = read_cs(write_cs(particles, tmp_path / "P1", sign=1.0))
    np.testing.assert_allclose(records.ctf["phase_shift"], 180.0)
    assert records.notes == [
        "12 particles with blob/sign +1 (dark protein): CTF phase shifted by 180 degrees, "
        "which inverts their contrast"
    ]


def test_two_d_alignments_are_refused_in_one_line(tmp_path, particles):
    path = write_cs(particles, tmp_path / "P1")
    data = Dataset.load(str(path))
    data = data.drop_fields(["alignments3D/pose", "alignments3D/shift"])
    data.add_fields([("alignments2D/pose", "f4")])
    data.save(str(path))
    with pytest.raises(InputError, match="2D alignments only; 3D poses") as err:
        read_cs(path)
    assert "\n" not in str(err.value)


def test_image_paths_from_particles_dir_and_imported_marker(tmp_path, particles):
    path = write_cs(particles, tmp_path / "P1")
    moved = tmp_path / "elsewhere" / path.name
    moved.parent.mkdir()
    data = Dataset.load(str(path))
    data["blob/path"] = [f">{p}" for p in data["blob/path"]]
    data.save(str(moved))
    (moved.parent / "elsewhere_passthrough_particles.cs").write_bytes(
        (path.parent / "J24_passthrough_particles.cs").read_bytes()
    )
    with pytest.raises(InputError, match="set particles_dir"):
        read_cs(moved)
    records = read_cs(moved, particles_dir=tmp_path / "P1")
    assert records.source == [str(s.resolve()) for s in particles.stacks]


def test_passthrough_must_hold_every_particle(tmp_path, particles):
    path = write_cs(particles, tmp_path / "P1")
    extra = path.parent / "J24_passthrough_particles.cs"
    Dataset.load(str(extra)).take(np.arange(5)).save(str(extra))
    with pytest.raises(InputError, match="has no row for particle uid"):
        read_cs(path)


def test_import_of_a_cs_writes_the_canonical_table(tmp_path, particles):
    path = write_cs(particles, tmp_path / "P1")
    result = import_particles(path, tmp_path / "import", box=16)
    table = load_table(result.table)
    assert result.meta["format"] == "cryosparc" and len(table) == 12
    np.testing.assert_array_equal(table["subset"], np.arange(12) % 2 + 1)
    np.testing.assert_array_equal(table["optics_group"], 1)


def test_cs_subset_keeps_rows_and_fields_and_has_a_group_file(tmp_path, particles):
    path = write_cs(particles, tmp_path / "P1")
    rows = np.array([7, 0, 3])
    out = write_cs_subset(path, rows, tmp_path / "subsets" / "class_01")
    assert out.name == "class_01.cs"
    original, subset = load_particles(path), Dataset.load(str(out))
    assert subset.fields() == original.fields()  # passthrough fields included
    for name in original.fields():
        np.testing.assert_array_equal(subset[name], original[name][rows])
    group = yaml.safe_load(out.with_suffix(".csg").read_text())
    assert group["group"]["type"] == "particle"
    assert set(group["results"]) == {"blob", "alignments3D", "ctf"}
    for prefix, result in group["results"].items():
        assert result == {"metafile": ">class_01.cs", "num_items": 3, "type": f"particle.{prefix}"}
    again = read_cs(out, particles_dir=tmp_path / "P1")
    assert angle_between(again.rotations, particles.R[rows]).max() < 0.01


def test_unreadable_cs_is_named(tmp_path):
    bad = tmp_path / "J1" / "J1_particles.cs"
    bad.parent.mkdir()
    bad.write_text("not numpy")
    with pytest.raises(InputError, match="not a readable cryoSPARC .cs file"):
        read_cs(bad)


def test_class_subsets_of_a_cs_input_are_cs_files_and_star_files(tmp_path, particles):
    """Each class as .cs + .csg (original fields) and as a RELION STAR of the same poses."""
    path = write_cs(particles, tmp_path / "P1")
    imported = load_table(import_particles(path, tmp_path / "import").table)
    landscape = pd.DataFrame({"index": np.arange(12), "cluster": np.arange(12) % 3 - 1})
    table = write_class_subsets(path, landscape, tmp_path / "subsets", {}, imported)
    assert list(table["file"]) == ["class_00.cs", "class_01.cs"]
    assert (tmp_path / "subsets" / "class_01.csg").is_file()
    uids = load_particles(path)["uid"]
    np.testing.assert_array_equal(
        Dataset.load(str(tmp_path / "subsets" / "class_01.cs"))["uid"], uids[2::3]
    )
    star = read_star(tmp_path / "subsets" / "class_01.star")
    assert angle_between(star.rotations, particles.R[2::3]).max() < 0.01
    np.testing.assert_allclose(star.shifts, particles.shifts[2::3], atol=0.01)
    np.testing.assert_allclose(star.ctf["defocus_u"], particles.ctf["defocus_u"][2::3], atol=0.01)
    assert star.source == [str(s.resolve()) for s in particles.stacks[2::3]]


def test_passthrough_is_found_for_the_names_cryosparc_gives(tmp_path):
    job = tmp_path / "J24"
    job.mkdir()
    for name in ("J24_passthrough_particles.cs", "J24_passthrough_particles_selected.cs"):
        (job / name).write_bytes(b"")
    assert passthrough_file(job / "J24_005_particles.cs") == job / "J24_passthrough_particles.cs"
    selected = passthrough_file(job / "J24_particles_selected.cs")
    assert selected == job / "J24_passthrough_particles_selected.cs"
    assert passthrough_file(tmp_path / "alone_particles.cs") is None


def test_higher_order_ctf_terms_are_reported_as_not_modelled(tmp_path, particles, caplog):
    path = write_cs(particles, tmp_path / "P1")
    data = Dataset.load(str(path))
    data.add_fields([("ctf/tilt_A", "f4", (2,)), ("ctf/anisomag", "f4", (4,))])
    data["ctf/tilt_A"] = 0.5
    data["ctf/anisomag"] = 0.0  # what cryoSPARC writes when anisomag was not refined
    data.save(str(path))
    with caplog.at_level("WARNING"):
        read_cs(path)
    assert "ctf/tilt_A not modelled" in caplog.text and "anisomag" not in caplog.text


# The fields and dtypes of a cryoSPARC v2-v4 refinement's particles as NumPy saves them:
# fixed-width byte strings, u8 uids, u4 indices, f4 values, (2,)/(4,) CTF aberration terms.
CS_MAIN = [
    ("uid", "<u8"), ("blob/path", "S64"), ("blob/idx", "<u4"), ("blob/shape", "<u4", (2,)),
    ("blob/psize_A", "<f4"), ("blob/sign", "<f4"), ("blob/import_sig", "<u8"),
    ("alignments3D/split", "<u4"), ("alignments3D/shift", "<f4", (2,)),
    ("alignments3D/pose", "<f4", (3,)), ("alignments3D/psize_A", "<f4"),
    ("alignments3D/error", "<f4"), ("alignments3D/cross_cor", "<f4"),
    ("alignments3D/class_posterior", "<f4"), ("alignments3D/class", "<u4"),
]  # fmt: skip
CS_PASSTHROUGH = [
    ("uid", "<u8"), ("ctf/type", "S9"), ("ctf/exp_group_id", "<u4"), ("ctf/accel_kv", "<f4"),
    ("ctf/cs_mm", "<f4"), ("ctf/amp_contrast", "<f4"), ("ctf/df1_A", "<f4"),
    ("ctf/df2_A", "<f4"), ("ctf/df_angle_rad", "<f4"), ("ctf/phase_shift_rad", "<f4"),
    ("ctf/scale", "<f4"), ("ctf/scale_const", "<f4"), ("ctf/shift_A", "<f4", (2,)),
    ("ctf/tilt_A", "<f4", (2,)), ("ctf/trefoil_A", "<f4", (2,)), ("ctf/tetra_A", "<f4", (4,)),
    ("ctf/anisomag", "<f4", (4,)), ("ctf/bfactor", "<f4"),
]  # fmt: skip


def write_cs_numpy(p, project, main_name, passthrough_name, folder):
    """The particles as np.save'd structured arrays, the way cryoSPARC writes .cs files:
    stacks J12/extract/*_particles.mrc, blob/path b'>J12/...' (imported marker), uids
    above 2**63, the passthrough rows in another order, aberration terms all zero."""
    write_stacks(p, project / "J12" / "extract", n_stacks=2, suffix=".mrc")
    main = np.zeros(p.n, CS_MAIN)
    main["uid"] = np.uint64(2**63) + np.arange(p.n, dtype=np.uint64) * np.uint64(7919)
    main["blob/path"] = [f">{s.relative_to(project)}".encode() for s in p.stacks]
    main["blob/idx"], main["blob/shape"] = p.stack_index, p.images[0].shape
    main["blob/psize_A"], main["blob/sign"] = p.apix, -1.0
    main["alignments3D/split"] = np.arange(p.n) % 2
    main["alignments3D/shift"] = -p.shifts
    main["alignments3D/pose"] = cs_pose(p.R)
    main["alignments3D/psize_A"] = p.apix
    extra = np.zeros(p.n, CS_PASSTHROUGH)
    order = np.arange(p.n)[::-1]
    extra["uid"], extra["ctf/type"] = main["uid"][order], b"imported"
    extra["ctf/exp_group_id"] = 2
    for field, name in (("accel_kv", "voltage"), ("cs_mm", "cs"), ("amp_contrast", "amp_contrast"),
                        ("df1_A", "defocus_u"), ("df2_A", "defocus_v")):  # fmt: skip
        extra[f"ctf/{field}"] = p.ctf[name][order]
    extra["ctf/df_angle_rad"] = np.deg2rad(p.ctf["defocus_angle"][order])
    extra["ctf/scale"] = 1.0
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in ((main_name, main), (passthrough_name, extra)):
        with open(folder / name, "wb") as handle:
            np.save(handle, array)
    return folder / main_name


@pytest.mark.parametrize(
    ("where", "main_name", "passthrough_name"),
    [
        ("P1/J24", "J24_005_particles.cs", "J24_passthrough_particles.cs"),
        ("dl", "cryosparc_P1_J24_005_particles.cs", "cryosparc_P1_J24_passthrough_particles.cs"),
        ("dl", "cryosparc_P1_J24_005_particles.cs", "P1_J24_passthrough_particles.cs"),
    ],
)  # fmt: skip
def test_cs_as_cryosparc_writes_it_and_as_downloaded(
    tmp_path, particles, caplog, where, main_name, passthrough_name
):
    """A refinement's .cs pair in its job folder, or downloaded from the web interface
    (project, job and iteration in the names): poses, shifts, CTF (from the passthrough),
    halves, exposure group and images as written, and no warning for all-zero
    aberration terms (cryoSPARC's values when none was refined)."""
    project = tmp_path / "P1"
    path = write_cs_numpy(particles, project, main_name, passthrough_name, tmp_path / where)
    with caplog.at_level("WARNING"):
        records = read_cs(path, particles_dir=project if where == "dl" else None)
    assert caplog.text == ""
    assert angle_between(records.rotations, particles.R).max() < 0.01
    np.testing.assert_allclose(records.shifts, particles.shifts, atol=1e-5)
    for field in CTF_FIELDS:
        np.testing.assert_allclose(records.ctf[field], particles.ctf[field], rtol=1e-6, atol=1e-3)
    np.testing.assert_array_equal(records.subset, np.arange(12) % 2 + 1)
    np.testing.assert_array_equal(records.optics_group, 3)
    assert records.source == [str(s.resolve()) for s in particles.stacks]
    np.testing.assert_array_equal(records.source_index, particles.stack_index)
    np.testing.assert_allclose(records.apix, APIX)


def test_images_of_an_exported_result_group_are_found_beside_its_cs(tmp_path, particles):
    """An exported group (exports/groups/P1_J24_particles/) holds its .cs with the data
    linked under the same relative names ('>J12/extract/...') beside it."""
    project = tmp_path / "P1"
    export = project / "exports" / "groups" / "P1_J24_particles"
    path = write_cs_numpy(particles, export, "J24_particles_exported.cs",
                          "J24_passthrough_particles_exported.cs", export)  # fmt: skip
    records = read_cs(path)
    assert records.source == [str(s.resolve()) for s in particles.stacks]
    assert str(export) in records.source[0]
    np.testing.assert_array_equal(records.source_index, particles.stack_index)
    for stack in set(particles.stacks):
        stack.unlink()
    with pytest.raises(InputError, match=r"row 0: image file '>J12/extract/stack0\.mrc' not "
                       r"found \(looked for .*groups/J12/extract/stack0\.mrc, .*P1_J24_particles/"
                       r"J12/extract/stack0\.mrc\); expected paths relative to the cryoSPARC "
                       r"project folder \(set particles_dir to it\)"):  # fmt: skip
        read_cs(path)
