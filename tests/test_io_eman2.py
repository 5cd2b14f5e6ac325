"""EMAN2 .lst + .hdf import: every way EMAN2 writes a pose gives the same rotation and shift."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest
from particle_data import CTF_FIELDS, make_particles, write_stacks, write_star31

from gmmscape.errors import InputError
from gmmscape.geometry import angle_between, matrix_to_eman, matrix_to_relion
from gmmscape.io import read_lst, read_star, write_lst
from gmmscape.io.eman2 import ctf_to_eman2, pose_to_xform
from gmmscape.io.hdf import HdfStack, write_hdf_stack

APIX = 1.5


def matrix_form(R, t):
    return {"xform.projection": pose_to_xform(R, t)}


def brief_matrix_form(R, t):
    m = np.concatenate([R, np.append(t, 0)[:, None]], 1).ravel().tolist()
    return {"xform.projection": {"__class__": "Transform", "transform": m}}


def eman_form(R, t):
    az, alt, phi = matrix_to_eman(R)
    xform = {"type": "eman", "az": az, "alt": alt, "phi": phi, "tx": t[0], "ty": t[1]}
    return {"xform.projection": xform}


def spider_form(R, t):
    rot, tilt, psi = matrix_to_relion(R)
    xform = {"type": "spider", "phi": rot, "theta": tilt, "psi": psi, "tx": t[0], "ty": t[1]}
    return {"xform.projection": xform}


def old_string_form(R, t):
    """EMAN2's printed form of a Transform (3 decimals for angles, 2 for shifts)."""
    az, alt, phi = matrix_to_eman(R)
    return (
        f"Transform({{'az':{az:1.3f},'alt':{alt:1.3f},'phi':{phi:1.3f},'tx':{t[0]:1.2f},"
        f"'ty':{t[1]:1.2f},'tz':0.00,'mirror':0,'scale':1.0000,'type':'eman'}})"
    )


FORMS = [matrix_form, brief_matrix_form, eman_form, spider_form, old_string_form]


@pytest.fixture
def particles(tmp_path):
    """12 particles in two .hdf stacks, each image header holding its EMAN2 CTF."""
    p = make_particles(n=12, apix=APIX)
    p.stacks, p.stack_index = [], np.zeros(p.n, dtype=int)
    for s in range(2):
        members = np.arange(s, p.n, 2)
        path = tmp_path / "particles" / f"mic{s}__ptcls.hdf"
        headers = [
            {"ctf": ctf_to_eman2({f: p.ctf[f][i] for f in CTF_FIELDS}, APIX)} for i in members
        ]
        write_hdf_stack(path, np.stack([p.images[i] for i in members]), APIX, headers)
        p.stack_index[members] = np.arange(len(members))
    p.stacks = [tmp_path / "particles" / f"mic{i % 2}__ptcls.hdf" for i in range(p.n)]
    return p


def write_list(p, path, form, extra=None, base=None):
    """A .lst of the particles; image paths relative to `base` (default: the list's folder)."""
    base = path.parent if base is None else base
    path.parent.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(p.n):
        meta = form(p.R[i], p.shifts[i])
        if isinstance(meta, dict) and extra:
            meta |= extra(i)
        records.append((p.stack_index[i], os.path.relpath(p.stacks[i], base), meta))
    write_lst(path, records)
    return path


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.__name__)
def test_every_pose_form_imports_to_the_same_pose(tmp_path, particles, form):
    records = read_lst(write_list(particles, tmp_path / "sets" / "all.lst", form))
    assert records.format == "eman2"
    assert angle_between(records.rotations, particles.R).max() < 0.01
    atol = 0.006 if form is old_string_form else 1e-9
    np.testing.assert_allclose(records.shifts, particles.shifts, atol=atol)
    np.testing.assert_array_equal(records.source_index, particles.stack_index)
    assert records.source == [str(s.resolve()) for s in particles.stacks]
    np.testing.assert_array_equal(records.apix, APIX)
    np.testing.assert_array_equal(records.box, 32)


def test_image_paths_relative_to_the_project_folder(tmp_path, particles, monkeypatch):
    """EMAN2 writes sets/all.lst with paths like particles/x.hdf, relative to the project."""
    path = write_list(particles, tmp_path / "sets" / "all.lst", eman_form, base=tmp_path)
    assert "\tparticles/mic0__ptcls.hdf\t" in path.read_text()
    monkeypatch.chdir(tmp_path)
    assert read_lst(path).source == [str(s.resolve()) for s in particles.stacks]


def test_lst_and_star_of_the_same_particles_agree(tmp_path, particles):
    lst = read_lst(write_list(particles, tmp_path / "all.lst", matrix_form))
    mrcs = make_particles(n=12, apix=APIX)  # same seed: same poses and CTF
    write_stacks(mrcs, tmp_path / "relion")
    star = read_star(write_star31(mrcs, tmp_path / "p.star"))
    assert angle_between(lst.rotations, star.rotations).max() < 0.01
    np.testing.assert_allclose(lst.shifts, star.shifts, atol=1e-5)
    for field in CTF_FIELDS:  # EMAN2's header CTF carries 8 significant digits
        np.testing.assert_allclose(lst.ctf[field], star.ctf[field], rtol=1e-6, atol=1e-3)


