"""Pre-flight convention check on simulated data: the right conventions pass, and each
planted mistake (in the imported table or stack) is named with the key that fixes it."""

from __future__ import annotations

import dataclasses
import json

import mrcfile
import numpy as np
import pytest
from particle_data import make_particles, write_stacks, write_star31

from gmmscape.cli import main
from gmmscape.errors import InputError
from gmmscape.images import cropped_source
from gmmscape.importer import import_particles, load_table
from gmmscape.io import read_map, read_star
from gmmscape.io.conventions import correct_conventions
from gmmscape.io.mrc import MrcStack
from gmmscape.preflight import check_conventions, map_at_box, run_check
from gmmscape.simulate import simulate
from gmmscape.table import ROTATION_COLUMNS

BOX = 32


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """1000 noise-free particles at box 32, 2.5 A/pixel: CTF zeros inside the band."""
    root = tmp_path_factory.mktemp("preflight")
    paths = simulate("composition", root / "sim", per_state=50, box=BOX, apix=2.5, snr=None, seed=1)
    result = import_particles(paths["particles"], root / "import")
    table = load_table(result.table)
    source = cropped_source(result.stack, result.meta)
    reference = map_at_box(read_map(paths["consensus"])[0], BOX)
    return paths, result, table, source, reference


def judge(data, table=None, source=None, reference=None):
    paths, result, table0, source0, reference0 = data
    return check_conventions(
        table0 if table is None else table,
        source0 if source is None else source,
        reference0 if reference is None else reference,
        meta=result.meta,
        n_particles=1000,
    )


def test_right_conventions_pass_with_their_expected_agreement(data, tmp_path):
    paths, result, *_ = data
    lines = []
    verdict = run_check(
        result.table.parent, paths["consensus"], tmp_path / "preflight.json", log=lines.append
    )
    assert lines[-1] == verdict.message and any("transposed rotations" in x for x in lines)
    assert verdict.ok and verdict.verdict == "pass", verdict.message
    assert verdict.scores["stated"] > 0.8
    assert verdict.scores["stated"] >= 0.9 * verdict.expected
    for name, score in verdict.scores.items():
        if name != "stated":
            assert score < verdict.scores["stated"] - 0.2, name
    report = json.loads((tmp_path / "preflight.json").read_text())
    assert report["verdict"] == "pass" and report["n_particles"] == 1000
    assert set(report["scores"]) == set(verdict.scores)
    assert (tmp_path / "preflight.png").stat().st_size > 0


def test_transposed_rotations_are_named(data):
    table = data[2].copy()
    R = table[ROTATION_COLUMNS].to_numpy().reshape(-1, 3, 3)
    table[ROTATION_COLUMNS] = R.transpose(0, 2, 1).reshape(-1, 9)
    verdict = judge(data, table=table)
    assert verdict.verdict == "transposed_rotations"
    assert "conventions.transpose_rotations: true" in verdict.message


def test_negated_shifts_are_named(data):
    table = data[2].copy()
    table[["shift_x", "shift_y"]] *= -1
    verdict = judge(data, table=table)
    assert verdict.verdict == "negated_shifts"
    assert "conventions.negate_shifts: true" in verdict.message


def test_inverted_contrast_is_named(data):
    source = data[3]
    inverted = dataclasses.replace(source, read=lambda rows: -source.read(rows))
    verdict = judge(data, source=inverted)
    assert verdict.verdict == "inverted_contrast"
    assert "conventions.invert_contrast: true" in verdict.message


def test_double_flip_is_named(data):
    """Already flipped images flipped again are the raw images: the stack as stored."""
    paths, _, _, source, _ = data
    raw = MrcStack(paths["stack"])
    twice = dataclasses.replace(source, read=lambda rows: raw.read(rows["source_index"].to_numpy()))
    verdict = judge(data, source=twice)
    assert verdict.verdict == "double_flip"
    assert "phase_flipped: true" in verdict.message
    assert "\n" not in verdict.message


