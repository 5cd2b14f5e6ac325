"""Writers (and the text reader) of GMM models: text table, PDB pseudo-atoms, MRC.

Positions in the text table stay box fractions (docs/conventions.md). The PDB and the
MRC share ChimeraX's placement of voxel (i, j, k) at (i, j, k) * apix with origin 0, so
the pseudo-atoms open overlaid on the density and on the input map: a Gaussian at box
fraction f sits at (f * box + box//2) * apix Angstrom. Every file is written to a
temporary name and renamed when complete, so a killed run never leaves a half file.
"""

from __future__ import annotations

import os
import re
import string
from pathlib import Path

import numpy as np

from .errors import InputError
from .io.common import atomic_output
from .io.mrc import write_map
from .projection import density

COLUMNS = "x y z amplitude sigma"
_META = re.compile(r"#\s*box\s+(\d+)\s+apix\s+([0-9.eE+-]+)")
_CHAINS = string.ascii_uppercase + string.ascii_lowercase + string.digits
_PER_CHAIN = 9999  # PDB residue numbers have four digits


def _check_gmm(gmm: np.ndarray) -> np.ndarray:
    gmm = np.asarray(gmm, dtype=np.float32)
    if gmm.ndim != 2 or gmm.shape[1] != 5:
        raise ValueError(f"a GMM is an (N, 5) array ({COLUMNS}), got shape {gmm.shape}")
    return gmm


def angstrom_positions(gmm: np.ndarray, box: int, apix: float) -> np.ndarray:
    """Centres (N, 3) x, y, z in Angstrom in the map's frame (voxel i at i * apix)."""
    return (np.asarray(gmm[:, :3], dtype=np.float64) * box + box // 2) * apix


def write_text(path: str | os.PathLike, gmm: np.ndarray, box: int, apix: float) -> None:
    """Plain table, one Gaussian per line; the header names the columns, box and pixel size."""
    gmm = _check_gmm(gmm)
    header = (
        f"{COLUMNS}\n"
        f"box {int(box)} apix {float(apix)!r}\n"
        "x, y, z, sigma in fractions of the box (Angstrom: (x * box + box//2) * apix); "
        "amplitude relative"
    )
    with atomic_output(path) as tmp:
        np.savetxt(tmp, gmm, fmt="%.9g", header=header)


def read_text(path: str | os.PathLike) -> tuple[np.ndarray, int, float]:
    """A model written by ``write_text``: (gmm (N, 5) float32, box, apix)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: GMM text file not found")
    lines = path.read_text().splitlines()
    meta = next((m for m in map(_META.match, lines) if m), None)
    if meta is None:
        raise InputError(f"{path}: expected a '# box <pixels> apix <Angstrom>' header line")
    rows = [line.split() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    for number, row in enumerate(rows, 1):
        if len(row) != 5:
            raise InputError(
                f"{path}: Gaussian {number} has {len(row)} columns, expected 5 ({COLUMNS})"
            )
    try:
        gmm = np.array(rows, dtype=np.float32).reshape(-1, 5)
    except ValueError as err:
        raise InputError(f"{path}: expected numbers in every column ({err})") from err
    if len(gmm) == 0 or not np.all(np.isfinite(gmm)) or np.any(gmm[:, 4] <= 0):
        raise InputError(f"{path}: expected at least one Gaussian, finite values, sigma > 0")
    return gmm, int(meta.group(1)), float(meta.group(2))


def _hetatm(serial: int, chain: str, residue: int, xyz: np.ndarray, occ: float, b: float) -> str:
    """One fixed-column PDB HETATM record: a carbon pseudo-atom CA of residue GMM."""
    x, y, z = xyz
    return (
        f"HETATM{serial % 100000:5d}  CA  GMM {chain}{residue:4d}    "
        f"{x:8.3f}{y:8.3f}{z:8.3f}{occ:6.2f}{b:6.2f}           C  "
    )


def write_pdb(path: str | os.PathLike, gmm: np.ndarray, box: int, apix: float) -> None:
    """Pseudo-atoms, one HETATM per Gaussian, in Angstrom on the map's frame.

    Occupancy holds the amplitude over the largest one (0-1) and the B-factor column the
    width sigma in Angstrom, so ChimeraX can colour or size atoms by them.
    """
    gmm = _check_gmm(gmm)
    if len(gmm) > len(_CHAINS) * _PER_CHAIN:
        raise ValueError(f"{len(gmm)} Gaussians do not fit in a PDB file")
    xyz = angstrom_positions(gmm, box, apix)
    occ = gmm[:, 3] / max(float(gmm[:, 3].max(initial=0.0)), np.finfo(np.float32).tiny)
    sigma = gmm[:, 4] * box * apix
    lines = [
        f"REMARK   1 GMMSCAPE GMM: {len(gmm)} GAUSSIANS, BOX {int(box)}, {float(apix):.4f} A/PIXEL",
        "REMARK   1 OCCUPANCY = AMPLITUDE / MAX AMPLITUDE; B-FACTOR COLUMN = SIGMA IN ANGSTROM",
    ]
    for i in range(len(gmm)):
        chain, residue = _CHAINS[i // _PER_CHAIN], i % _PER_CHAIN + 1
        lines.append(_hetatm(i + 1, chain, residue, xyz[i], occ[i], sigma[i]))
    lines.append("END")
    with atomic_output(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def write_density(path: str | os.PathLike, gmm: np.ndarray, box: int, apix: float) -> None:
    """The GMM's density sampled on the (box,)^3 grid as an MRC map with voxel size apix."""
    write_map(path, density(_check_gmm(gmm), box), apix)
