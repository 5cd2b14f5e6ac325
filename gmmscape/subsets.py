"""Particle subsets per class, in the user's own format, to take back to RELION/cryoSPARC/EMAN2.

RELION input: a RELION 3.1 STAR of the selected rows with every original column and
value and the original optics table; image names stay as written in the input (they
point at the original, unbinned particles and resolve from the same project folder).
A RELION 3.0 input is converted as relion_convert_star does: optics columns move to
a data_optics table (one group per distinct voltage / Cs / amplitude contrast),
pixel origins become rlnOriginX/YAngst, every other column is kept.
EMAN2 input: a .lst of the selected records, each record's dict kept verbatim and its
image path made absolute (poses are not converted, so nothing is lost).
cryoSPARC input: a .cs of the selected rows with every field of the particle file and its
passthrough file, plus the .csg group file that cryoSPARC's Import Result Group job reads
(gmmscape.io.cryosparc.write_cs_subset); and, given the import's table, a RELION 3.1 STAR
of the same particles (poses and CTF as imported, images by absolute path) for RELION.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from .clustering import UNASSIGNED
from .errors import InputError
from .io.cryosparc import write_cs_subset
from .io.eman2 import lst_records, write_lst
from .io.star import write_star

_OPTICS_30 = ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast")
_DROPPED_30 = ("rlnMagnification", "rlnDetectorPixelSize")


def _check_rows(rows: np.ndarray, n: int, path: Path) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.int64)
    bad = rows[(rows < 0) | (rows >= n)]
    if bad.size:
        raise InputError(f"{path}: particle index {bad[0]} is outside its {n} rows")
    return rows


def star_subset(
    path: str | os.PathLike, rows: np.ndarray, *, apix: float, box: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(optics, particles) tables of the STAR rows ``rows`` (0-based), in RELION 3.1 form.

    ``apix``/``box``: the particles' pixel size and box, needed only to convert 3.0 files.
    """
    path = Path(path)
    blocks = starfile.read(path, always_dict=True)
    if "particles" in blocks:
        particles, optics = blocks["particles"], blocks.get("optics")
    elif len(blocks) == 1:
        particles, optics = next(iter(blocks.values())), None
    else:
        raise InputError(f"{path}: expected data_particles (3.1) or one table (3.0)")
    rows = _check_rows(rows, len(particles), path)
    selected = particles.iloc[rows].reset_index(drop=True)
    if optics is None:
        return _convert_30(selected, apix, box)
    return optics, selected


def _convert_30(
    particles: pd.DataFrame, apix: float, box: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """RELION 3.0 particle rows -> RELION 3.1 (optics, particles)."""
    moved = [c for c in _OPTICS_30 if c in particles]
    if moved:
        keys = particles[moved].astype(float).round(6)
        group = keys.groupby(moved, sort=False).ngroup().to_numpy() + 1
        optics = keys.drop_duplicates().reset_index(drop=True)
    else:
        group, optics = np.ones(len(particles), dtype=int), pd.DataFrame(index=[0])
    optics.insert(0, "rlnOpticsGroupName", [f"opticsGroup{g + 1}" for g in range(len(optics))])
    optics.insert(0, "rlnOpticsGroup", np.arange(1, len(optics) + 1))
    optics["rlnImagePixelSize"] = float(apix)
    optics["rlnImageSize"] = int(box)
    optics["rlnImageDimensionality"] = 2
    out = particles.drop(columns=[*moved, *(c for c in _DROPPED_30 if c in particles)])
    for axis in "XY":
        if f"rlnOrigin{axis}" in out:
            out[f"rlnOrigin{axis}Angst"] = out.pop(f"rlnOrigin{axis}").astype(float) * apix
    out["rlnOpticsGroup"] = group
    return optics, out


def lst_subset(path: str | os.PathLike, rows: np.ndarray) -> list[tuple[int, str, str]]:
    """Records (image index, absolute image path, original dict text) of .lst rows ``rows``."""
    path = Path(path)
    lines = lst_records(path)
    records = []
    for row in _check_rows(rows, len(lines), path):
        index, image, meta = (lines[row].rstrip().split("\t", 2) + ["", ""])[:3]
        image_path = Path(image) if Path(image).is_absolute() else path.parent / image
        records.append((int(index), str(image_path.resolve()), meta))
    return records


def table_star(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """RELION 3.1 (optics, particles) of canonical-table rows: poses, CTF, halves and the
    original images by absolute path; one optics group per table optics group."""
    groups = table.drop_duplicates("optics_group").sort_values("optics_group")
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": groups["optics_group"].to_numpy(),
            "rlnOpticsGroupName": [f"opticsGroup{g}" for g in groups["optics_group"]],
            "rlnVoltage": groups["voltage"].to_numpy(),
            "rlnSphericalAberration": groups["cs"].to_numpy(),
            "rlnAmplitudeContrast": groups["amp_contrast"].to_numpy(),
            "rlnImagePixelSize": groups["apix"].to_numpy(),
            "rlnImageSize": groups["box"].to_numpy(),
            "rlnImageDimensionality": 2,
        }
    )
    apix = table["apix"].to_numpy()
    particles = pd.DataFrame(
        {
            "rlnImageName": [
                f"{i + 1:06d}@{s}"
                for i, s in zip(table["source_index"], table["source"], strict=True)
            ],
            "rlnAngleRot": table["rot"].to_numpy(),
            "rlnAngleTilt": table["tilt"].to_numpy(),
            "rlnAnglePsi": table["psi"].to_numpy(),
            "rlnOriginXAngst": -table["shift_x"].to_numpy() * apix,
            "rlnOriginYAngst": -table["shift_y"].to_numpy() * apix,
            "rlnDefocusU": table["defocus_u"].to_numpy(),
            "rlnDefocusV": table["defocus_v"].to_numpy(),
            "rlnDefocusAngle": table["defocus_angle"].to_numpy(),
            "rlnPhaseShift": table["phase_shift"].to_numpy(),
            "rlnCtfBfactor": table["bfactor"].to_numpy(),
            "rlnOpticsGroup": table["optics_group"].to_numpy(),
            "rlnRandomSubset": table["subset"].to_numpy(),
        }
    )
    return optics, particles


