"""Running the repository's workflow as a user would, for the tests: the `snakemake`
command on a temporary working directory (`--directory`), so tests never touch the
repository's results or `.snakemake`; the tiny config; reading a dry run's plan.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
LOCAL_RULES = {"all", "split_halves"}

# The tiny demo of the workflow tests, a file a person can run by hand.
TINY = yaml.safe_load((REPO / "tests/tiny_config.yaml").read_text())


def snakemake(workdir: Path, *args: str, **popen) -> subprocess.CompletedProcess | subprocess.Popen:
    """Run (or, with popen arguments, start) snakemake on the repository's workflow in workdir."""
    command = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    # cluster jobs run snakemake and python from PATH: this environment's first
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PATH": path}
    if popen:
        return subprocess.Popen([*command, *args], env=env, text=True, **popen)
    return subprocess.run([*command, *args], env=env, text=True, capture_output=True, timeout=600)


def write_config(workdir: Path, config: dict) -> str:
    """A --configfile holding only the given keys (the rest must come from config.yaml)."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "test_config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def planned_jobs(output: str) -> list[dict[str, str]]:
    """Rule name, wildcards and resources of every job in snakemake's output."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output)[1:]:
        job = {"rule": block.split(":", 1)[0].split()[-1]}
        match = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        job["wildcards"] = match.group(1) if match else ""
        match = re.search(r"^\s+resources: (.*)$", block, re.M)
        for item in match.group(1).split(", ") if match else []:
            name, _, value = item.partition("=")
            job[name] = value
        jobs.append(job)
    return jobs
