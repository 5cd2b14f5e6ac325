"""What each job asks a cluster for: threads, memory and run time, from the data's size.

A cluster kills a job that outlives its ``runtime`` or outgrows its ``mem_mb``, and never
starts one that asks for more than any node has (it stays pending, and snakemake waits
without a word). So requests follow the data set (particle count, boxes, Gaussian count,
epochs), read once when the workflow is parsed, so that a dry run shows them; they are
capped at the largest SLURM node and partition time limit (``sinfo``) when there is one,
and grow with each retry. A long stage capped by the time limit resumes from its last
checkpoint on the retry.

Costs are this machine's (2 cores, docs/benchmarks.md): the features' gradient pass ran
at 511 particles/s for N = 512 Gaussians at box 64 and 182/s for N = 2048 at box 128,
one training epoch at 585/s and 125/s; per-particle time is taken as c0 + c1 N b^2 (the
separable projection's work) through those two points. Import read 194 particles/s of
box 256, reconstruction grids 1,070 particles/s at box 64, UMAP embedded 100,000 points
in 87 s. Streaming stages hold a few chunks of images, so memory follows the box, not
the particle count. Training's time includes the scoring against decoded candidate
models that ends it, and per ``train.refit`` cycle the decoder refitted to the scored
latents and the scoring again (``choices.scoring_passes``, ``choices.refit_epochs``).
Requests are SAFETY times the estimate, at least MIN_MINUTES.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAFETY = 3.0  # slower or shared nodes
MIN_MINUTES = 10
MIN_MB = 1000
GPU_SPEEDUP = 10.0  # assumed for the TensorFlow stages on a GPU (docs/benchmarks.md)
UNKNOWN_PARTICLES = 100_000  # when the input cannot be counted (it is checked later)
UNKNOWN_GAUSSIANS = 2048  # when gmm.target_n is derived at run time
TF_MB = 800  # an imported TensorFlow


@dataclass(frozen=True)
class Scale:
    """The size of a data set as the requests see it."""

    particles: int
    input_box: int  # the particles' box in pixels
    box: int  # the training box (Fourier crop)
    gaussians: int
    epochs: int
    gpu: bool = False
    refit: int = 0  # cycles of the decoder refitted to the scored latents (train.refit)

    @property
    def work(self) -> float:
        """Per-particle projection work, N b^2."""
        return float(self.gaussians) * self.box**2


@dataclass(frozen=True)
class Node:
    """The largest node and longest partition time limit of a SLURM cluster."""

    cpus: int
    mem_mb: int
    minutes: int | None  # None: no limit


def _linear(rate_small: float, rate_large: float) -> tuple[float, float]:
    """(c0, c1) of seconds per particle c0 + c1 N b^2 through the two measured rates."""
    small, large = 512 * 64**2, 2048 * 128**2
    slope = (1 / rate_large - 1 / rate_small) / (large - small)
    return 1 / rate_small - slope * small, slope


FEATURES = _linear(511.0, 182.0)
EPOCH = _linear(585.0, 125.0)


def _stream(c: tuple[float, float], s: Scale, passes: float) -> float:
    seconds = passes * s.particles * (c[0] + c[1] * s.work)
    return seconds / GPU_SPEEDUP if s.gpu else seconds


def _training(s: Scale) -> float:
    """The epochs, then the scoring against decoded candidate models, and per refit
    cycle the decoder refitted to the scored latents and the scoring again."""
    from .choices import refit_epochs, scoring_passes

    cycle = scoring_passes(s.epochs) + refit_epochs(s.particles)
    return 300 + _stream(EPOCH, s, s.epochs + scoring_passes(s.epochs) + s.refit * cycle)


def _images_mb(s: Scale, chunk: int = 1024, copies: int = 8) -> float:
    """A chunk of images with its Fourier transforms, CTFs and batch tensors."""
    return chunk * s.box**2 * 4 * copies / 1e6


def _volumes_mb(box: int, count: int = 20) -> float:
    return count * box**3 * 4 / 1e6


def _reconstruct_seconds(s: Scale, passes: float = 1.0) -> float:
    return passes * s.particles * (s.box / 64) ** 2 / 1070.0


@dataclass(frozen=True)
class Stage:
    threads: int
    seconds: Callable[[Scale], float]
    mem_mb: Callable[[Scale], float]


def _fixed(seconds: float) -> Callable[[Scale], float]:
    return lambda s: seconds


def _network_mb(s: Scale) -> float:
    return TF_MB + _images_mb(s) + 16 * 512 * 5 * s.gaussians * 4 / 1e6


STAGES: dict[str, Stage] = {
    "simulate_demo": Stage(2, _fixed(600), lambda s: 2000 + _volumes_mb(s.input_box)),
    "import_particles": Stage(
        2,
        lambda s: 60 + s.particles * (s.input_box / 256) ** 2 / 194.0,
        lambda s: 1000 + 2**23 * 4 * 4 / 1e6,
    ),
    "choose_settings": Stage(
        2, lambda s: 300 + 5000 * (s.input_box / 64) ** 2 / 1070.0, lambda s: 1500
    ),
    "preflight": Stage(1, lambda s: 300 + 20000 * (s.box / 64) ** 2 / 1070.0, lambda s: 1500),
    "split_halves": Stage(1, lambda s: 60 + s.particles / 1e4, lambda s: 1000),
    "symmetry_expand": Stage(1, lambda s: 60 + s.particles / 1e4, lambda s: 1000),
    "gmm_level": Stage(4, lambda s: 300 + 60 * (s.input_box / 128) ** 3, _network_mb),
    "gmm_neutral": Stage(1, _fixed(300), lambda s: TF_MB + _volumes_mb(s.input_box)),
    "gmm_evaluate": Stage(2, _fixed(600), lambda s: TF_MB + _volumes_mb(s.input_box)),
    "junk": Stage(2, lambda s: 60 + _stream(FEATURES, s, 0.5), _network_mb),
    "features": Stage(2, lambda s: 60 + _stream(FEATURES, s, 1.0), _network_mb),
    "features_gather": Stage(
        1,
        lambda s: 60 + s.particles * s.gaussians * 5 * 4 * 3 / 2e8,  # 3 passes at 200 MB/s
        lambda s: 1000 + 4096 * s.gaussians * 5 * 4 * 3 / 1e6,
    ),
    "refine_features": Stage(2, lambda s: 60 + _stream(FEATURES, s, 1.0), _network_mb),
    "train": Stage(2, _training, _network_mb),
    "refine_train": Stage(2, _training, _network_mb),
    # 81 projections with their backward pass per particle (docs/benchmarks.md)
    "refine_poses": Stage(2, lambda s: 300 + _stream(FEATURES, s, 81.0), _network_mb),
    "refine_final": Stage(1, lambda s: 60 + s.particles / 1e4, lambda s: 1000),
    "landscape_embed": Stage(
        1, lambda s: 300 + s.particles * 1e-3, lambda s: 1500 + s.particles * 0.01
    ),
    "landscape_classes": Stage(
        1,
        lambda s: 300 + _reconstruct_seconds(s, 3.0),
        lambda s: 1500 + _volumes_mb(s.box, 40) + s.particles * 0.01,
    ),
    "landscape_trajectories": Stage(
        2, lambda s: 600 + _reconstruct_seconds(s, 3.0), lambda s: 2000 + _volumes_mb(s.box, 40)
    ),
    "landscape_points": Stage(
        1, lambda s: 600 + _reconstruct_seconds(s, 1.0), lambda s: 2000 + _volumes_mb(s.box, 40)
    ),
    "consensus_halves": Stage(
        1, lambda s: 120 + _reconstruct_seconds(s, 1.0), lambda s: 1500 + _volumes_mb(s.box)
    ),
    "landscape_subsets": Stage(1, lambda s: 120 + s.particles / 1e4, lambda s: 1000),
    # the class and trajectory maps of the parts copied together (40 volumes at 200 MB/s)
    "gather": Stage(1, lambda s: 60 + _volumes_mb(s.box, 40) / 200, lambda s: 1000),
    "landscape_explorer": Stage(1, _fixed(600), lambda s: 2000 + s.particles * 0.001),
    "reproducibility": Stage(1, _fixed(600), lambda s: 1500 + _volumes_mb(s.box, 40)),
    "summary": Stage(1, _fixed(120), lambda s: 1000),
}


def share(scale: Scale, parts: int) -> Scale:
    """The Scale of one of `parts` jobs that split the particles between them."""
    return dataclasses.replace(scale, particles=-(-scale.particles // max(parts, 1)))


def threads(stage: str, node: Node | None) -> int:
    """The stage's threads, at most the largest node's CPUs."""
    wanted = STAGES[stage].threads
    return min(wanted, node.cpus) if node else wanted


def mem_mb(stage: str, scale: Scale, node: Node | None, attempt: int = 1) -> int:
    """Memory request in MB: the estimate, 50 % more per retry, at most the largest node's."""
    estimate = max(MIN_MB, STAGES[stage].mem_mb(scale)) * (1 + 0.5 * (attempt - 1))
    mb = int(math.ceil(estimate / 100) * 100)
    return min(mb, node.mem_mb) if node else mb


