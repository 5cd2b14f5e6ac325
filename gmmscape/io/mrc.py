"""MRC maps and image stacks: read, write with the right voxel size, fill large stacks in chunks.

Stacks are memory-mapped one call at a time (open, copy the requested images, close):
a mapping kept open would keep every page it ever touched resident, so a pass over a
large stack would grow the process's memory to the size of the file.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import mrcfile
import numpy as np

from ..errors import InputError
from .common import atomic_output

log = logging.getLogger(__name__)


def _voxel_size(mrc, path: Path, apix: float | None) -> float:
    """The map's pixel size: the `apix` override when given (a differing header is logged),
    else the header's, which must then be set."""
    header = float(mrc.voxel_size.x)
    if apix is not None:
        if header > 0 and abs(header - apix) > 1e-4 * apix:
            log.info("%s: header voxel size %.4g A replaced by apix %.4g A", path, header, apix)
        return float(apix)
    if not header > 0:
        raise InputError(
            f"{path}: the MRC header gives voxel size {header:g} A (not set); "
            "set apix to the map's pixel size"
        )
    return header


def _open(path: Path, mode: str = "r", header_only: bool = False):
    """Open with mrcfile permissively: damaged headers warn, they do not stop an import."""
    if not path.is_file():
        raise InputError(f"{path}: MRC file not found")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            if header_only:
                return mrcfile.open(path, mode=mode, permissive=True, header_only=True)
            return mrcfile.mmap(path, mode=mode, permissive=True)
        except (ValueError, OSError) as err:
            raise InputError(f"{path}: not a readable MRC file ({err})") from err


def map_info(
    path: str | os.PathLike, apix: float | None = None
) -> tuple[tuple[int, int, int], float]:
    """Shape [z, y, x] and voxel size (Angstrom; `apix` overrides) of a map, from its header."""
    path = Path(path)
    with _open(path, header_only=True) as mrc:
        h = mrc.header
        return (int(h.nz), int(h.ny), int(h.nx)), _voxel_size(mrc, path, apix)


def read_volume(path: str | os.PathLike) -> np.ndarray:
    """A map's voxels as float32 [z, y, x], whatever its header says of the voxel size."""
    path = Path(path)
    with _open(path) as mrc:
        if mrc.data is None or mrc.data.ndim != 3:
            raise InputError(f"{path}: expected a 3D map")
        return np.array(mrc.data, dtype=np.float32)


def read_map(path: str | os.PathLike, apix: float | None = None) -> tuple[np.ndarray, float]:
    """A map as float32 [z, y, x] and its voxel size in Angstrom (`apix` overrides)."""
    return read_volume(path), map_info(path, apix)[1]


def write_map(path: str | os.PathLike, data: np.ndarray, apix: float) -> None:
    """Write a float32 map with its voxel size; the file appears only when complete."""
    with atomic_output(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.asarray(data, dtype=np.float32))
            mrc.voxel_size = float(apix)


class MrcStack:
    """A stack of square images in an MRC file (.mrcs, or .mrc holding one image or many)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        with _open(self.path, header_only=True) as mrc:
            h = mrc.header
            ny, nx = int(h.ny), int(h.nx)
            self.n = int(h.nz)
            self.apix = float(mrc.voxel_size.x)
        if min(nx, ny, self.n) < 1:
            raise InputError(
                f"{self.path}: header gives {self.n} images of {nx} x {ny}, not a stack"
            )
        if nx != ny:
            raise InputError(f"{self.path}: images are {nx} x {ny} pixels, expected square images")
        self.box = nx
        _check_complete(self.path, h, self.n)

    def read(self, indices: np.ndarray) -> np.ndarray:
        """Images at 0-based `indices` (any order, repeats allowed) as float32 (k, box, box)."""
        with _open(self.path) as mrc:
            if mrc.data is None or np.iscomplexobj(mrc.data):
                raise InputError(f"{self.path}: data block unreadable or not real-valued")
            data = mrc.data.reshape(self.n, self.box, self.box)
            return np.asarray(data[np.asarray(indices)], dtype=np.float32)


def _check_complete(path: Path, header, n: int) -> None:
    """A stack shorter than its header says (an interrupted copy or extraction) is named
    when opened, not after a long pass over the images that precede the missing ones."""
    try:
        itemsize = mrcfile.utils.dtype_from_mode(int(header.mode)).itemsize
    except ValueError as err:
        raise InputError(f"{path}: not a readable MRC stack ({err})") from err
    expected = 1024 + int(header.nsymbt) + n * int(header.nx) * int(header.ny) * itemsize
    size = path.stat().st_size
    if size < expected:
        raise InputError(
            f"{path}: truncated: the header gives {n} images of {int(header.nx)} x "
            f"{int(header.ny)} ({expected} bytes) but the file has {size} bytes; expected a "
            "complete stack (copy or extract it again)"
        )


def write_stack(
    path: str | os.PathLike, n: int, box: int, apix: float, chunks: Iterable[np.ndarray]
) -> None:
    """Write a float32 stack (n, box, box) from consecutive chunks, never holding it all.

    The file is created sparse with mrcfile.new_mmap, each chunk goes through a mapping
    opened only for that chunk, and the header statistics are accumulated on the way.
    The stack appears under `path` only once all n images are written.
    """
    with atomic_output(path) as tmp:
        with mrcfile.new_mmap(tmp, shape=(n, box, box), mrc_mode=2, overwrite=True) as mrc:
            mrc.set_image_stack()
            mrc.voxel_size = float(apix)
        stats = _Stats()
        start = 0
        for chunk in chunks:
            if len(chunk) == 0:
                continue
            stop = start + len(chunk)
            if stop > n:
                raise ValueError(f"write_stack: chunks hold more than the {n} images declared")
            with mrcfile.mmap(tmp, mode="r+") as mrc:
                mrc.data[start:stop] = chunk
            stats.add(chunk)
            start = stop
        if start != n:
            raise ValueError(f"write_stack: got {start} images, {n} declared")
        with mrcfile.mmap(tmp, mode="r+") as mrc:
            stats.write(mrc.header)


class _Stats:
    """Running min, max, mean and rms of all pixels, for the MRC header."""

    def __init__(self):
        self.count, self.total, self.total_sq = 0, 0.0, 0.0
        self.lo, self.hi = np.inf, -np.inf

    def add(self, chunk: np.ndarray) -> None:
        c = np.asarray(chunk, dtype=np.float64)
        self.count += c.size
        self.total += float(c.sum())
        self.total_sq += float(np.vdot(c, c))
        self.lo, self.hi = min(self.lo, float(c.min())), max(self.hi, float(c.max()))

    def write(self, header) -> None:
        mean = self.total / max(self.count, 1)
        header.dmin, header.dmax, header.dmean = self.lo, self.hi, mean
        header.rms = np.sqrt(max(self.total_sq / max(self.count, 1) - mean * mean, 0.0))
