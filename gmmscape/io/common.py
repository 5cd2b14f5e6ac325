"""Small helpers every reader and writer shares: atomic outputs, path lookup, parsed records."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
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
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def resolve_path(name: str, base_dir: Path, what: str, project_levels: int = 0) -> Path:
    """Find a file named in a metadata file: absolute, beside the metadata file, from cwd,
    or from up to `project_levels` folders above the metadata file.

    RELION writes image paths relative to its project folder (the cwd of the run), other
    tools relative to the STAR/.lst file, so both are tried in that order; a RELION job's
    output (Refine3D/job020/run_data.star) lies two folders below the project folder, so
    it is found without running from there.
    """
    relative = [(base_dir / name).resolve(), (Path.cwd() / name).resolve()]
    relative += [(folder / name).resolve() for folder in base_dir.parents[:project_levels]]
    candidates = [Path(name)] if Path(name).is_absolute() else list(dict.fromkeys(relative))
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise InputError(f"{what}: image file '{name}' not found (looked for {tried})")


# What a particle image holds: the recorded image X = CTF * P + noise ("raw"),
# sign(CTF) * X ("flipped") or CTF * X ("premultiplied", RELION's CtfPremultiplied).
CTF_STATES = ("raw", "flipped", "premultiplied")


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
    ctf_state: np.ndarray | None = None  # (n,) CTF_STATES as the file says; None: raw
    notes: list[str] = field(default_factory=list)  # defaults taken, once per kind

    def states(self) -> np.ndarray:
        """ctf_state, or every particle raw when the file says nothing."""
        if self.ctf_state is None:
            return np.full(len(self.source), CTF_STATES[0], dtype=object)
        return np.asarray(self.ctf_state, dtype=object)


def override_notes(apix: float | None, stated: np.ndarray) -> list[str]:
    """The note that an `apix` override replaces other pixel sizes stated by the input."""
    stated = np.asarray(stated, dtype=np.float64)
    stated = np.unique(stated[np.isfinite(stated)].round(4))
    differ = stated[np.abs(stated - (apix or 0.0)) > 1e-4 * (apix or 0.0)]
    if apix is None or differ.size == 0:
        return []
    values = ", ".join(f"{a:.4g}" for a in differ)
    return [f"apix {apix:g} A replaces the pixel size the input states ({values} A)"]