def runtime(stage: str, scale: Scale, node: Node | None, attempt: int = 1) -> int:
    """Run time request in minutes, growing with each retry, at most the partition's limit
    (a stage cut short there resumes from its checkpoint on the retry)."""
    minutes = max(MIN_MINUTES, math.ceil(SAFETY * STAGES[stage].seconds(scale) / 60)) * attempt
    return min(minutes, node.minutes) if node and node.minutes else minutes


def _slurm_minutes(limit: str) -> int | None:
    """Minutes of a SLURM time limit ([D-]HH:MM:SS, MM:SS or "infinite")."""
    if limit in ("infinite", "UNLIMITED", "n/a", ""):
        return None
    days, _, clock = limit.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    hours, minutes, seconds = parts
    return (int(days or 0) * 24 + hours) * 60 + minutes + (1 if seconds else 0)


def parse_sinfo(text: str) -> Node | None:
    """The largest node of `sinfo -h -o "%c %m %l"` output (CPUs, MB, time limit)."""
    rows = [line.split() for line in text.splitlines() if len(line.split()) == 3]
    if not rows:
        return None
    cpus = max(int(r[0].rstrip("+")) for r in rows)
    mem = max(int(r[1].rstrip("+")) for r in rows)
    limits = [_slurm_minutes(r[2]) for r in rows]
    minutes = None if None in limits else max(m for m in limits if m is not None)
    return Node(cpus, mem, minutes)


