"""Bad inputs caught before any job, each with one line naming the key or file and what
was expected; and `gmmscape run`, which keeps tracebacks away from the terminal."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import yaml
from particle_data import make_particles, write_stacks, write_star31

from gmmscape import checks, cli, runner
from gmmscape.errors import InputError

REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())


def write_volume(path: Path, data: np.ndarray) -> Path:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.asarray(data, dtype=np.float32))
        mrc.voxel_size = 2.0
    return path


def blob(box: int = 16) -> np.ndarray:
    z, y, x = np.mgrid[:box, :box, :box] - box / 2
    return np.exp(-(x**2 + y**2 + z**2) / 8.0)


def with_nan(box=16):
    data = blob(box)
    data[1, 2, 3] = data[4, 5, 6] = np.nan
    return data


@pytest.mark.parametrize(
    ("data", "mask", "message"),
    [
        (with_nan(), False, "has 2 non-finite voxels (NaN or infinity), expected finite"),
        (np.zeros((16, 16, 16)), False, "is all zero, expected a density map"),
        (np.zeros((16, 16, 16)), True, "is all zero, expected a mask with a region of 1"),
        (-blob(), False, "has no positive voxel (max -"),
        (0.3 * blob(), True, "has no voxel above 0.5"),
        (np.ones((16, 16)), False, "is a 2D image of 16x16 pixels, expected a 3D map"),
        (np.ones((1, 16, 16)), False, "is a 2D image of 16x16 pixels, expected a 3D map"),
        (blob()[:12], False, "is 12x16x16 voxels, expected a cubic 3D map"),
    ],
    ids=["nan", "zero-map", "zero-mask", "negative", "weak-mask", "2d", "2d-stack", "not-cube"],
)
@pytest.mark.filterwarnings("ignore:Data array contains NaN")
def test_bad_maps_and_masks_say_what_is_wrong(tmp_path, data, mask, message):
    path = write_volume(tmp_path / "v.mrc", data)
    with pytest.raises(InputError, match="^mask: " if mask else "^map: ") as err:
        checks.check_volume("mask" if mask else "map", path, mask=mask)
    assert message in str(err.value) and str(path) in str(err.value)
    assert checks.check_volume("map", write_volume(tmp_path / "ok.mrc", blob())) == (16, 16, 16)


def particles_file(tmp_path, n=24, images=None, apix=None, **star):
    """A RELION 3.1 file of n particles; `apix` replaces the STAR's pixel size only."""
    p = make_particles(n=n, box=16)
    if images is not None:
        p.images = list(images)
    write_stacks(p, tmp_path / "stacks")
    if apix is not None:
        p.apix[:] = apix
    return write_star31(p, tmp_path / "p.star", **star), p


def config(**changes):
    merged = copy.deepcopy(CONFIG)
    for key, value in changes.items():
        section, _, sub = key.partition(".")
        if sub:
            target = merged[section]
            *path, last = sub.split(".")
            for part in path:
                target = target[part]
            target[last] = value
        else:
            merged[key] = value
    return merged


def check(path, **changes):
    checks.check_particles(config(particles=str(path), map="m.mrc", **changes))


def test_good_particles_pass(tmp_path):
    path, _ = particles_file(tmp_path)
    check(path)
    check(path, split=True, **{"landscape.cluster.n_clusters": 8})


@pytest.mark.filterwarnings("ignore:invalid value encountered in divide")  # origins / apix
def test_non_positive_pixel_size_names_the_row(tmp_path):
    for size in (0.0, -8.0):
        path, _ = particles_file(tmp_path, apix=size)
        with pytest.raises(InputError, match=rf"row 0 .*pixel size {size:g} A, expected > 0"):
            check(path)
    check(path, apix=1.5)  # the config's apix overrides the file's


def test_duplicated_star_column_names_both_lines(tmp_path):
    path, _ = particles_file(tmp_path)
    lines = path.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("_rlnAngleTilt"))
    lines.insert(at + 1, "_rlnAngleTilt #99")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"data_particles: column _rlnAngleTilt appears twice"):
        check(path)


def test_one_pose_for_all_particles(tmp_path):
    p = make_particles(n=24, box=16)
    p.R[:] = p.R[0]
    write_stacks(p, tmp_path / "stacks")
    path = write_star31(p, tmp_path / "p.star")
    with pytest.raises(InputError, match="all 24 particles .* have the same orientation"):
        check(path)


@pytest.mark.parametrize("value", [0.0, 3.5])
def test_all_zero_or_constant_stack(tmp_path, value):
    path, _ = particles_file(tmp_path, images=np.full((24, 16, 16), value))
    with pytest.raises(InputError, match=rf"are constant \(e.g. every pixel {value:g}\)"):
        check(path)


