"""RELION STAR files: read particles from 3.0 (one table, origins in pixels) and 3.1+
(data_optics + data_particles, origins in Angstrom), write 3.1 files.

Every column is looked up first in the particle table, then in the particle's optics
group, so one code path serves both versions and per-particle overrides. Optional CTF
columns take RELION's own defaults (amplitude contrast 0.1, phase shift 0, B-factor 0),
each default noted once in the records. _rlnCtfDataArePhaseFlipped and
_rlnCtfDataAreCtfPremultiplied (optics or particle table) give what the images hold.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from ..errors import InputError
from ..geometry import relion_origin_to_shift, relion_to_matrix
from .common import CTF_STATES, ParticleRecords, atomic_output, override_notes, resolve_path
from .stacks import open_sources

_REQUIRED = object()

# CTFParams field -> (STAR column, default when absent: RELION's own)
_CTF_COLUMNS = {
    "defocus_u": ("rlnDefocusU", _REQUIRED),
    "defocus_v": ("rlnDefocusV", _REQUIRED),
    "defocus_angle": ("rlnDefocusAngle", _REQUIRED),
    "voltage": ("rlnVoltage", _REQUIRED),
    "cs": ("rlnSphericalAberration", _REQUIRED),
    "amp_contrast": ("rlnAmplitudeContrast", 0.1),
    "phase_shift": ("rlnPhaseShift", 0.0),
    "bfactor": ("rlnCtfBfactor", 0.0),
}
# CTF_STATES index -> the flag column saying the images are in that state
_STATE_FLAGS = {1: "rlnCtfDataArePhaseFlipped", 2: "rlnCtfDataAreCtfPremultiplied"}
_TOMO_COLUMNS = ("rlnTomoName", "rlnTomoParticleName", "rlnTomoParticleId")
_JOB_DEPTH = 2  # a RELION job writes <project>/<JobType>/jobNNN/run_data.star


class _Table:
    """The particle table joined with each particle's optics row, with checked lookups."""

    def __init__(self, path: Path, particles: pd.DataFrame, optics: pd.DataFrame | None):
        self.path, self.particles, self.optics = path, particles.reset_index(drop=True), None
        if optics is not None:
            self.optics = self._join_optics(optics)

    def _join_optics(self, optics: pd.DataFrame) -> pd.DataFrame:
        if "rlnOpticsGroup" not in optics:
            raise InputError(f"{self.path}: data_optics has no _rlnOpticsGroup column")
        if "rlnOpticsGroup" not in self.particles:
            if len(optics) != 1:
                raise InputError(f"{self.path}: data_particles has no _rlnOpticsGroup column")
            self.particles["rlnOpticsGroup"] = optics["rlnOpticsGroup"].iloc[0]
        groups = self.numbers("rlnOpticsGroup").astype(int)
        table = optics.set_index(optics["rlnOpticsGroup"].astype(int))
        missing = ~np.isin(groups, table.index)
        if missing.any():
            i = int(np.flatnonzero(missing)[0])
            raise InputError(
                f"{self.path} row {i} (0-based): optics group {groups[i]} is not in data_optics"
            )
        return table.loc[groups].reset_index(drop=True)

    def has(self, name: str) -> bool:
        return name in self.particles or (self.optics is not None and name in self.optics)

    def numbers(self, name: str, default=_REQUIRED) -> np.ndarray:
        """Column `name` as float64 per particle, or `default` where the file has no such column."""
        if name in self.particles:
            column = self.particles[name]
        elif self.optics is not None and name in self.optics:
            column = self.optics[name]
        elif default is not _REQUIRED:
            return np.full(len(self.particles), float(default))
        else:
            where = "data_particles or data_optics" if self.optics is not None else "the table"
            raise InputError(f"{self.path}: missing column _{name} (expected in {where})")
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        if np.isnan(values).any():
            i = int(np.flatnonzero(np.isnan(values))[0])
            raise InputError(
                f"{self.path} row {i} (0-based): _{name} = {column.iloc[i]!r} is not a number"
            )
        return values


