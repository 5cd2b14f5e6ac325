"""Tiny particle data sets on disk (RELION and EMAN2 forms of the same particles) for tests."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile

from gmmscape.geometry import matrix_to_relion, random_rotations
from gmmscape.io import write_star

CTF_FIELDS = ("defocus_u", "defocus_v", "defocus_angle", "voltage", "cs", "amp_contrast")


@dataclass
class Particles:
    """Ground truth of a small data set: poses in our convention, CTF, images and their files."""

    R: np.ndarray
    shifts: np.ndarray  # pixels
    ctf: dict[str, np.ndarray]
    apix: np.ndarray
    images: list[np.ndarray]
    stacks: list[Path] = field(default_factory=list)  # one per particle
    stack_index: np.ndarray = None  # 0-based

    @property
    def n(self) -> int:
        return len(self.R)


def make_particles(n: int = 10, box: int = 32, apix: float = 1.5, seed: int = 0) -> Particles:
    rng = np.random.default_rng(seed)
    u = rng.uniform(8000, 25000, n)
    ctf = {
        "defocus_u": u,
        "defocus_v": u - rng.uniform(0, 800, n),
        "defocus_angle": rng.uniform(-180, 180, n),
        "voltage": np.full(n, 300.0),
        "cs": np.full(n, 2.7),
        "amp_contrast": np.full(n, 0.1),
    }
    images = list(rng.standard_normal((n, box, box)).astype(np.float32))
    return Particles(
        R=random_rotations(n, rng),
        shifts=rng.uniform(-3, 3, (n, 2)),
        ctf=ctf,
        apix=np.full(n, apix),
        images=images,
    )


def write_mrcs(path: Path, images: np.ndarray, apix: float) -> Path:
    with warnings.catch_warnings(), mrcfile.new(path, overwrite=True) as mrc:
        warnings.simplefilter("ignore", RuntimeWarning)  # bad-input tests write NaN/inf
        mrc.set_data(np.asarray(images, dtype=np.float32))
        mrc.set_image_stack()
        mrc.voxel_size = apix
    return path


def write_stacks(p: Particles, folder: Path, n_stacks: int = 2, suffix: str = ".mrcs") -> None:
    """Spread the particles over a few stacks (round robin), recording where each one went."""
    folder.mkdir(parents=True, exist_ok=True)
    which = np.arange(p.n) % n_stacks
    p.stacks, p.stack_index = [None] * p.n, np.zeros(p.n, dtype=int)
    for s in range(n_stacks):
        members = np.flatnonzero(which == s)
        path = folder / f"stack{s}{suffix}"
        write_mrcs(path, np.stack([p.images[i] for i in members]), float(p.apix[members[0]]))
        for k, i in enumerate(members):
            p.stacks[i], p.stack_index[i] = path, k


def _relion_columns(p: Particles, star_dir: Path) -> dict:
    angles = matrix_to_relion(p.R)
    names = [
        f"{k + 1:06d}@{Path(s).relative_to(star_dir)}"
        for k, s in zip(p.stack_index, p.stacks, strict=True)
    ]
    return {
        "rlnImageName": names,
        "rlnAngleRot": angles[:, 0],
        "rlnAngleTilt": angles[:, 1],
        "rlnAnglePsi": angles[:, 2],
        "rlnDefocusU": p.ctf["defocus_u"],
        "rlnDefocusV": p.ctf["defocus_v"],
        "rlnDefocusAngle": p.ctf["defocus_angle"],
    }


def write_star31(p: Particles, path: Path, groups: np.ndarray | None = None, **extra) -> Path:
    """RELION 3.1 file; an optics group takes voltage/Cs/Q0/pixel size/box of its first member."""
    groups = np.ones(p.n, dtype=int) if groups is None else np.asarray(groups)
    first = [int(np.flatnonzero(groups == g)[0]) for g in np.unique(groups)]
    optics = pd.DataFrame(
        {
            "rlnOpticsGroupName": [f"opticsGroup{groups[i]}" for i in first],
            "rlnOpticsGroup": groups[first],
            "rlnVoltage": p.ctf["voltage"][first],
            "rlnSphericalAberration": p.ctf["cs"][first],
            "rlnAmplitudeContrast": p.ctf["amp_contrast"][first],
            "rlnImagePixelSize": p.apix[first],
            "rlnImageSize": [p.images[i].shape[0] for i in first],
            "rlnImageDimensionality": 2,
        }
    )
    columns = _relion_columns(p, path.parent)
    columns |= {
        "rlnOriginXAngst": -p.shifts[:, 0] * p.apix,
        "rlnOriginYAngst": -p.shifts[:, 1] * p.apix,
        "rlnOpticsGroup": groups,
    }
    write_star(path, optics, pd.DataFrame(columns | extra))
    return path


def write_star30(p: Particles, path: Path, detector: bool = True, **extra) -> Path:
    """RELION 3.0 file: one table, origins in pixels, pixel size as detector pixel / mag."""
    columns = _relion_columns(p, path.parent)
    columns |= {
        "rlnOriginX": -p.shifts[:, 0],
        "rlnOriginY": -p.shifts[:, 1],
        "rlnVoltage": p.ctf["voltage"],
        "rlnSphericalAberration": p.ctf["cs"],
        "rlnAmplitudeContrast": p.ctf["amp_contrast"],
    }
    if detector:
        columns |= {"rlnDetectorPixelSize": p.apix * 50000 / 1e4, "rlnMagnification": 50000.0}
    starfile.write(pd.DataFrame(columns | extra), path)
    return path
