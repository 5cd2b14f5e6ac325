"""Small helpers every reader and writer shares: atomic outputs, path lookup, parsed records."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds.

    A later stage must never trust a half-written file, so a failure (or a kill) leaves
    at most a hidden temporary file, never a file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def resolve_path(name: str, base_dir: Path, what: str) -> Path:
    """Find a file named in a metadata file: absolute, beside the metadata file, or from cwd.

    RELION writes image paths relative to its project folder (the cwd of the run), other
    tools relative to the STAR/.lst file, so both are tried in that order.
    """
    relative = [(base_dir / name).resolve(), (Path.cwd() / name).resolve()]
    candidates = [Path(name)] if Path(name).is_absolute() else list(dict.fromkeys(relative))
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise InputError(f"{what}: image file '{name}' not found (looked for {tried})")


@dataclass
class ParticleRecords:
    """Per-particle metadata as parsed from a STAR or .lst file, before the canonical table.

    Arrays have one entry per particle in input order; CTF fields are NaN where the input
    has no CTF, `subset` is 0 where the input has no even/odd assignment.
    """

    format: str  # "relion30" | "relion31" | "eman2"
    source_file: Path
    rotations: np.ndarray  # (n, 3, 3)
    shifts: np.ndarray  # (n, 2) pixels of the original box
    ctf: dict[str, np.ndarray]  # CTFParams field name -> (n,)
    source: list[str]  # absolute image file paths
    source_index: np.ndarray  # (n,) 0-based image index in source
    optics_group: np.ndarray  # (n,) int
    apix: np.ndarray  # (n,) Angstrom per pixel
    box: np.ndarray  # (n,) pixels
    subset: np.ndarray  # (n,) 1, 2 or 0 (unknown)