def _read_tables(path: Path) -> _Table:
    try:
        blocks = starfile.read(path, always_dict=True)
    except FileNotFoundError as err:
        raise InputError(f"{path}: STAR file not found") from err
    except Exception as err:  # starfile raises many kinds on malformed input
        raise InputError(f"{path}: not a readable STAR file ({err})") from err
    tables = {k: v for k, v in blocks.items() if isinstance(v, pd.DataFrame)}
    if "particles" in tables:
        particles, optics = tables["particles"], tables.get("optics")
    elif len(tables) == 1 and "optics" not in tables:
        particles, optics = next(iter(tables.values())), None
    else:
        raise InputError(
            f"{path}: expected data_optics + data_particles (RELION 3.1) or a single "
            f"particle table (RELION 3.0), found blocks {sorted(blocks)}"
        )
    if particles.empty:
        raise InputError(f"{path}: the particle table has no rows")
    _refuse_tomography(path, blocks, particles)
    return _Table(path, particles, optics)


def _refuse_tomography(path: Path, blocks: dict, particles: pd.DataFrame) -> None:
    """RELION 4/5 tomography particles name one sub-tomogram (or one stack of its tilt
    images) per particle, which would be read as image 1 of a stack: refused up front."""
    marks = [f"_{c}" for c in _TOMO_COLUMNS if c in particles]
    general = blocks.get("general")
    keys = general if isinstance(general, dict | pd.DataFrame) else ()
    marks += [f"_{k} in data_general" for k in keys if str(k).startswith("rlnTomo")]
    if marks:
        raise InputError(
            f"{path}: a RELION tomography particle file ({marks[0]}); expected "
            "single-particle images (the particles of a single-particle 3D refinement)"
        )


def _pixel_size(table: _Table, apix: float | None, notes: list[str]) -> np.ndarray:
    """Pixel size per particle: explicit override, rlnImagePixelSize, or detector / mag (3.0)."""
    if table.has("rlnImagePixelSize"):
        stated = table.numbers("rlnImagePixelSize")
    elif table.has("rlnDetectorPixelSize") and table.has("rlnMagnification"):
        stated = table.numbers("rlnDetectorPixelSize") * 1e4 / table.numbers("rlnMagnification")
    elif apix is None:
        raise InputError(
            f"{table.path}: cannot determine the pixel size (no _rlnImagePixelSize, nor "
            "_rlnDetectorPixelSize with _rlnMagnification); set apix"
        )
    else:
        return np.full(len(table.particles), float(apix))  # nothing stated to replace
    if apix is None:
        return stated
    notes += override_notes(apix, stated)
    return np.full(len(table.particles), float(apix))


def _check_2d(table: _Table) -> None:
    """3D images (sub-tomograms) would be read as their first z slice: refused."""
    if not table.has("rlnImageDimensionality"):
        return
    dims = table.numbers("rlnImageDimensionality")
    if (dims != 2).any():
        i = int(np.flatnonzero(dims != 2)[0])
        raise InputError(
            f"{table.path} row {i} (0-based): _rlnImageDimensionality is {dims[i]:g}; "
            "expected 2 (single-particle images, not sub-tomograms)"
        )


def _rotations(table: _Table) -> np.ndarray:
    """Rotation matrices from _rlnAngleRot/Tilt/Psi; a file without 3D poses (Extract,
    Class2D: psi only) is refused in one line."""
    missing = [f"_rlnAngle{a}" for a in ("Rot", "Tilt", "Psi") if not table.has(f"rlnAngle{a}")]
    if missing:
        raise InputError(
            f"{table.path}: no 3D poses (missing column {', '.join(missing)}); expected the "
            "particles of a 3D refinement or classification (e.g. Refine3D/jobNNN/run_data.star)"
        )
    return relion_to_matrix(*(table.numbers(f"rlnAngle{a}") for a in ("Rot", "Tilt", "Psi")))


def _origins_px(table: _Table, apix: np.ndarray) -> np.ndarray:
    """RELION origins in pixels: Angstrom columns (3.1) / apix, pixel columns (3.0), else 0."""
    if table.has("rlnOriginXAngst") or table.has("rlnOriginYAngst"):
        xy = [table.numbers(f"rlnOrigin{a}Angst") for a in "XY"]
        return np.stack(xy, -1) / apix[:, None]
    return np.stack([table.numbers(f"rlnOrigin{a}", 0.0) for a in "XY"], -1)


