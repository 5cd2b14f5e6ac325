"""Particles of one canonical table read from disk in chunks, so memory does not grow with n.

A table (``import/{half}.csv``) is loaded once but only the columns training needs
(original index, stack row, rotation, shift, CTF): ~100 bytes a particle. Images are read
chunk by chunk through the cropped stack's ImageSource (gmmscape.images; io.mrc.MrcStack
maps the file only for the read, so touched pages do not stay resident) and per-particle
arrays on disk (features) are read and written likewise through short-lived mappings.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .ctf import CTFParams
from .errors import InputError
from .images import ImageSource, cropped_source
from .importer import PREMULTIPLIED
from .io.mrc import MrcStack
from .table import COPY, CTF_COLUMNS, ROTATION_COLUMNS, TRAINING_COLUMNS


@dataclass(frozen=True)
class ParticleSet:
    """Poses of a particle table and access to its images, at the stack's (crop) box."""

    table: Path
    stack: Path
    source: ImageSource
    index: np.ndarray  # (n,) int64: the particle's row in the user's input file
    stack_index: np.ndarray  # (n,) int64: its row in the stack
    rotations: np.ndarray  # (n, 3, 3) float32
    shifts: np.ndarray  # (n, 2) float32, pixels of the crop box
    ctf: CTFParams | None = None  # per particle; None: unknown or applied to the images
    copy: np.ndarray | None = None  # (n,) int64 symmetry copy (gmmscape.symmetry), if expanded

    @property
    def n(self) -> int:
        return len(self.index)

    @property
    def box(self) -> int:
        return self.source.box

    @property
    def apix(self) -> float:
        return self.source.apix

    @property
    def frame_source(self) -> str:
        return f"the particles of {self.stack}"

    def images(self, rows: np.ndarray) -> np.ndarray:
        """Images (k, b, b) float32 of the table rows `rows` (sorted reads are fastest).
        The cropped stack's source needs only their stack rows, not the whole table."""
        return self.source.read(pd.DataFrame({"stack_index": self.stack_index[rows]}))


def load_particles(table: str | os.PathLike, stack: str | os.PathLike) -> ParticleSet:
    """Read the pose columns of a canonical table and open its cropped stack (shifts are
    scaled from the original box to the stack's)."""
    table = Path(table)
    if not table.is_file():
        raise InputError(f"{table}: particle table not found")
    head = pd.read_csv(table, nrows=0).columns
    missing = [c for c in TRAINING_COLUMNS if c not in head]
    if missing:
        raise InputError(f"{table}: missing columns {', '.join(missing)} of the particle table")
    extra = [c for c in ("window", COPY) if c in head]
    frame = pd.read_csv(table, usecols=[*TRAINING_COLUMNS, *extra])
    if frame.empty:
        raise InputError(f"{table}: the particle table has no rows")
    images = MrcStack(stack)
    stack_index = frame["stack_index"].to_numpy(np.int64)
    bad = np.flatnonzero((stack_index < 0) | (stack_index >= images.n))
    if bad.size:
        raise InputError(
            f"{table} row {bad[0]}: stack_index {stack_index[bad[0]]} is outside "
            f"{stack}, which holds {images.n} images (table and stack from different imports?)"
        )
    source = cropped_source(images)
    return ParticleSet(
        ctf=None if source.images_ctf == PREMULTIPLIED else _table_ctf(table),
        table=table,
        stack=images.path,
        source=source,
        index=frame["index"].to_numpy(np.int64),
        stack_index=stack_index,
        rotations=frame[ROTATION_COLUMNS].to_numpy(np.float32).reshape(-1, 3, 3),
        shifts=source.shifts(frame).astype(np.float32),
        copy=frame[COPY].to_numpy(np.int64) if COPY in frame else None,
    )


def _table_ctf(table: Path) -> CTFParams | None:
    """The CTF of the table's particles, when every particle has one."""
    head = pd.read_csv(table, nrows=0).columns
    if not set(CTF_COLUMNS) <= set(head):
        return None
    frame = pd.read_csv(table, usecols=CTF_COLUMNS)
    if frame[["defocus_u", "voltage"]].isna().any().any():
        return None
    return CTFParams.from_table(frame)


def read_rows(path: str | os.PathLike, rows: np.ndarray, dtype: type | None = None) -> np.ndarray:
    """Rows of an on-disk .npy array through a mapping that lives only for this read, as
    ``dtype`` (default: the file's; features stored as float16 are read as float32)."""
    data = np.load(path, mmap_mode="r")
    try:
        return np.array(data[rows], dtype=dtype)
    finally:
        del data


def write_rows(path: str | os.PathLike, start: int, values: np.ndarray) -> None:
    """Write consecutive rows from `start` into an existing .npy, mapping it only meanwhile."""
    data = np.lib.format.open_memmap(path, mode="r+")
    try:
        data[start : start + len(values)] = values
        data.flush()
    finally:
        del data


def chunk_order(n: int, chunk: int, seed: int, epoch: int) -> Iterator[np.ndarray]:
    """Row indices in shuffled chunks: chunks of consecutive rows in random order, rows
    shuffled within each chunk. Seeded by (seed, epoch), so a resumed epoch repeats.

    Consecutive rows keep disk reads local while the order still changes every epoch.
    """
    rng = np.random.default_rng([seed, epoch])
    starts = np.arange(0, n, chunk)
    for start in rng.permutation(starts):
        yield start + rng.permutation(min(chunk, n - start))


PART_ROWS = 50_000  # rows per part of a pass split into cluster jobs


def part_count(n: int, size: int = PART_ROWS) -> int:
    """Parts of `size` rows that hold n rows (at least one)."""
    return max(1, -(-n // size))


def part_rows(n: int, part: int, parts: int, size: int = PART_ROWS) -> np.ndarray:
    """Table rows of part k of `parts`: `size` rows each, the last one taking the rest (so
    that a count estimated before the table existed still covers every row)."""
    if not 0 <= part < parts:
        raise ValueError(f"part {part} of {parts}")
    start = min(part * size, n)
    stop = n if part == parts - 1 else min(start + size, n)
    return np.arange(start, stop)


def sequential_chunks(n: int, chunk: int) -> Iterator[np.ndarray]:
    """Row indices 0..n-1 in consecutive chunks (for passes that keep table order)."""
    for start in range(0, n, chunk):
        yield np.arange(start, min(start + chunk, n))
