"""STAR round trip: the simulator's output re-imports to the poses and CTF it was made with."""

import json

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from gmmscape.ctf import CTFParams, phase_flip
from gmmscape.geometry import angle_between, relion_to_matrix
from gmmscape.importer import import_particles, load_table, table_poses
from gmmscape.simulate import clean_particles, simulate

BOX, APIX = 32, 4.5


@pytest.fixture(scope="module")
def roundtrip(tmp_path_factory):
    sim = simulate(
        "composition", tmp_path_factory.mktemp("sim"), per_state=3, box=BOX, apix=APIX, snr=None
    )
    imported = import_particles(
        sim["particles"], tmp_path_factory.mktemp("import"), map_path=sim["consensus"]
    )
    return sim, imported


def test_poses_shifts_and_ctf_survive_the_round_trip(roundtrip):
    sim, imported = roundtrip
    star = starfile.read(sim["particles"], always_dict=True)["particles"]
    table = load_table(imported.table)
    assert len(table) == len(star)
    np.testing.assert_array_equal(table["index"], np.arange(len(star)))
    R, shift = table_poses(table, BOX)
    R_star = relion_to_matrix(star["rlnAngleRot"], star["rlnAngleTilt"], star["rlnAnglePsi"])
    assert angle_between(R, R_star).max() < 0.01
    origin = star[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy() / APIX
    np.testing.assert_allclose(shift, -origin, atol=1e-6)
    for field, column in [
        ("defocus_u", "rlnDefocusU"),
        ("defocus_v", "rlnDefocusV"),
        ("defocus_angle", "rlnDefocusAngle"),
    ]:
        np.testing.assert_allclose(table[field], star[column], atol=1e-6)
    assert (table["voltage"] == 300).all() and (table["cs"] == 2.7).all()
    assert (table["amp_contrast"] == 0.1).all()
    np.testing.assert_array_equal(table["subset"], star["rlnRandomSubset"])
    meta = json.loads((imported.table.parent / "meta.json").read_text())
    assert (meta["box"], meta["apix"], meta["format"]) == (BOX, APIX, "relion31")


def test_imported_poses_and_ctf_reproduce_the_particles(roundtrip):
    """Re-projecting the true GMMs with the imported table gives back the particles."""
    sim, imported = roundtrip
    table = load_table(imported.table)
    truth = pd.read_csv(sim["ground_truth"])
    gmms = np.stack(
        [
            np.load(sim["truth_gmm"] / f"state_{s:03d}_c{c}.npy")
            for s, c in zip(truth["state"], truth["composition"], strict=True)
        ]
    )
    R, shift = table_poses(table, BOX)
    ctf = CTFParams.from_table(table)
    expected = clean_particles(gmms, R, shift, ctf, BOX, APIX)
    original = mrcfile.read(sim["stack"])
    assert np.abs(original - expected).max() < 1e-4 * np.abs(expected).max()
    flipped = mrcfile.read(imported.stack)
    np.testing.assert_allclose(flipped, phase_flip(original, ctf, APIX), atol=1e-4)