def _image_names(table: _Table) -> tuple[list[str], np.ndarray]:
    """rlnImageName "000012@Extract/stack.mrcs" -> (absolute stack paths, 0-based indices)."""
    if "rlnImageName" not in table.particles:
        raise InputError(f"{table.path}: missing column _rlnImageName")
    resolved: dict[str, str] = {}
    sources, indices = [], np.zeros(len(table.particles), dtype=np.int64)
    for row, name in enumerate(table.particles["rlnImageName"].astype(str)):
        number, at, file = name.partition("@")
        if not at:
            number, file = "1", name
        if not number.strip().isdigit() or not file:
            raise InputError(
                f"{table.path} row {row} (0-based): _rlnImageName '{name}' is not of the "
                "form 000012@stack.mrcs"
            )
        if file not in resolved:
            what = f"{table.path} row {row} (0-based)"
            resolved[file] = str(resolve_path(file, table.path.parent, what, _JOB_DEPTH))
        sources.append(resolved[file])
        indices[row] = int(number) - 1
    return sources, indices


def _subsets(table: _Table) -> np.ndarray:
    """rlnRandomSubset (1 or 2) when present, else 0 for a split the importer decides."""
    subset = table.numbers("rlnRandomSubset", 0.0).astype(int)
    if table.has("rlnRandomSubset") and not np.isin(subset, (1, 2)).all():
        i = int(np.flatnonzero(~np.isin(subset, (1, 2)))[0])
        raise InputError(
            f"{table.path} row {i} (0-based): _rlnRandomSubset {subset[i]}, expected 1 or 2"
        )
    return subset


def _ctf(table: _Table, notes: list[str]) -> dict[str, np.ndarray]:
    """CTFParams fields per particle; a column absent from the file takes RELION's default."""
    ctf = {}
    for field, (column, default) in _CTF_COLUMNS.items():
        if default is not _REQUIRED and not table.has(column):
            notes.append(f"no _{column}: {default:g} for every particle (RELION's default)")
        ctf[field] = table.numbers(column, default)
    return ctf


def _ctf_states(table: _Table) -> np.ndarray:
    """What each image holds (CTF_STATES) from RELION's flags; premultiplied wins."""
    state = np.full(len(table.particles), CTF_STATES[0], dtype=object)
    for index, column in _STATE_FLAGS.items():
        state[table.numbers(column, 0.0) != 0] = CTF_STATES[index]
    return state


def _boxes(table: _Table, sources: list[str], indices: np.ndarray) -> np.ndarray:
    """Box per particle from its stack's header, checked against rlnImageSize when given."""
    stacks = open_sources(sources, indices, table.path, index_base=1)
    box = np.array([stacks[s].box for s in sources])
    if table.has("rlnImageSize"):
        stated = table.numbers("rlnImageSize").astype(int)
        if (stated != box).any():
            i = int(np.flatnonzero(stated != box)[0])
            raise InputError(
                f"{table.path} row {i} (0-based): _rlnImageSize is {stated[i]} but "
                f"{sources[i]} holds {box[i]} x {box[i]} images"
            )
    return box


def read_star(path: str | os.PathLike, *, apix: float | None = None) -> ParticleRecords:
    """Particles of a RELION 3.0 or 3.1+ STAR file, with poses, CTF and image locations.

    `apix` overrides the pixel size of every particle (needed for 3.0 files without
    _rlnDetectorPixelSize/_rlnMagnification).
    """
    path = Path(path).resolve()
    table = _read_tables(path)
    _check_2d(table)
    rotations = _rotations(table)
    notes: list[str] = []
    pixel = _pixel_size(table, apix, notes)
    sources, indices = _image_names(table)
    return ParticleRecords(
        format="relion30" if table.optics is None else "relion31",
        source_file=path,
        rotations=rotations,
        shifts=relion_origin_to_shift(*_origins_px(table, pixel).T),
        ctf=_ctf(table, notes),
        source=sources,
        source_index=indices,
        optics_group=table.numbers("rlnOpticsGroup", 1).astype(int),
        apix=pixel,
        box=_boxes(table, sources, indices),
        subset=_subsets(table),
        ctf_state=_ctf_states(table),
        notes=notes,
    )


def write_star(path: str | os.PathLike, optics: pd.DataFrame, particles: pd.DataFrame) -> None:
    """Write a RELION 3.1+ STAR file (data_optics + data_particles); appears only when complete.

    Column names are given without the leading underscore (rlnImageName), as starfile reads
    them. Each block is preceded by RELION's "# version 30001" line.
    """
    with atomic_output(path) as tmp:
        starfile.write({"optics": optics, "particles": particles}, tmp)
        text = tmp.read_text()
        for block in ("\ndata_optics\n", "\ndata_particles\n"):
            text = text.replace(block, f"\n# version 30001\n{block}", 1)
        tmp.write_text(text)