def slurm_node(timeout: float = 2.0) -> Node | None:
    """The cluster's largest node, None where there is no SLURM (or it does not answer)."""
    if shutil.which("sinfo") is None:
        return None
    try:
        done = subprocess.run(
            ["sinfo", "-h", "-o", "%c %m %l"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_sinfo(done.stdout) if done.returncode == 0 else None


def count_particles(path: str | os.PathLike) -> int | None:
    """Rows of a particle file without parsing it (RELION's particles block, cryoSPARC's
    .cs array, EMAN2's .lst lines); None when it cannot be read."""
    path = Path(path)
    try:
        if path.suffix == ".cs":
            return int(np.load(path, mmap_mode="r").shape[0])
        if path.suffix == ".lst":
            with path.open() as handle:
                return sum(1 for line in handle if line.strip() and not line.startswith("#"))
        return _star_rows(path)
    except (OSError, ValueError):
        return None


def _star_rows(path: Path) -> int:
    """Data rows of the particles block of a STAR file (the last loop of a 3.0 file)."""
    rows, block, in_loop = 0, "", False
    counts: dict[str, int] = {}
    with path.open() as handle:
        for raw in handle:
            line = raw.strip()
            if line.startswith("data_"):
                block, in_loop, rows = line, False, 0
            elif line.startswith("loop_"):
                in_loop, rows = True, 0
            elif in_loop and line and not line.startswith(("_", "#")):
                rows += 1
                counts[block] = rows
    if "data_particles" in counts:
        return counts["data_particles"]
    if not counts:
        raise ValueError(f"{path}: no data rows")
    return list(counts.values())[-1]


def _map_box(path: str | None) -> int | None:
    if not path:
        return None
    try:
        import mrcfile

        with mrcfile.open(path, header_only=True, permissive=True) as mrc:
            return int(mrc.header.nx)
    except (OSError, ValueError):
        return None


def scale_from_config(config: dict, demo_particles: int) -> Scale:
    """The data set's Scale from the workflow's config, before any job has run: the
    particle file's rows, the map's box, the config's box, Gaussians and epochs where
    set (else the derivations' typical values)."""
    from .choices import epochs_for

    demo = config["particles"] == "demo"
    if demo:
        particles, input_box = demo_particles, int(config["demo"]["box"])
    else:
        particles = count_particles(config["particles"]) or UNKNOWN_PARTICLES
        input_box = _map_box(config.get("map")) or int(config.get("box") or 128)
    box = int(config.get("box") or input_box)
    gaussians = int(config["gmm"].get("target_n") or UNKNOWN_GAUSSIANS)
    epochs = int(config["train"].get("epochs") or epochs_for(particles))
    refit = int(config["train"].get("refit") or 0)
    return Scale(
        particles, input_box, min(box, input_box), gaussians, epochs, config["gpu"] > 0, refit
    )