def write_subset(
    particles: str | os.PathLike,
    rows: np.ndarray,
    out: str | os.PathLike,
    meta: dict,
    table: pd.DataFrame | None = None,
) -> Path:
    """Write the rows ``rows`` of the user's particle file as ``out`` + .star, .lst or .cs
    (with its .csg, and with ``table``, the import's table, also as ``out``.star).

    ``meta`` is the import's meta.json (original pixel size and box for 3.0 STAR files).
    """
    particles = Path(particles)
    if particles.suffix.lower() == ".cs":
        target = write_cs_subset(particles, rows, out)
        if table is not None:
            position = pd.Index(table["index"]).get_indexer(np.asarray(rows))
            if (position < 0).any():
                raise InputError(
                    f"particle index {rows[position < 0][0]} is not in the import's table"
                )
            write_star(target.with_suffix(".star"), *table_star(table.iloc[position]))
        return target
    if particles.suffix.lower() == ".lst":
        target = Path(out).with_suffix(".lst")
        write_lst(target, lst_subset(particles, rows), comment=f"subset of {particles}")
        return target
    target = Path(out).with_suffix(".star")
    optics, selected = star_subset(
        particles, rows, apix=meta["apix_original"], box=meta["box_original"]
    )
    write_star(target, optics, selected)
    return target


def write_expanded_subset(
    particles: str | os.PathLike,
    keys: pd.DataFrame,
    out: str | os.PathLike,
    meta: dict,
    table: pd.DataFrame,
) -> Path:
    """Symmetry copies (``keys``: index, copy) as ``out``.star, the form
    relion_particle_symmetry_expand writes: each copy is its particle's row (RELION 3.1,
    every column; a .cs or .lst input's poses and CTF as imported) with the copy's
    rlnAngleRot/Tilt/Psi from the expanded ``table`` (gmmscape.symmetry.expand_table)."""
    from .reconstruct import table_rows

    index = keys["index"].to_numpy(np.int64)
    rows = table.iloc[table_rows(table, index, keys["copy"].to_numpy(np.int64))]
    target = Path(out).with_suffix(".star")
    if Path(particles).suffix.lower() != ".star":
        write_star(target, *table_star(rows))
        return target
    optics, selected = star_subset(
        particles, index, apix=meta["apix_original"], box=meta["box_original"]
    )
    for column, name in (("rlnAngleRot", "rot"), ("rlnAngleTilt", "tilt"), ("rlnAnglePsi", "psi")):
        selected[column] = rows[name].to_numpy(np.float64)
    write_star(target, optics, selected)
    return target


def write_class_subsets(
    particles: str | os.PathLike,
    landscape: pd.DataFrame,
    outdir: str | os.PathLike,
    meta: dict,
    table: pd.DataFrame | None = None,
    *,
    expanded: bool = True,
) -> pd.DataFrame:
    """One subset file per class of a landscape table (``index``, ``cluster``) in outdir
    (``table``: the import's, for the STAR beside a .cs subset). A landscape of symmetry
    copies (``copy`` column, ``table`` the expanded one) gives, ``expanded``, the class's
    copies (``write_expanded_subset``), else the particles with a copy in the class, once.

    Returns a table: cluster, particles (rows written), file.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    copies = "copy" in landscape
    if copies and table is None:
        raise InputError("subsets of symmetry copies need the expanded particle table")
    original = table[table["copy"] == 0] if table is not None and "copy" in table else table
    rows = []
    for k, group in landscape.groupby("cluster"):
        if k == UNASSIGNED:
            continue
        out = outdir / f"class_{k:02d}"
        if copies and expanded:
            keys = group.sort_values(["index", "copy"])
            path, count = write_expanded_subset(particles, keys, out, meta, table), len(keys)
        else:
            index = np.unique(group["index"].to_numpy())
            path, count = write_subset(particles, index, out, meta, original), len(index)
        rows.append({"cluster": int(k), "particles": count, "file": path.name})
    return pd.DataFrame(rows, columns=["cluster", "particles", "file"])
