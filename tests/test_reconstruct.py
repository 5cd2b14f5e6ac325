"""Direct Fourier reconstruction against the projector and the simulator's true maps."""

from __future__ import annotations

import mrcfile
import numpy as np
import pandas as pd
import pytest

from gmmscape.ctf import CTFParams, ctf_2d
from gmmscape.errors import InputError
from gmmscape.fourier import to_real
from gmmscape.fsc import fsc_table
from gmmscape.geometry import random_rotations
from gmmscape.images import ImageSource, cropped_source, original_source
from gmmscape.importer import import_particles, load_meta, load_table
from gmmscape.io.mrc import read_map
from gmmscape.projection import FourierGrid, density, project_ft
from gmmscape.reconstruct import (
    FourierVolume,
    half_labels,
    reconstruct_classes,
    reconstruct_sets,
    reconstruct_with_halves,
    table_rows,
)
from gmmscape.scatter import gather, write_part_table
from gmmscape.simulate import simulate
from gmmscape.table import ROTATION_COLUMNS


def min_fsc_to(rec: np.ndarray, true: np.ndarray, apix: float, fraction: float = 2 / 3) -> float:
    """Lowest FSC over shells 1 .. fraction * Nyquist."""
    table = fsc_table(rec, true, apix)
    top = int(fraction * rec.shape[0] // 2)
    return float(table["fsc"].iloc[1 : top + 1].min())


def asymmetric_gmm(rng: np.random.Generator, n: int = 30) -> np.ndarray:
    return np.column_stack(
        [
            rng.uniform(-0.25, 0.25, (n, 3)),
            rng.uniform(0.3, 1.0, n),
            rng.uniform(0.035, 0.06, n),
        ]
    ).astype(np.float32)


def memory_source(images: np.ndarray, apix: float, images_ctf: str) -> ImageSource:
    return ImageSource(
        images.shape[-1],
        apix,
        images_ctf,
        lambda rows: rows[["shift_x", "shift_y"]].to_numpy(np.float64),
        lambda rows: images[rows["stack_index"].to_numpy()],
    )


def pose_table(R: np.ndarray, shifts: np.ndarray, ctf: CTFParams) -> pd.DataFrame:
    n = len(R)
    table = pd.DataFrame(R.reshape(n, 9), columns=ROTATION_COLUMNS)
    table["shift_x"], table["shift_y"] = shifts.T
    for f in CTFParams.__dataclass_fields__:
        table[f] = np.broadcast_to(getattr(ctf, f), n)
    table["stack_index"] = np.arange(n)
    table["index"] = np.arange(n)
    table["subset"] = np.arange(n) % 2 + 1
    return table


@pytest.fixture(scope="module")
def projections():
    """Noise-free CTF-modulated projections of an asymmetric GMM, raw and phase-flipped."""
    rng = np.random.default_rng(5)
    box, apix, n = 32, 3.0, 300
    gmm = asymmetric_gmm(rng)
    R, shifts = random_rotations(n, rng), rng.uniform(-2.5, 2.5, (n, 2))
    defocus = rng.uniform(8000, 20000, n)
    ctf = CTFParams(defocus + 150, defocus - 150, rng.uniform(0, 180, n), 300.0, 2.7, 0.1)
    re, im = project_ft(gmm, R.astype(np.float32), shifts.astype(np.float32), FourierGrid(box))
    c = ctf_2d(ctf, box, apix)
    ft = (re.numpy() + 1j * im.numpy()) * c
    raw, flipped, premultiplied = (to_real(ft * f, box) for f in (1, np.sign(c), c))
    return dict(
        gmm=gmm, box=box, apix=apix, table=pose_table(R, shifts, ctf), raw=raw, flipped=flipped,
        premultiplied=premultiplied, no_ctf=to_real(re.numpy() + 1j * im.numpy(), box),
    )  # fmt: skip


@pytest.mark.parametrize("interpolation", ["trilinear", "nearest"])
@pytest.mark.parametrize("kind", ["flipped", "raw", "premultiplied"])
def test_reconstruction_matches_the_projected_gmm(projections, interpolation, kind):
    """Pose, shift and CTF conventions agree with the projector: the reconstruction of the
    projections is the GMM's density, and not its mirror image."""
    p = projections
    source = memory_source(p[kind], p["apix"], kind)
    (volume,) = reconstruct_sets(
        p["table"], source, [np.arange(len(p["table"]))], chunk=64, interpolation=interpolation
    )
    rec, true = volume.volume(), density(p["gmm"], p["box"])
    assert min_fsc_to(rec, true, p["apix"]) >= 0.95
    assert fsc_table(rec, true[::-1], p["apix"])["fsc"].iloc[3:10].mean() < 0.5
    assert rec.sum() == pytest.approx(true.sum(), rel=0.2)  # the projections' scale, not b x


def test_particles_without_ctf_are_taken_as_they_are(projections):
    """An EMAN2 list without CTF (phase_flipped: true): CTF NaN in the table, weight 1."""
    p = projections
    table = p["table"].assign(**{f: np.nan for f in CTFParams.__dataclass_fields__})
    source = memory_source(p["no_ctf"], p["apix"], "flipped")
    (volume,) = reconstruct_sets(table, source, [np.arange(len(table))], chunk=100)
    assert min_fsc_to(volume.volume(), density(p["gmm"], p["box"]), p["apix"]) >= 0.95


def test_half_sums_add_up_to_the_full_reconstruction(projections):
    p = projections
    source = memory_source(p["flipped"], p["apix"], "flipped")
    rows = np.arange(len(p["table"]))
    full, first, second = reconstruct_sets(
        p["table"], source, [rows, rows[rows % 2 == 0], rows[rows % 2 == 1]], chunk=50
    )
    both = first + second
    np.testing.assert_allclose(
        both.numerator, full.numerator, atol=1e-9 * abs(full.numerator).max()
    )
    np.testing.assert_allclose(both.normaliser, full.normaliser, rtol=1e-9, atol=1e-12)
    assert both.count == full.count == len(rows)


def test_half_labels_use_the_subsets_or_alternate():
    np.testing.assert_array_equal(half_labels(np.array([2, 1, 1, 2])), [2, 1, 1, 2])
    np.testing.assert_array_equal(half_labels(np.array([1, 1, 1])), [1, 2, 1])


def test_empty_reconstruction_and_unknown_particles_are_input_errors(projections):
    with pytest.raises(InputError, match="no particles"):
        FourierVolume.empty(16).volume()
    with pytest.raises(InputError, match="index 999"):
        table_rows(projections["table"], np.array([0, 999]))


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """Noise-free simulated particles (linear system, box 48) imported at box 32."""
    root = tmp_path_factory.mktemp("sim")
    paths = simulate("linear", root / "data", per_state=80, box=48, apix=4.0, snr=None, seed=2)
    import_particles(paths["particles"], root / "import", box=32)
    return paths, root / "import"


def test_reconstruction_of_one_simulated_state_reproduces_its_true_map(simulated, tmp_path):
    """Noise-free particles of one state with CTF, phase-flipped by the import,
    give the true map to FSC >= 0.9 up to 2/3 Nyquist, at the training box and at the
    original box (from the original, unflipped images)."""
    paths, import_dir = simulated
    table, meta = load_table(import_dir / "particles.csv"), load_meta(import_dir / "meta.json")
    truth = pd.read_csv(paths["ground_truth"])
    landscape = pd.DataFrame(
        {"index": truth["index"], "cluster": np.where(truth["state"] == 0, 0, -1)}
    )
    summary, _ = reconstruct_classes(
        landscape, table, cropped_source(import_dir / "stack.mrcs", meta), tmp_path
    )
    rec, apix = read_map(tmp_path / "class_00.mrc")
    assert apix == pytest.approx(meta["apix"]) == pytest.approx(6.0)
    assert summary["particles"].tolist() == [80]
    true_gmm = np.load(paths["truth_gmm"] / "state_000.npy")
    assert min_fsc_to(rec, density(true_gmm, 32), apix) >= 0.9
    for name in ("class_00_half1.mrc", "class_00_half2.mrc", "class_00_fsc.csv"):
        assert (tmp_path / name).is_file()

    rows = table_rows(table, truth["index"][truth["state"] == 0])
    (result,) = reconstruct_with_halves(table, original_source(table), [rows])
    true_map, true_apix = read_map(paths["states"] / "state_000.mrc")
    assert result.full.shape == true_map.shape and true_apix == 4.0
    assert min_fsc_to(result.full, true_map, true_apix) >= 0.9
    with mrcfile.open(tmp_path / "class_00_half1.mrc") as mrc:
        assert float(mrc.voxel_size.x) == pytest.approx(6.0)


def test_classes_made_by_several_jobs_and_gathered_equal_those_of_one_job(simulated, tmp_path):
    """Three classes (one of them a single particle, skipped) made by three scatter jobs
    and gathered: the same files with the same values, bit for bit, and the same class
    table as one job; the job left without a class still writes its (empty) table."""
    paths, import_dir = simulated
    table, meta = load_table(import_dir / "particles.csv"), load_meta(import_dir / "meta.json")
    source = cropped_source(import_dir / "stack.mrcs", meta)
    truth = pd.read_csv(paths["ground_truth"])
    landscape = pd.DataFrame({"index": truth["index"], "cluster": truth["state"] % 3})
    landscape.loc[landscape["cluster"] == 2, "cluster"] = [2] + [0] * (
        int((landscape["cluster"] == 2).sum()) - 1
    )
    one, _ = reconstruct_classes(landscape, table, source, tmp_path / "one")
    assert one["cluster"].tolist() == [0, 1]
    parts = [tmp_path / f"part_{p}" for p in range(3)]
    for p, folder in enumerate(parts):
        summary, _ = reconstruct_classes(landscape, table, source, folder, part=(p, 3))
        assert summary["cluster"].tolist() == ([[0], [1], []][p])
        write_part_table(summary, summary["cluster"], folder)
    gathered = gather(parts, tmp_path / "gathered")
    pd.testing.assert_frame_equal(gathered, one)
    names = sorted(f.name for f in (tmp_path / "one").iterdir())
    assert names == sorted(f.name for f in (tmp_path / "gathered").iterdir())
    assert len(names) == 8  # map, two half maps, FSC table per class
    for name in names:  # an MRC header's only difference is its creation time
        one_file, gathered_file = tmp_path / "one" / name, tmp_path / "gathered" / name
        if name.endswith(".mrc"):
            np.testing.assert_array_equal(read_map(one_file)[0], read_map(gathered_file)[0])
        else:
            assert one_file.read_bytes() == gathered_file.read_bytes()
