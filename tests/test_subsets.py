"""Class subsets in the user's format: every original column and row back, RELION 3.1 form."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import starfile

from gmmscape.errors import InputError
from gmmscape.io.eman2 import write_lst
from gmmscape.subsets import lst_subset, write_class_subsets, write_subset

META = {"apix_original": 1.25, "box_original": 64}


def particle_table(n: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "rlnImageName": [f"{i + 1:06d}@Extract/job007/mic{i % 3}.mrcs" for i in range(n)],
            "rlnMicrographName": [f"MotionCorr/mic{i % 3}.mrc" for i in range(n)],
            "rlnCoordinateX": rng.uniform(0, 4000, n).round(2),
            "rlnAngleRot": rng.uniform(-180, 180, n).round(6),
            "rlnAngleTilt": rng.uniform(0, 180, n).round(6),
            "rlnAnglePsi": rng.uniform(-180, 180, n).round(6),
            "rlnDefocusU": rng.uniform(8000, 25000, n).round(6),
            "rlnClassNumber": rng.integers(1, 4, n),
            "rlnRandomSubset": np.arange(n) % 2 + 1,
            "rlnGroupName": [f"group_{i % 2}" for i in range(n)],
        }
    )


def assert_same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want)
    for column in want.columns:
        if pd.api.types.is_numeric_dtype(want[column]):
            np.testing.assert_allclose(got[column], want[column], atol=1e-6, err_msg=column)
        else:
            assert got[column].astype(str).tolist() == want[column].astype(str).tolist(), column


@pytest.fixture
def star31(tmp_path):
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": [1, 2],
            "rlnOpticsGroupName": ["opticsGroup1", "opticsGroup2"],
            "rlnVoltage": [300.0, 300.0],
            "rlnSphericalAberration": [2.7, 2.7],
            "rlnAmplitudeContrast": [0.1, 0.1],
            "rlnImagePixelSize": [1.25, 1.25],
            "rlnImageSize": [64, 64],
            "rlnImageDimensionality": [2, 2],
        }
    )
    particles = particle_table()
    particles["rlnOriginXAngst"] = np.linspace(-3, 3, len(particles)).round(6)
    particles["rlnOpticsGroup"] = np.arange(len(particles)) % 2 + 1
    path = tmp_path / "run_data.star"
    starfile.write({"optics": optics, "particles": particles}, path)
    return path, optics, particles


def test_star_subset_keeps_every_column_row_and_the_optics_table(star31, tmp_path):
    path, optics, particles = star31
    out = write_subset(path, np.array([1, 4, 9]), tmp_path / "out" / "class_00", META)
    assert out.name == "class_00.star"
    back = starfile.read(out, always_dict=True)
    assert_same_rows(back["optics"], optics)
    assert_same_rows(back["particles"], particles.iloc[[1, 4, 9]].reset_index(drop=True))


def test_relion30_star_becomes_a_31_star_with_optics_and_angstrom_origins(tmp_path):
    particles = particle_table()
    particles["rlnOriginX"] = np.linspace(-2, 2, len(particles)).round(4)
    particles["rlnOriginY"] = 0.5
    particles["rlnVoltage"] = np.where(np.arange(len(particles)) < 6, 300.0, 200.0)
    particles["rlnSphericalAberration"] = 2.7
    particles["rlnAmplitudeContrast"] = 0.1
    particles["rlnMagnification"] = 10000.0
    particles["rlnDetectorPixelSize"] = 1.25
    path = tmp_path / "relion30.star"
    starfile.write(particles, path)
    rows = np.array([0, 5, 6, 11])
    back = starfile.read(write_subset(path, rows, tmp_path / "class_01", META), always_dict=True)
    optics, got = back["optics"], back["particles"]
    assert optics["rlnVoltage"].tolist() == [300.0, 200.0]
    assert optics["rlnImagePixelSize"].tolist() == [1.25, 1.25]
    assert optics["rlnImageSize"].tolist() == [64, 64]
    assert got["rlnOpticsGroup"].tolist() == [1, 1, 2, 2]
    want = particles.iloc[rows].reset_index(drop=True)
    np.testing.assert_allclose(got["rlnOriginXAngst"], want["rlnOriginX"] * 1.25, atol=1e-6)
    kept = [c for c in particle_table().columns]
    assert_same_rows(got[kept], want[kept])
    assert not {"rlnOriginX", "rlnVoltage", "rlnMagnification"} & set(got.columns)


def test_class_subsets_split_the_assigned_particles(star31, tmp_path):
    path, _, particles = star31
    landscape = pd.DataFrame(
        {"index": [7, 0, 3, 5, 11, 2], "cluster": [1, 0, 1, -1, 0, 0], "z0": np.zeros(6)}
    )
    table = write_class_subsets(path, landscape, tmp_path / "subsets", META)
    assert table.to_dict("list") == {
        "cluster": [0, 1],
        "particles": [3, 2],
        "file": ["class_00.star", "class_01.star"],
    }
    for k, rows in ((0, [0, 2, 11]), (1, [3, 7])):
        got = starfile.read(tmp_path / "subsets" / f"class_{k:02d}.star")["particles"]
        assert_same_rows(got, particles.iloc[rows].reset_index(drop=True))


def test_eman2_subset_is_a_lst_with_verbatim_records(tmp_path):
    records = [
        (
            i,
            "particles/stack.hdf",
            {"xform.projection": {"type": "eman", "az": float(i)}, "score": -i},
        )
        for i in range(5)
    ]
    write_lst(tmp_path / "sets" / "all.lst", records)
    out = write_subset(tmp_path / "sets" / "all.lst", np.array([4, 1]), tmp_path / "class_00", META)
    assert out.suffix == ".lst"
    got = lst_subset(out, np.arange(2))
    original = lst_subset(tmp_path / "sets" / "all.lst", np.array([4, 1]))
    assert got == original
    assert got[0][0] == 4 and got[0][1] == str((tmp_path / "sets/particles/stack.hdf").resolve())
    assert '"score":-4' in got[0][2]


def test_subset_rows_outside_the_file_are_input_errors(star31, tmp_path):
    path, _, _ = star31
    with pytest.raises(InputError, match="index 12"):
        write_subset(path, np.array([0, 12]), tmp_path / "bad", META)
