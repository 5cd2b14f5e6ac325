"""The tiny workflow on a real SLURM cluster (CI: .ci/slurm-up) with the SLURM profile,
run in the background since the session started (tests/conftest.py)."""

from __future__ import annotations

import re

import pytest
from workflow import LOCAL_RULES


@pytest.mark.slow
def test_tiny_demo_on_slurm_matches_the_local_run(slurm_run, tiny_run):
    """Every job but the local ones runs as a SLURM job (its log names the job id), a job
    cancelled with scancel is retried and the run completes, and the results equal the
    local run's byte for byte."""
    code = slurm_run.wait()
    output = slurm_run.log.read_text()
    assert code == 0, output
    assert slurm_run.cancelled, "no job was cancelled"
    (cancelled,) = slurm_run.cancelled
    assert f"SLURM-job '{cancelled}' failed, SLURM status is: 'CANCELLED'" in output, output

    results = slurm_run.workdir / "results"
    ids = {}
    for path in sorted((results / "logs").rglob("*.log")):
        name = str(path.relative_to(results / "logs"))
        rule = name.split("/")[0].removesuffix(".log")
        if rule in LOCAL_RULES:
            continue
        match = re.search(r"SLURM_JOB_ID=(\d+)", path.read_text())
        assert match, f"{name} ran outside SLURM"
        ids[name] = match.group(1)
    print(f"cancelled SLURM job {cancelled}; jobs: {ids}")
    assert len(set(ids.values())) == len(ids) >= 15, ids
    assert cancelled not in ids.values()  # the cancelled job's retry wrote the log

    local = tiny_run["workdir"] / "results"
    for name in ("gmm/all/neutral.txt", "train/all_all/latent.csv", "landscape/all_all/latent.csv"):
        assert (results / name).read_bytes() == (local / name).read_bytes(), name
