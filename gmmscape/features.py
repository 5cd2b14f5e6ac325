"""Encoder input: each particle's FRC-loss gradient with respect to the neutral GMM.

The gradient is taken in the GMM's own coordinates, so it does not depend on the
particle's orientation or shift (paper, "The e2gmm method"). Features are written to
an ``.npy`` array (n, 5N), row i for table row i, with a JSON sidecar
(``<name>.json``) that ties them to their GMM, table, box and resolution band.

Normalisation (second pass over the file): every column is centred on its mean over
the data set (the mean is the part of the gradient every particle shares: the
neutral model's own misfit), then each parameter kind (x, y, z, amplitude, sigma)
is divided by the RMS of its centred columns. One scale per kind keeps the relative
size of informative and uninformative Gaussians (a per-column scale would blow up
pure-noise columns to the size of the signal) while putting positions, amplitudes and
widths, whose gradients differ by orders of magnitude, on one footing.

Storage: ``float32``, or ``float16`` (half the disk: 1M particles x 1,664 Gaussians are
33 GB as float32). The raw gradients span many orders of magnitude and stay float32 until
they are normalised; the normalised values (unit RMS per kind) lose only their fourth
significant digit in float16. Readers take them as float32 whatever the storage.

Particles whose image has a non-finite pixel or whose gradient is not finite are
junk: their row is zero, they are left out of the statistics and listed in the sidecar.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from .errors import InputError
from .io.common import atomic_output
from .projection import FourierGrid, images_ft, particle_gradients, particle_graph
from .streaming import (
    PART_ROWS,
    ParticleSet,
    part_count,
    part_rows,
    read_rows,
    sequential_chunks,
    write_rows,
)
from .weighting import SpectralSNR, ctf_amplitude, frc_setup

log = logging.getLogger(__name__)
DTYPES = ("float32", "float16")  # storage of the normalised features


def gmm_checksum(gmm: np.ndarray) -> str:
    """SHA-256 of the model as float32: identical for the same parsed GMM file."""
    data = np.ascontiguousarray(np.asarray(gmm, dtype=np.float32))
    return hashlib.sha256(data.tobytes()).hexdigest()


@dataclass(frozen=True)
class FeatureInfo:
    """The sidecar: what the features were computed from, and how they were scaled."""

    gmm_sha256: str
    n_gaussians: int
    n_particles: int
    box: int
    apix: float
    res_lo: float | None
    res_hi: float | None
    ring_lo: int
    ring_hi: int
    table: str
    scale: list[float]  # per parameter kind: x, y, z, amplitude, sigma
    junk_rows: list[int]  # table rows (0-based) of junk particles
    junk_index: list[int]  # the same particles' `index` (row in the user's input)


@dataclass
class PartSums:
    """What the normalisation needs from one part of the gradient pass."""

    total: np.ndarray  # (5N,) float64 column sums
    total_sq: np.ndarray  # (5N,) float64 column sums of squares
    junk: np.ndarray  # (rows,) bool

    def save(self, path: Path) -> None:
        with atomic_output(path) as tmp:
            with tmp.open("wb") as handle:
                np.savez(handle, total=self.total, total_sq=self.total_sq, junk=self.junk)

    @classmethod
    def merge(cls, parts: Sequence[PartSums]) -> PartSums:
        """The sums of consecutive parts as one (their junk flags concatenated)."""
        return cls(
            np.sum([p.total for p in parts], axis=0),
            np.sum([p.total_sq for p in parts], axis=0),
            np.concatenate([p.junk for p in parts]),
        )

    @classmethod
    def load(cls, path: Path) -> PartSums:
        with np.load(path) as data:
            return cls(data["total"], data["total_sq"], data["junk"])


def sums_path(part: str | os.PathLike) -> Path:
    return Path(part).with_suffix(".sums.npz")


def sidecar_path(features: str | os.PathLike) -> Path:
    return Path(features).with_suffix(".json")


@functools.lru_cache(maxsize=4)
def _gradient_function(grid: FourierGrid, n_gaussians: int, use_ctf: bool) -> Callable:
    """particle_gradients as a graph with a fixed signature (one trace for every batch)."""
    return particle_graph(particle_gradients, grid, n_gaussians, use_ctf)


def _raw_pass(
    gmm: np.ndarray,
    particles: ParticleSet,
    grid: FourierGrid,
    rows: np.ndarray,
    out: Path,
    offset: int,
    batch: int,
    exclude: np.ndarray,
    use_ctf: bool,
) -> PartSums:
    """Write the raw gradients of consecutive table `rows` into `out` (row r at r - offset);
    return their per-column sum and sum of squares, and junk (the `exclude`d rows and
    those with non-finite images or gradients)."""
    gradients = _gradient_function(grid, len(gmm), use_ctf)  # traced once per grid and N
    model = tf.constant(gmm, tf.float32)
    sums = PartSums(np.zeros(gmm.size), np.zeros(gmm.size), np.zeros(len(rows), bool))
    for k, start in enumerate(range(0, len(rows), batch)):
        chunk = rows[start : start + batch]
        images = particles.images(chunk)
        i_re, i_im = images_ft(np.nan_to_num(images, nan=0.0, posinf=0.0, neginf=0.0), grid)
        ctf = (ctf_amplitude(particles, chunk, grid),) if use_ctf else ()
        grad = gradients(
            model, particles.rotations[chunk], particles.shifts[chunk], i_re, i_im, *ctf
        ).numpy()
        grad = grad.reshape(len(chunk), -1)
        bad = ~np.isfinite(images).all(axis=(1, 2)) | ~np.isfinite(grad).all(axis=1)
        bad |= exclude[chunk]
        grad[bad] = 0.0
        sums.junk[start : start + len(chunk)] = bad
        write_rows(out, chunk[0] - offset, grad)
        sums.total += grad.sum(0, dtype=np.float64)
        sums.total_sq += np.square(grad, dtype=np.float64).sum(0)
        if k % 20 == 0 or chunk[-1] == rows[-1]:
            log.info("features: %d/%d particles", chunk[-1] + 1, particles.n)
    return sums


def _scales(total: np.ndarray, total_sq: np.ndarray, n_good: int) -> tuple[np.ndarray, np.ndarray]:
    """Column means (5N,) and per-kind RMS scales (5,) of the centred gradients."""
    mean = total / n_good
    var = np.maximum(total_sq / n_good - mean**2, 0.0).reshape(-1, 5)
    scale = np.sqrt(var.mean(axis=0))
    return mean, np.where(scale > 0, scale, 1.0)


def _loss_grid(
    particles: ParticleSet,
    res_lo: float | None,
    res_hi: float | None,
    frc_weights: str,
    snr: SpectralSNR | None,
) -> tuple[FourierGrid, bool]:
    return frc_setup(
        particles, FourierGrid(particles.box, particles.apix, res_lo, res_hi), frc_weights, snr
    )


def _excluded(n: int, exclude: Sequence[int] | np.ndarray | None) -> np.ndarray:
    excluded = np.zeros(n, bool)
    excluded[np.asarray(exclude if exclude is not None else [], dtype=np.int64)] = True
    return excluded


def _log_start(particles: ParticleSet, gmm: np.ndarray, grid: FourierGrid) -> None:
    log.info(
        "features: %d particles, %d Gaussians, box %d, rings %d-%d",
        particles.n,
        len(gmm),
        grid.box,
        grid.ring_lo,
        grid.ring_hi,
    )


def compute_features(
    gmm: np.ndarray,
    particles: ParticleSet,
    out: str | os.PathLike,
    *,
    res_lo: float | None,
    res_hi: float | None,
    batch: int = 64,
    exclude: Sequence[int] | np.ndarray | None = None,
    frc_weights: str = "flat",
    snr: SpectralSNR | None = None,
    part_size: int = PART_ROWS,
    parts: int | None = None,
    dtype: str = "float32",
) -> FeatureInfo:
    """Write the normalised gradient features of every particle to `out` (.npy, ``dtype``
    one of DTYPES) + sidecar.

    ``exclude``: table rows already known to be junk (gmmscape.junk), treated like
    particles with non-finite images: zero rows, outside the statistics, in junk_rows.
    ``frc_weights``/``snr``: the loss whose gradient is taken (gmmscape.weighting).
    The pass runs part by part (``parts`` of ``part_size`` rows, the last taking the
    rest), summing the statistics in the order gather_features does over feature_part's
    files, so one job and the scattered jobs write the same bytes.
    """
    gmm = np.asarray(gmm, dtype=np.float32)
    grid, use_ctf = _loss_grid(particles, res_lo, res_hi, frc_weights, snr)
    _log_start(particles, gmm, grid)
    n, parts = particles.n, parts or part_count(particles.n, part_size)
    out = Path(out)
    with atomic_output(out) as tmp, _scratch(tmp) as raw:
        np.lib.format.open_memmap(raw, mode="w+", dtype=np.float32, shape=(n, gmm.size)).flush()
        excluded = _excluded(n, exclude)
        sums = [
            _raw_pass(
                gmm,
                particles,
                grid,
                part_rows(n, k, parts, part_size),
                raw,
                0,
                batch,
                excluded,
                use_ctf,
            )
            for k in range(parts)
        ]
        junk, scale = _normalise([raw], [PartSums.merge(sums)], tmp, particles, dtype)
    return _write_info(gmm, particles, grid, (res_lo, res_hi), junk, scale, out)


def feature_part(
    gmm: np.ndarray,
    particles: ParticleSet,
    out: str | os.PathLike,
    part: int,
    parts: int,
    *,
    res_lo: float | None,
    res_hi: float | None,
    batch: int = 64,
    exclude: Sequence[int] | np.ndarray | None = None,
    frc_weights: str = "flat",
    snr: SpectralSNR | None = None,
    part_size: int = PART_ROWS,
) -> None:
    """The raw gradients of one part of the table (part_rows) to `out` (.npy) and their
    statistics beside it (sums_path), for gather_features; one cluster job per part."""
    gmm = np.asarray(gmm, dtype=np.float32)
    grid, use_ctf = _loss_grid(particles, res_lo, res_hi, frc_weights, snr)
    rows = part_rows(particles.n, part, parts, part_size)
    log.info("features: part %d of %d, %d rows", part + 1, parts, len(rows))
    out = Path(out)
    sums = PartSums(np.zeros(gmm.size), np.zeros(gmm.size), np.zeros(0, bool))
    with atomic_output(out) as tmp:
        if not len(rows):  # a part past the table's end (its size was estimated)
            with tmp.open("wb") as handle:
                np.save(handle, np.zeros((0, gmm.size), np.float32))
        else:
            shape = (len(rows), gmm.size)
            np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape).flush()
            excluded = _excluded(particles.n, exclude)
            sums = _raw_pass(
                gmm, particles, grid, rows, tmp, int(rows[0]), batch, excluded, use_ctf
            )
    sums.save(sums_path(out))


def gather_features(
    gmm: np.ndarray,
    particles: ParticleSet,
    parts: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    res_lo: float | None,
    res_hi: float | None,
    frc_weights: str = "flat",
    snr: SpectralSNR | None = None,
    dtype: str = "float32",
) -> FeatureInfo:
    """The normalised features (``dtype``) of every particle from feature_part's files,
    in order."""
    gmm = np.asarray(gmm, dtype=np.float32)
    grid, _ = _loss_grid(particles, res_lo, res_hi, frc_weights, snr)
    out, n = Path(out), particles.n
    sums = [PartSums.load(sums_path(p)) for p in parts]
    if sum(len(s.junk) for s in sums) != n:
        raise InputError(
            f"{out}: the parts {', '.join(map(str, parts))} hold "
            f"{sum(len(s.junk) for s in sums)} rows, expected the table's {n}"
        )
    with atomic_output(out) as tmp:
        junk, scale = _normalise([Path(p) for p in parts], sums, tmp, particles, dtype)
    return _write_info(gmm, particles, grid, (res_lo, res_hi), junk, scale, out)


@contextlib.contextmanager
def _scratch(beside: Path) -> Iterator[Path]:
    """A hidden file name beside `beside` for the raw gradients, removed afterwards."""
    path = beside.with_name(beside.name + ".raw.npy")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _normalise(
    sources: Sequence[Path], sums: Sequence[PartSums], out: Path, particles: ParticleSet, dtype: str
) -> tuple[np.ndarray, np.ndarray]:
    """Write the raw gradients of `sources` (float32 files of consecutive rows, with their
    sums), centred and scaled, to a new `out` of ``dtype``; returns junk (n,) bool and
    the per-kind scales (5,)."""
    if dtype not in DTYPES:
        raise InputError(f"train.feature_dtype: expected one of {DTYPES}, got {dtype!r}")
    total = PartSums.merge(sums)
    n_good = int((~total.junk).sum())
    if n_good == 0:
        raise InputError(f"{particles.table}: every particle is junk (non-finite images)")
    mean, scale = _scales(total.total, total.total_sq, n_good)
    divisor = np.tile(scale, total.total.size // 5).astype(np.float32)
    shape = (particles.n, total.total.size)
    np.lib.format.open_memmap(out, mode="w+", dtype=dtype, shape=shape).flush()
    start = 0
    for path, part in zip(sources, sums, strict=True):
        for rows in sequential_chunks(len(part.junk), 4096):
            block = (read_rows(path, rows) - mean.astype(np.float32)) / divisor
            block[part.junk[rows]] = 0.0
            write_rows(out, start + rows[0], block.astype(dtype))
        start += len(part.junk)
    return total.junk, scale


def _write_info(
    gmm: np.ndarray,
    particles: ParticleSet,
    grid: FourierGrid,
    band: tuple[float | None, float | None],
    junk: np.ndarray,
    scale: np.ndarray,
    out: Path,
) -> FeatureInfo:
    """Write the sidecar: what the features were computed from and how they were scaled."""
    junk_rows = np.flatnonzero(junk)
    if junk_rows.size:
        log.warning(
            "features: %d junk particles (non-finite image or gradient), index %s",
            junk_rows.size,
            ", ".join(str(i) for i in particles.index[junk_rows][:20]),
        )
    info = FeatureInfo(
        gmm_sha256=gmm_checksum(gmm),
        n_gaussians=len(gmm),
        n_particles=particles.n,
        box=grid.box,
        apix=float(grid.apix),
        res_lo=band[0],
        res_hi=band[1],
        ring_lo=grid.ring_lo,
        ring_hi=grid.ring_hi,
        table=str(particles.table),
        scale=[float(s) for s in scale],
        junk_rows=[int(r) for r in junk_rows],
        junk_index=[int(i) for i in particles.index[junk_rows]],
    )
    with atomic_output(sidecar_path(out)) as tmp:
        tmp.write_text(json.dumps(asdict(info), indent=1) + "\n")
    return info


def open_features(path: str | os.PathLike, gmm: np.ndarray, particles: ParticleSet) -> FeatureInfo:
    """The sidecar of a features file, after checking it belongs to this GMM and table."""
    path = Path(path)
    side = sidecar_path(path)
    if not path.is_file() or not side.is_file():
        raise InputError(f"{path}: features file or its sidecar {side.name} not found")
    info = FeatureInfo(**json.loads(side.read_text()))
    if info.gmm_sha256 != gmm_checksum(gmm) or info.n_gaussians != len(gmm):
        raise InputError(
            f"{path}: features were computed from another GMM ({info.n_gaussians} Gaussians, "
            f"sha256 {info.gmm_sha256[:12]}) than the neutral model given ({len(gmm)} Gaussians, "
            f"sha256 {gmm_checksum(gmm)[:12]}); recompute the features"
        )
    if info.n_particles != particles.n:
        raise InputError(
            f"{path}: features hold {info.n_particles} particles, the table "
            f"{particles.table} has {particles.n}; recompute the features"
        )
    if info.box != particles.box or not np.isclose(info.apix, particles.apix, rtol=1e-4):
        raise InputError(
            f"{path}: features were computed at box {info.box}, {info.apix:.4g} A/pixel; "
            f"the stack {particles.stack} has box {particles.box}, "
            f"{particles.apix:.4g} A/pixel"
        )
    shape = np.load(path, mmap_mode="r").shape
    if shape != (info.n_particles, 5 * info.n_gaussians):
        raise InputError(f"{path}: array of shape {shape} does not match its sidecar {side.name}")
    return info


@dataclass(frozen=True)
class FeatureJob:
    """The files and loss of one features job of the workflow."""

    table: str  # particle table (import/{half}.csv or a refinement round's)
    stack: str
    gmm: str  # the half's neutral GMM (text)
    junk: str  # junk/{half}.csv
    choices: str  # choices.yaml: the particles' SNR
    band: dict  # train: res_lo, res_hi, frc_weights (chosen values filled in), feature_dtype


def run_features_job(
    job: FeatureJob, out: str | os.PathLike, part: tuple[int, int, int] | None = None
) -> str:
    """Read a job's inputs and write the features of every particle, or with ``part``
    (k, parts, size) the raw gradients of part k (feature_part); returns a progress line."""
    import pandas as pd

    from .choices import load_snr
    from .gmmio import read_text
    from .junk import junk_rows
    from .masks import check_extent
    from .streaming import load_particles

    particles = load_particles(job.table, job.stack)
    neutral, box, apix = read_text(job.gmm)
    check_extent(f"GMM {job.gmm}", box, apix, particles)
    loss = dict(
        res_lo=job.band["res_lo"],
        res_hi=job.band["res_hi"],
        exclude=list(junk_rows(pd.read_csv(job.junk))),
        frc_weights=job.band["frc_weights"],
        snr=load_snr(job.choices),
    )
    if part is not None:
        k, parts, size = part
        feature_part(neutral, particles, out, k, parts, part_size=size, **loss)
        return f"part {k + 1} of {parts} of {particles.n} particles, {len(neutral)} Gaussians"
    info = compute_features(neutral, particles, out, dtype=job.band["feature_dtype"], **loss)
    return f"{particles.n} particles, {len(neutral)} Gaussians, {len(info.junk_rows)} junk"