def test_wrong_hand_and_a_wrong_map_are_named(data):
    reference = data[4]
    mirrored = judge(data, reference=np.roll(reference[::-1], 1, axis=0))
    assert mirrored.verdict == "wrong_hand" and "map" in mirrored.message
    shifted = judge(data, reference=np.roll(reference, 5, axis=2))
    assert shifted.verdict == "worse_than_expected" and "apix" in shifted.message


def test_map_of_another_box_is_an_input_error(data):
    with pytest.raises(InputError, match="map box"):
        judge(data, reference=np.zeros((16, 16, 16)))


def blob(box: int, sigma: float, centre: np.ndarray) -> np.ndarray:
    zz, yy, xx = np.mgrid[:box, :box, :box] - box // 2
    d2 = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (zz - centre[2]) ** 2
    return np.exp(-d2 / (2 * sigma**2))


def test_map_at_box_samples_the_same_extent():
    """A Gaussian 3 px wide at box 32 is the same Gaussian, 1.5 px wide, at box 16."""
    centre = np.array([2.0, -4.0, 1.0])
    cropped = map_at_box(blob(32, 3.0, centre), 16)
    np.testing.assert_allclose(cropped, blob(16, 1.5, centre / 2), atol=1e-4)
    np.testing.assert_allclose(map_at_box(cropped, 32), blob(32, 3.0, centre), atol=1e-3)


def test_convention_corrections_undo_the_named_mistakes(tmp_path):
    p = make_particles(n=6, apix=1.5)
    write_stacks(p, tmp_path / "Extract")
    star = write_star31(p, tmp_path / "p.star")
    records = read_star(star)
    fixed = correct_conventions(records, transpose_rotations=True, negate_shifts=True)
    np.testing.assert_allclose(fixed.rotations, p.R.transpose(0, 2, 1), atol=1e-6)
    np.testing.assert_allclose(fixed.shifts, -p.shifts, atol=1e-6)
    plain = import_particles(star, tmp_path / "plain")
    inverted = import_particles(star, tmp_path / "inv", conventions={"invert_contrast": True})
    np.testing.assert_allclose(mrcfile.read(inverted.stack), -mrcfile.read(plain.stack), atol=1e-5)
    np.testing.assert_allclose(load_table(inverted.table)["phase_shift"], 180.0)


def test_failing_check_stops_with_one_line_and_keeps_its_report(data, tmp_path):
    paths, result, table, *_ = data
    folder = tmp_path / "import"
    folder.mkdir()
    for name in ("stack.mrcs", "meta.json"):
        (folder / name).symlink_to(result.table.parent / name)
    flipped = table.copy()
    flipped[["shift_x", "shift_y"]] *= -1
    flipped.to_csv(folder / "particles.csv", index=False)
    with pytest.raises(InputError, match="negated shifts") as err:
        run_check(folder, paths["consensus"], tmp_path / "preflight.json", log=lambda _: None)
    assert "\n" not in str(err.value)
    assert json.loads((tmp_path / "preflight.json").read_text())["verdict"] == "negated_shifts"


def test_import_command_runs_the_check(data, tmp_path, capsys):
    paths = data[0]
    out = tmp_path / "import"
    code = main(
        [
            "import",
            str(paths["particles"]),
            "--out",
            str(out),
            "--map",
            str(paths["consensus"]),
            "--check",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert json.loads((out / "preflight.json").read_text())["verdict"] == "pass"
    assert "preflight: conventions agree" in capsys.readouterr().out
    assert main(["import", str(paths["particles"]), "--out", str(out), "--check"]) == 2
    assert "--check: needs the consensus map (--map)" in capsys.readouterr().err


def test_contrast_inversion_of_flipped_images_is_refused(tmp_path):
    p = make_particles(n=4, apix=1.5)
    write_stacks(p, tmp_path / "Extract")
    star = write_star31(p, tmp_path / "p.star")
    with pytest.raises(InputError, match="invert_contrast needs raw images"):
        import_particles(
            star, tmp_path / "imp", phase_flipped=True, conventions={"invert_contrast": True}
        )
