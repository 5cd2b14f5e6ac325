"""Session fixtures: the tiny workflow run, and its run on a SLURM cluster.

The cluster run spends most of its time waiting for the executor's status polls, so
when the session will test it (tests/test_slurm.py is collected and a cluster answers)
it starts in the background as soon as collection ends, and the test joins it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from workflow import REPO, TINY, snakemake, write_config

# CI starts a cluster (.ci/slurm-up) and sets GMMSCAPE_SLURM=1: there the test must run.
SLURM_REQUIRED = os.environ.get("GMMSCAPE_SLURM") == "1"
CANCELLED_RULE = "gmm_level"  # the rule one of whose jobs is cancelled with scancel


def slurm_partition() -> str | None:
    """The default partition of a reachable SLURM cluster, None when there is none."""
    try:
        done = subprocess.run(
            ["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = done.stdout.split() if done.returncode == 0 else []
    default = [n[:-1] for n in names if n.endswith("*")]
    return (default or names or [None])[0]


@dataclass
class SlurmRun:
    """The tiny workflow with --profile profiles/slurm, started in the background, with
    one running job of CANCELLED_RULE cancelled by scancel."""

    root: Path
    process: subprocess.Popen
    cancelled: list[str] = field(default_factory=list)
    watcher: threading.Thread | None = None

    @property
    def workdir(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "snakemake.log"

    @classmethod
    def start(cls, root: Path, partition: str) -> SlurmRun:
        overlay = root / "overlay"  # the site's part: a workflow profile over profiles/slurm
        overlay.mkdir(parents=True)
        settings = {
            "default-resources": {"slurm_partition": partition},
            "slurm-init-seconds-before-status-checks": 2,
            "jobs": 2,
        }
        (overlay / "config.yaml").write_text(yaml.safe_dump(settings))
        config = write_config(root / "run", TINY)
        with (root / "snakemake.log").open("w") as log:
            process = snakemake(
                root / "run",
                *("--profile", str(REPO / "profiles/slurm"), "--workflow-profile", str(overlay)),
                *("--configfile", config),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        run = cls(root, process)
        run.watcher = threading.Thread(target=run._cancel_one, daemon=True)
        run.watcher.start()
        return run

    def _cancel_one(self, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            listing = subprocess.run(
                ["squeue", "-h", "-o", "%i|%k|%T"], capture_output=True, text=True, check=False
            ).stdout
            for line in listing.splitlines():
                job, comment, state = line.split("|")
                if f"rule_{CANCELLED_RULE}" in comment and state == "RUNNING":
                    subprocess.run(["scancel", job], check=True)
                    self.cancelled.append(job)
                    return
            time.sleep(0.3)

    def wait(self, timeout: float = 1200) -> int:
        code = self.process.wait(timeout=timeout)
        if self.watcher is not None:
            self.watcher.join(timeout=5)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the SLURM run in the background when its test is collected and can run."""
    wanted = any(item.nodeid.startswith("tests/test_slurm.py") for item in session.items)
    partition = slurm_partition() if wanted else None
    if partition:
        root = Path(session.config._tmp_path_factory.mktemp("slurm"))  # type: ignore[attr-defined]
        session.config.stash[SLURM_RUN] = SlurmRun.start(root, partition)


SLURM_RUN = pytest.StashKey[SlurmRun]()


def pytest_sessionfinish(session: pytest.Session) -> None:
    run = session.config.stash.get(SLURM_RUN, None)
    if run is not None:
        run.stop()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> dict:
    """The tiny demo run end to end, killed (SIGKILL) during the GMM's second level and resumed.

    Returns the working directory, level 0's modification time when the run was
    killed and the resumed run's output.
    """
    workdir = tmp_path_factory.mktemp("tiny")
    config = write_config(workdir, TINY)
    results = workdir / "results"
    first_log = workdir / "killed_run.log"
    with first_log.open("w") as log:
        first = snakemake(
            workdir,
            "--cores",
            "2",
            "--configfile",
            config,
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        # Level 1 starts (its script opens its log) only once level 0 is recorded complete.
        level_1_started = results / "logs/gmm_level/all_level_1.log"
        deadline = time.monotonic() + 400
        while not level_1_started.exists() and first.poll() is None:
            assert time.monotonic() < deadline, "level 1 of the GMM did not start in time"
            time.sleep(0.2)
        assert first.poll() is None, f"run ended before GMM level 1:\n{first_log.read_text()}"
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    level_0 = results / "gmm/all/level_0.txt"
    killed_at = level_0.stat().st_mtime_ns
    unlock = snakemake(workdir, "--unlock", "--configfile", config)
    assert unlock.returncode == 0, unlock.stderr
    resumed = snakemake(
        workdir, "--profile", str(REPO / "profiles/local"), "--cores", "2", "--configfile", config
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    return {
        "workdir": workdir,
        "level_0_mtime": killed_at,
        "output": resumed.stdout + resumed.stderr,
    }


@pytest.fixture(scope="session")
def slurm_run(request: pytest.FixtureRequest) -> SlurmRun:
    """The background SLURM run; the test is skipped where no cluster answers (required
    in CI, where GMMSCAPE_SLURM=1)."""
    run = request.config.stash.get(SLURM_RUN, None)
    if run is None:
        if SLURM_REQUIRED:
            pytest.fail("GMMSCAPE_SLURM=1 but sinfo finds no SLURM cluster")
        pytest.skip("no SLURM cluster (.ci/slurm-up starts one)")
    return run