def test_ctf_in_the_record_overrides_the_header(tmp_path, particles):
    def ctf(i):
        return {
            "ctf": {
                "__class__": "EMAN2Ctf",
                "defocus": 2.0,
                "dfdiff": 0.1,
                "dfang": 30.0,
                "bfactor": 50.0,
                "ampcont": 7.0,
                "voltage": 200.0,
                "cs": 2.0,
                "apix": APIX,
                "dsbg": 0.01,
                "background": [],
                "snr": [],
            }  # fmt: skip
        }

    records = read_lst(write_list(particles, tmp_path / "a.lst", matrix_form, extra=ctf))
    expected = dict(defocus_u=20500.0, defocus_v=19500.0, defocus_angle=30.0, voltage=200.0)
    expected |= dict(cs=2.0, amp_contrast=0.07, phase_shift=0.0, bfactor=0.0)
    for field, value in expected.items():
        np.testing.assert_allclose(records.ctf[field], value)


def test_without_ctf_the_ctf_is_unknown(tmp_path):
    p = make_particles(n=4, apix=APIX)
    write_hdf_stack(tmp_path / "s.hdf", np.stack(p.images), APIX)
    p.stacks, p.stack_index = [tmp_path / "s.hdf"] * 4, np.arange(4)
    records = read_lst(write_list(p, tmp_path / "a.lst", spider_form))
    assert all(np.isnan(records.ctf[f]).all() for f in CTF_FIELDS)


def test_class_key_gives_even_odd(tmp_path, particles):
    path = write_list(particles, tmp_path / "a.lst", eman_form, extra=lambda i: {"class": i % 2})
    np.testing.assert_array_equal(read_lst(path).subset, np.arange(12) % 2 + 1)
    assert (read_lst(write_list(particles, tmp_path / "b.lst", eman_form)).subset == 0).all()


def test_lst_layout_is_fixed_length(tmp_path, particles):
    path = write_list(particles, tmp_path / "a.lst", matrix_form)
    lines = path.read_text().split("\n")
    assert lines[0] == "#LSX" and lines[1].startswith("#")
    width = int(lines[2].lstrip("# "))
    assert all(len(line) + 1 == width for line in lines[3:-1]) and lines[-1] == ""
    index, source, meta = lines[3].rstrip().split("\t")
    assert (int(index), source) == (0, "particles/mic0__ptcls.hdf")
    assert json.loads(meta)["xform.projection"]["__class__"] == "Transform"


def test_hdf_stack_reads_images_lazily_and_undoes_compression(tmp_path, particles):
    stack = HdfStack(particles.stacks[1])
    assert (stack.n, stack.box, stack.apix) == (6, 32, APIX)
    np.testing.assert_array_equal(
        stack.read([2, 0]), np.stack([particles.images[5], particles.images[1]])
    )
    path = tmp_path / "compressed.hdf"
    with h5py.File(path, "w") as f:  # how EMAN2's write_compressed stores 8-bit data
        g = f.create_group("MDF/images/0")
        g.create_dataset("image", data=np.array([[0, 255], [51, 102]], dtype=np.uint8))
        g.attrs.update({"EMAN.stored_renderbits": 8, "EMAN.stored_rendermin": -1.0})
        g.attrs["EMAN.stored_rendermax"] = 4.0
    np.testing.assert_allclose(HdfStack(path).read([0])[0], [[-1.0, 4.0], [0.0, 1.0]], atol=1e-6)


def test_non_rotation_matrix_is_refused(tmp_path, particles):
    def mirrored(R, t):
        return matrix_form(R * np.array([1, 1, -1]), t)

    with pytest.raises(InputError, match=r"a\.lst record 0 \(line 4\).*not a rotation"):
        read_lst(write_list(particles, tmp_path / "a.lst", mirrored))


def one_stack(tmp_path, n=2, name="ptcls.hdf", header=None):
    """n particles in one .hdf stack, every image with the same extra header."""
    p = make_particles(n=n, apix=APIX)
    write_hdf_stack(tmp_path / name, np.stack(p.images), APIX, [header or {}] * n)
    p.stacks, p.stack_index = [tmp_path / name] * n, np.arange(n)
    return p


@pytest.mark.parametrize(
    ("name", "header", "state"),
    [
        ("ptcls.hdf", {}, "raw"),
        ("ptcls.hdf", {"ctf_phase_flipped": 1}, "flipped"),
        ("mic__ctf_flip.hdf", {}, "flipped"),
        ("mic__ctf_flip.hdf", {"ctf_phase_flipped": 0}, "raw"),
    ],
)
def test_flip_markers_header_flag_or_ctf_flip_stack_name(tmp_path, name, header, state):
    """EMAN2 marks phase-flipped images with the header flag ctf_phase_flipped, or (without
    the flag) by the stack name '__ctf_flip'; the flag wins over the name."""
    p = one_stack(tmp_path, name=name, header=header)
    assert list(read_lst(write_list(p, tmp_path / "a.lst", matrix_form)).ctf_state) == [state] * 2


def test_apix_override_is_noted(tmp_path):
    records = read_lst(write_list(one_stack(tmp_path), tmp_path / "a.lst", matrix_form), apix=1.25)
    np.testing.assert_array_equal(records.apix, 1.25)
    assert records.notes == [f"apix 1.25 A replaces the pixel size the input states ({APIX:g} A)"]
