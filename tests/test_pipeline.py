"""The Snakemake workflow, run through the `snakemake` command as a user would.

Every run uses the repository's Snakefile with a temporary working directory
(`--directory`), so tests never touch the repository's results or `.snakemake`.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import tomllib
import yaml
from workflow import LOCAL_RULES, REPO, TINY, planned_jobs, snakemake, write_config

from gmmscape import choices, resources

USER_DATA = {"particles": "p.star", "map": "m.mrc", "box": 16}  # made by the config error test


def write_mrc(path: Path, box: int, apix: float = 2.0) -> str:
    """A cubic map of positive density (a box of 1s with a peak)."""
    data = np.ones((box, box, box), dtype=np.float32)
    data[box // 2, box // 2, box // 2] = 2.0
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = apix
    return str(path)


def schema_defaults(schema: dict) -> dict:
    """The config that the schema's defaults alone give."""
    return {
        key: schema_defaults(sub)
        if sub.get("type") == "object" and "properties" in sub
        else sub["default"]
        for key, sub in schema["properties"].items()
    }


def test_lint_is_clean(tmp_path):
    result = snakemake(tmp_path, "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_schema_defaults_are_config_yaml():
    """A key missing from every config file gets the value config.yaml documents."""
    schema = yaml.safe_load((REPO / "schemas/config.schema.yaml").read_text())
    assert schema_defaults(schema) == yaml.safe_load((REPO / "config.yaml").read_text())


def test_conda_env_lists_the_package_dependencies():
    """envs/gmmscape.yaml installs what pyproject.toml needs (snakemake runs outside jobs)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {dep for dep in project["dependencies"] if not dep.startswith("snakemake")}
    env = yaml.safe_load((REPO / "envs/gmmscape.yaml").read_text())
    pip = next(dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict))
    assert set(pip) == wanted
    assert "python=3.11" in env["dependencies"]


def test_slurm_dry_run_plans_every_job_with_resources(tmp_path):
    """A partial --configfile merges over config.yaml; the SLURM profile plans every job.

    The file sets only split, gpu and gmm.start_n/target_n (start_resolution and the
    rest are derived), so the build has two levels, for each of the three halves; only
    the GPU-capable rules ask for the GPU.
    """
    config = write_config(
        tmp_path, {"split": True, "gpu": 1, "gmm": {"start_n": 64, "target_n": 128}}
    )
    result = snakemake(
        tmp_path, "--profile", str(REPO / "profiles/slurm"), "-n", "--configfile", config
    )
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = planned_jobs(result.stdout + result.stderr)
    counts = pd.Series([job["rule"] for job in jobs]).value_counts().to_dict()
    per_half = 3  # all, even, odd; one training mode (config.yaml: train.modes [all])
    expected = {
        "simulate_demo": 1,
        "choose_settings": 1,
        "import_particles": 1,
        "split_halves": 1,
        "gmm_level": 2 * per_half,
        "gmm_neutral": per_half,
        "gmm_evaluate": per_half,
        "features_part": per_half,  # one part of train.features_per_job particles
        "features": per_half,
        "train": per_half,
        "landscape_embed": per_half,
        "landscape_classes_part": 4 * per_half,  # landscape.reconstruct.jobs
        "landscape_classes": per_half,
        "landscape_subsets": per_half,
        "landscape_trajectories_part": 3 * per_half,  # PC1, PC2 and the demo's region
        "landscape_trajectories": per_half,
        "landscape_explorer": per_half,
        "consensus_halves": 1,
        "reproducibility": 1,
        "summary": 1,
        "all": 1,
    }
    assert {rule: counts.get(rule) for rule in expected} == expected
    levels = {job["wildcards"] for job in jobs if job["rule"] == "gmm_level"}
    assert levels == {f"half={h}, level={k}" for h in ("all", "even", "odd") for k in (0, 1)}
    site = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())["default-resources"]
    for job in jobs:
        assert job["slurm_partition"] == site["slurm_partition"], job
        assert job["slurm_account"] == site["slurm_account"], job
        if job["rule"] not in LOCAL_RULES:
            assert int(job["mem_mb"]) > 0 and int(job["runtime"]) > 0, job
    gpu_rules = {job["rule"] for job in jobs if "gpu" in job}
    assert gpu_rules == {"gmm_level", "features_part", "train"}, gpu_rules
    assert all(job["gpu"] == "1" for job in jobs if "gpu" in job)


@pytest.mark.slow
def test_dry_run_of_300k_particles_requests_resources_from_the_formulas(tmp_path):
    """Requests follow the data: a demo of 300,000 particles at box 128 (nothing to read
    but the config) asks for the run times and memory of gmmscape.resources, and its
    gradient pass is scattered over six jobs of 50,000 particles per half, each asking
    what 50,000 particles need; the training's run time grows with the particles (ten
    times the per-particle part, plus a fixed start-up), its memory does not."""
    plans, jobs = {}, {}
    for per_state in (1_500, 15_000):
        demo = {"demo": {"per_state": per_state, "box": 128}, "gmm": {"target_n": 2048}}
        config = write_config(tmp_path / str(per_state), demo)
        result = snakemake(
            tmp_path / str(per_state),
            *("--profile", str(REPO / "profiles/slurm"), "-n", "--configfile", config),
        )
        assert result.returncode == 0, result.stdout + result.stderr
        jobs[per_state] = planned_jobs(result.stdout + result.stderr)
        plans[per_state] = {j["rule"]: j for j in jobs[per_state]}
    parts = [j["wildcards"] for j in jobs[15_000] if j["rule"] == "features_part"]
    assert sorted(parts) == sorted(
        f"half={h}, part={k}" for h in ("all", "even", "odd") for k in range(6)
    )
    assert sum(j["rule"] == "features_part" for j in jobs[1_500]) == 3  # one per half
    node = resources.slurm_node()
    scale = resources.Scale(300_000, 128, 128, 2048, choices.epochs_for(300_000))
    stages = {
        "features_part": ("features", resources.share(scale, 6)),
        "features": ("features_gather", scale),
        "train": ("train", scale),
        "landscape_classes_part": ("landscape_classes", resources.share(scale, 4)),
        "import_particles": ("import_particles", scale),
    }
    for rule, (stage, size) in stages.items():
        job = plans[15_000][rule]
        assert int(job["runtime"]) == resources.runtime(stage, size, node), rule
        assert int(job["mem_mb"]) == resources.mem_mb(stage, size, node), rule
    small, large = (plans[n]["train"] for n in (1_500, 15_000))
    assert int(large["runtime"]) > 5 * int(small["runtime"])
    assert large["mem_mb"] == small["mem_mb"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"seed": "abc"}, "config key 'seed': 'abc' is not of type 'integer'"),
        ({"gmm": {"epochs": "ten"}}, "config key 'gmm.epochs': 'ten' is not of type 'integer'"),
        ({"gmm": {"epoch": 3}}, "config key 'gmm': Additional properties are not allowed ('epoch'"),
        ({"particle": "x.star"}, "config: Additional properties are not allowed ('particle'"),
        (
            {"gmm": {"start_n": 64, "target_n": 32}},
            "gmm.target_n: expected at least gmm.start_n (64), got 32",
        ),
        ({"particles": "missing.star"}, "particles: file not found: missing.star"),
        ({"particles": "missing.cs"}, "particles: file not found: missing.cs"),
        ({**USER_DATA, "particles_dir": "nodir"}, "particles_dir: folder not found: nodir"),
        ({**USER_DATA, "mask": "small.mrc"}, "mask: box 20x20x20 of small.mrc differs"),
        ({**USER_DATA, "map": "nomap.mrc"}, "map: file not found: nomap.mrc"),
        (
            {**USER_DATA, "map": "zero.mrc"},
            "map: the header of zero.mrc gives voxel size 0 A (not set); set apix",
        ),
        (
            {**USER_DATA, "half_maps": ["m.mrc", "other.mrc"]},
            "half_maps[1]: voxel size 1 A of other.mrc differs from the map's 2 A (m.mrc)",
        ),
    ],
    ids=[
        "type",
        "nested-type",
        "unknown-key",
        "unknown-top-key",
        "levels",
        "particles",
        "cryosparc",
        "particles-dir",
        "mask-box",
        "map",
        "map-voxel-0",
        "half-map-voxel",
    ],
)
def test_bad_config_fails_before_any_job(tmp_path, config, message):
    (tmp_path / "p.star").write_text("data_particles\n")
    write_mrc(tmp_path / "m.mrc", 16)
    write_mrc(tmp_path / "small.mrc", 20)
    write_mrc(tmp_path / "zero.mrc", 16, apix=0.0)
    write_mrc(tmp_path / "other.mrc", 16, apix=1.0)
    result = snakemake(tmp_path, "--cores", "1", "--configfile", write_config(tmp_path, config))
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_killed_gmm_build_resumes_from_last_finished_level(tiny_run):
    results = tiny_run["workdir"] / "results"
    assert (results / "gmm/all/level_0.txt").stat().st_mtime_ns == tiny_run["level_0_mtime"]
    rerun = {
        job["wildcards"] for job in planned_jobs(tiny_run["output"]) if job["rule"] == "gmm_level"
    }
    assert rerun == {"half=all, level=1"}


@pytest.mark.slow
def test_tiny_demo_end_to_end(tiny_run):
    results = tiny_run["workdir"] / "results"
    for name in (
        "particles.star",
        "particles.mrcs",
        "consensus.mrc",
        "mask.mrc",
        "ground_truth.csv",
    ):
        assert (results / "demo" / name).is_file(), name
    meta = pd.read_json(results / "import/meta.json", typ="series")
    assert meta["n_particles"] == 40 and meta["box"] == 32
    tables = {half: pd.read_csv(results / f"import/{half}.csv") for half in ("all", "even", "odd")}
    assert len(tables["all"]) == 40
    assert sorted([*tables["even"]["index"], *tables["odd"]["index"]]) == list(range(40))
    assert set(tables["even"]["subset"]) == {1} and set(tables["odd"]["subset"]) == {2}
    for name in ("neutral.txt", "neutral.pdb", "neutral.mrc", "fsc.csv", "fsc.png"):
        assert (results / "gmm/all" / name).stat().st_size > 0, name
    with mrcfile.open(results / "gmm/all/neutral.mrc") as mrc:
        assert mrc.data.shape == (32, 32, 32)
        assert math.isclose(float(mrc.voxel_size.x), 4.0, rel_tol=1e-4)
    answers = (results / "summary.html").read_text()
    assert re.search(r"all_all: \d+ class", answers) and "not run (<code>split: false" in answers
    for rule in ("simulate_demo", "import_particles", "split_halves"):
        assert (results / f"logs/{rule}.log").is_file() and (
            results / f"benchmarks/{rule}.tsv"
        ).is_file()


@pytest.mark.slow
def test_tiny_demo_writes_the_latent_contract(tiny_run):
    """The latent.csv contract: landscape/{run}/latent.csv has one row per input particle, by index;
    junk particles have an empty latent and cluster -1."""
    results = tiny_run["workdir"] / "results"
    latent = pd.read_csv(results / "landscape/all_all/latent.csv")
    dims = [c for c in latent.columns if c.startswith("z")]
    assert list(latent.columns) == ["index", *dims, "pc0", "pc1", "umap0", "umap1", "cluster"]
    assert len(dims) == 4
    assert latent["index"].tolist() == list(range(40))
    assert (results / "landscape/all_all/explorer.html").stat().st_size > 0
    junk = latent["index"].isin(pd.read_csv(results / "train/all_all/junk.csv")["index"])
    assert latent.loc[~junk, dims].notna().all().all()
    assert latent.loc[junk, dims].isna().all().all() and (latent.loc[junk, "cluster"] == -1).all()


@pytest.mark.slow
def test_tiny_gmm_matches_the_map_below_target_resolution(tiny_run):
    """Methods: done when FSC(GMM, map) >= 0.95 at every frequency below the target resolution."""
    fsc = pd.read_csv(tiny_run["workdir"] / "results/gmm/all/fsc.csv")
    last = fsc[fsc["level"] == fsc["level"].max()]
    below = last[(last["shell"] >= 1) & (last["resolution"] >= TINY["gmm"]["target_resolution"])]
    assert len(below) > 0
    assert below["fsc"].min() >= 0.95, below


@pytest.mark.slow
def test_where_prints_the_results_directory(tiny_run):
    workdir = tiny_run["workdir"]
    result = subprocess.run(
        [sys.executable, "-m", "gmmscape.cli", "where", "--configfile", "test_config.yaml"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"results: {workdir / 'results'}" in result.stdout
    assert str(workdir / "results/gmm/all/neutral.pdb") in result.stdout


@pytest.mark.slow
def test_a_new_mode_or_an_unrelated_key_reruns_only_what_depends_on_it(tiny_run, tmp_path):
    """Jobs see only the config keys they read: after the tiny run, a changed
    reproducibility margin plans nothing, and an added training mode plans only that
    mode's training and landscape (and the page that lists every mode), not the finished
    run, its features or the GMM."""
    workdir = tiny_run["workdir"]

    def planned(changes: dict) -> set[str]:
        config = {**TINY, **changes}
        path = tmp_path / f"c{len(list(tmp_path.iterdir()))}.yaml"
        path.write_text(yaml.safe_dump(config))
        result = snakemake(workdir, "-n", "--configfile", str(path))
        assert result.returncode == 0, result.stdout + result.stderr
        return {f"{j['rule']} {j['wildcards']}" for j in planned_jobs(result.stdout)}

    margin = {"landscape": {"reproducibility": {"fsc_margin": 0.2}}}
    assert planned(margin) == set()
    added = planned({"train": {"modes": ["all", "amplitude"]}})
    assert "train mode=amplitude, half=all" in added, added
    finished = ("mode=all,", "run=all_all")
    assert not {j for j in added if any(f in j for f in finished)}, added
    assert {j.split()[0] for j in added} <= {
        "train", "landscape_embed", "landscape_classes_part", "landscape_classes",
        "landscape_subsets", "landscape_trajectories_part", "landscape_trajectories",
        "landscape_explorer", "summary", "all",
    }  # fmt: skip
