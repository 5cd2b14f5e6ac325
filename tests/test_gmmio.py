"""Model writers: text round trip, PDB columns and scale, MRC overlay, FSC plot, atomicity."""

import numpy as np
import pandas as pd
import pytest

from gmmscape import gmmio, plots
from gmmscape.errors import InputError
from gmmscape.io.mrc import read_map

BOX, APIX = 32, 3.5


def model(n=7, seed=0):
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [rng.uniform(-0.3, 0.3, (n, 3)), rng.uniform(0.1, 2.0, n), rng.uniform(0.04, 0.08, n)]
    ).astype(np.float32)


def no_temporaries(folder):
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_text_round_trip_is_exact(tmp_path):
    gmm = model()
    path = tmp_path / "level_1.txt"
    gmmio.write_text(path, gmm, BOX, APIX)
    lines = path.read_text().splitlines()
    assert lines[0] == "# x y z amplitude sigma"
    assert any(line.startswith("# box 32 apix 3.5") for line in lines)
    back, box, apix = gmmio.read_text(path)
    np.testing.assert_array_equal(back, gmm)
    assert (box, apix) == (BOX, APIX)
    assert no_temporaries(tmp_path)


@pytest.mark.parametrize(
    "body, message",
    [
        ("# box 32 apix 1.0\n0 0 0 1\n", "Gaussian 1 has 4 columns"),
        ("0 0 0 1 0.1\n", "box <pixels> apix"),
        ("# box 32 apix 1.0\n0 0 0 1 -0.1\n", "sigma > 0"),
        ("# box 32 apix 1.0\n0 0 zero 1 0.1\n", "numbers"),
    ],
)
def test_bad_text_files_name_the_file(tmp_path, body, message):
    path = tmp_path / "bad.txt"
    path.write_text(body)
    with pytest.raises(InputError, match=message) as err:
        gmmio.read_text(path)
    assert "bad.txt" in str(err.value)


def parse_hetatm(line):
    """The PDB format's fixed columns (1-based, inclusive) of one HETATM record."""
    return {
        "record": line[0:6],
        "serial": int(line[6:11]),
        "name": line[12:16],
        "resname": line[17:20],
        "chain": line[21],
        "resseq": int(line[22:26]),
        "xyz": np.array([float(line[30:38]), float(line[38:46]), float(line[46:54])]),
        "occupancy": float(line[54:60]),
        "bfactor": float(line[60:66]),
        "element": line[76:78],
    }


def test_pdb_columns_and_angstrom_positions(tmp_path):
    gmm = model()
    path = tmp_path / "model.pdb"
    gmmio.write_pdb(path, gmm, BOX, APIX)
    lines = path.read_text().splitlines()
    atoms = [parse_hetatm(line) for line in lines if line.startswith("HETATM")]
    assert lines[-1] == "END" and len(atoms) == len(gmm)
    assert all(len(line) == 80 for line in lines if line.startswith("HETATM"))
    for i, (atom, (x, y, z, amp, sigma)) in enumerate(zip(atoms, gmm, strict=True)):
        assert atom["record"] == "HETATM" and atom["serial"] == i + 1 and atom["resseq"] == i + 1
        assert (atom["name"], atom["resname"], atom["chain"], atom["element"]) == (
            " CA ",
            "GMM",
            "A",
            " C",
        )
        expected = (np.array([x, y, z], dtype=np.float64) * BOX + BOX // 2) * APIX
        np.testing.assert_allclose(atom["xyz"], expected, atol=6e-4)
        assert atom["occupancy"] == pytest.approx(amp / gmm[:, 3].max(), abs=0.006)
        assert atom["bfactor"] == pytest.approx(sigma * BOX * APIX, abs=0.006)


def test_pdb_atom_sits_on_the_density_peak_of_the_mrc(tmp_path):
    """The PDB and the MRC agree on the frame ChimeraX uses: voxel i at i * apix."""
    gmm = np.array([[5 / BOX, -3 / BOX, 7 / BOX, 1.0, 2.0 / BOX]], dtype=np.float32)
    gmmio.write_density(tmp_path / "d.mrc", gmm, BOX, APIX)
    gmmio.write_pdb(tmp_path / "d.pdb", gmm, BOX, APIX)
    vol, apix = read_map(tmp_path / "d.mrc")
    assert apix == pytest.approx(APIX) and vol.shape == (BOX,) * 3
    z, y, x = np.unravel_index(np.argmax(vol), vol.shape)
    atom = parse_hetatm(next(line for line in open(tmp_path / "d.pdb") if line[:6] == "HETATM"))
    np.testing.assert_allclose(atom["xyz"], np.array([x, y, z]) * APIX, atol=1e-3)


def test_fsc_plot_is_a_png(tmp_path):
    shell = np.arange(17)
    with np.errstate(divide="ignore"):
        res = BOX * APIX / shell
    tables = {
        f"N={n}": pd.DataFrame({"shell": shell, "resolution": res, "fsc": np.exp(-shell / s)})
        for n, s in [(16, 5.0), (32, 12.0)]
    }
    path = tmp_path / "fsc.png"
    plots.plot_fsc(path, tables, target_resolution=10.0)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert no_temporaries(tmp_path)


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    def half_then_fail(path, *args, **kwargs):
        open(path, "w").write("# x y z amplitude sigma\n0 0")
        raise KeyboardInterrupt  # as if killed mid-write

    monkeypatch.setattr(gmmio.np, "savetxt", half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        gmmio.write_text(tmp_path / "m.txt", model(), BOX, APIX)
    assert list(tmp_path.iterdir()) == []