def test_counts_against_latent_dimension_classes_and_halves(tmp_path):
    path, _ = particles_file(tmp_path, n=3)
    with pytest.raises(InputError, match="the all run .* has 3 particles, expected at least 10"):
        check(path, split=False)
    path, _ = particles_file(tmp_path, n=24)
    with pytest.raises(InputError, match=r"^particles: the even run .* has 12 particles, .* 13"):
        check(path, split=True, **{"train.latent_dim": 12})
    with pytest.raises(InputError, match="n_clusters: 30 classes asked for, but the all run"):
        check(
            path,
            split=False,
            **{"landscape.cluster.n_clusters": 30, "landscape.cluster.method": "kmeans"},
        )
    check(path, **{"landscape.cluster.n_clusters": 30, "landscape.cluster.method": "bic"})
    check(path, **{"landscape.cluster.n_clusters": 30, "landscape.cluster.method": "auto"})
    path, _ = particles_file(tmp_path, n=24, rlnRandomSubset=np.ones(24, int))
    with pytest.raises(InputError, match=r"half 2 \(odd\) is empty.*split: true needs both"):
        check(path, split=True)
    check(path, split=False)


def test_cluster_space_umap_needs_umap():
    spectral = {"landscape.umap": False, "landscape.cluster.method": "spectral"}
    with pytest.raises(InputError, match="landscape.cluster.space: 'umap' needs landscape.umap"):
        checks.check_config(config(**spectral))
    checks.check_config(config(**spectral, **{"landscape.cluster.space": "pca"}))
    checks.check_config(config(**{"landscape.umap": False, "landscape.cluster.method": "auto"}))


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    gmmscape = str(Path(sys.executable).with_name("gmmscape"))
    return subprocess.run(
        [gmmscape, "run", "--snakefile", str(REPO / "Snakefile"), *args],
        cwd=workdir,
        text=True,
        capture_output=True,
        timeout=300,
    )


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
def test_workflow_stops_at_parse_time_with_one_line(tmp_path):
    path, _ = particles_file(tmp_path)
    write_volume(tmp_path / "m.mrc", with_nan())
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"particles": str(path), "map": "m.mrc"}))
    result = snakemake(tmp_path, "--configfile", "c.yaml")
    assert result.returncode != 0
    assert "map: m.mrc has 2 non-finite voxels" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and 'File "' not in result.stderr
    assert not (tmp_path / "results").exists()


def test_run_names_bad_config_files(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("map: m.mrc\ntrain:\n  epochs: [3\n  lr: 1\n")
    assert cli.main(["run", "--configfile", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"gmmscape run: {tmp_path / 'bad.yaml'} line 4 column 5: YAML syntax")
    assert len(err.splitlines()) == 1
    assert cli.main(["run", "--configfile", "missing.yaml", "-n"]) == 2
    assert capsys.readouterr().err.strip() == (
        "gmmscape run: --configfile: file not found: missing.yaml"
    )


def test_run_ends_a_failed_job_with_one_line(tmp_path):
    """A job raising an unexpected exception: one line names the job, input and log."""
    scripts = REPO / "scripts"
    (tmp_path / "in_a.txt").write_text("x\n")
    (tmp_path / "boom.py").write_text(
        f"import sys\nsys.path.insert(0, {str(scripts)!r})\nfrom rulekit import run\n"
        "def main(smk, progress):\n    {}['missing']\nrun(main)\n"
    )
    (tmp_path / "Snakefile").write_text(
        "rule boom:\n    input: 'in_{x}.txt'\n    output: 'out_{x}.txt'\n"
        "    log: 'logs/boom_{x}.log'\n    script: 'boom.py'\n"
    )
    (tmp_path / ".out_a.txt.x1.tmp").write_text("left by a kill")
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("gmmscape")),
            "run",
            "--cores",
            "1",
            "--show-failed-logs",
            "out_a.txt",
        ],
        cwd=tmp_path,
        text=True,
        capture_output=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert "error in rule boom: unexpected KeyError: 'missing' (input: in_a.txt)" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == "gmmscape run: job boom (x=a) failed; input: in_a.txt; log: logs/boom_a.log"
    assert "Traceback" in (tmp_path / "logs/boom_a.log").read_text()
    assert not (tmp_path / ".out_a.txt.x1.tmp").exists()


def test_run_adds_cores_and_rerun_incomplete():
    command = runner.snakemake_command(["my.yaml"], ["-n"])
    assert "--rerun-incomplete" in command and "--cores" not in command
    command = runner.snakemake_command([], ["target"])
    assert command[command.index("--cores") + 1] == "all" and command[-1] == "target"
    assert "--cores" not in runner.snakemake_command([], ["-c4"])
