"""cryoSPARC particle files (.cs): read poses, CTF and image locations; write row subsets
with their .csg group file.

A .cs is a NumPy structured array, one row per particle, fields named "<result>/<name>";
it is read and written with cryosparc-tools (``cryosparc.dataset.Dataset``). A job's
``<job>_passthrough_particles.cs`` beside it carries the fields the job did not change
(often the CTF and the picks); it is joined on ``uid``, the particle file's own fields
taking precedence.

Conventions, derived from the definitions used by pyem's csparc2star and cryoDRGN's
parse_pose_csparc (both map cryoSPARC onto RELION for the same particle images):

- ``alignments3D/pose`` is a Rodrigues axis-angle vector v (radians, |v| the angle). With
  E(v) = I + sin|v| K + (1 - cos|v|) K^2 (K the cross-product matrix of v/|v|, a rotation
  by |v| about v), RELION's matrix of the same particle is A = E(v)^T, which is our R
  (gmmscape.geometry).
- ``alignments3D/shift`` (pixels of ``alignments3D/psize_A``) is RELION's origin
  (rlnOriginX/Y), so our shift is t = -shift * psize_align / psize_blob pixels.
- CTF: ``ctf/df1_A`` = defocus U, ``df2_A`` = V, ``df_angle_rad`` = angle, phase shift in
  radians; voltage, Cs and amplitude contrast as they are; ``ctf/bfactor`` when present.
- Contrast: cryoSPARC's transfer function has the opposite sign of RELION's (cryoDRGN's
  CTF follows cryoSPARC's: -w cos - sqrt(1-w^2) sin of RELION's phase), and it models
  ``blob/sign`` * image, so a RELION-convention image (protein light) is -sign * image:
  particles imported from RELION carry sign -1, particles cryoSPARC extracts itself keep
  the micrographs' dark protein and carry +1. A particle with sign +1 is taken with its
  CTF shifted by 180 degrees of phase, which is the same linear model, (-CTF) * image,
  exact for phase flipping and reconstruction alike (and for RELION, in STAR subsets).
- ``alignments3D/split`` 0/1 is the even/odd half (RELION's rlnRandomSubset 1/2),
  ``ctf/exp_group_id`` the optics group (+1), ``blob/idx`` the 0-based image index.
- ``blob/path`` is relative to the cryoSPARC project folder (the parent of the job
  folder that holds the .cs) unless a particles folder is given; a leading '>' marks an
  imported (symlinked) file and is dropped.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import yaml
from scipy.spatial.transform import Rotation

from ..errors import InputError
from .common import ParticleRecords, atomic_output, override_notes
from .stacks import open_sources

log = logging.getLogger(__name__)

_CTF_REQUIRED = ("ctf/df1_A", "ctf/df2_A", "ctf/df_angle_rad", "ctf/accel_kv", "ctf/cs_mm")
_RESULT_TYPES = {"alignments_class": "alignments3D"}  # result-name prefix -> slot type
# Higher-order CTF terms of cryoSPARC's global CTF refinement, and their neutral values
# (zeros for each, anisomag included, as cryoSPARC writes them when nothing was refined)
_NEUTRAL = {"ctf/anisomag": 0.0, "ctf/tilt_A": 0.0, "ctf/trefoil_A": 0.0}
_NEUTRAL |= {"ctf/tetra_A": 0.0, "ctf/shift_A": 0.0}
_HIGHER_ORDER = tuple(_NEUTRAL)


def _dataset_class():
    try:
        from cryosparc.dataset import Dataset
    except ImportError as err:  # pragma: no cover - a dependency of the package
        raise InputError(
            "reading .cs files needs cryosparc-tools (pip install cryosparc-tools)"
        ) from err
    return Dataset


def _load(path: Path):
    try:
        return _dataset_class().load(str(path))
    except FileNotFoundError as err:
        raise InputError(f"{path}: cryoSPARC file not found") from err
    except Exception as err:  # numpy/cryosparc-tools raise many kinds on a bad file
        raise InputError(f"{path}: not a readable cryoSPARC .cs file ({err})") from err


def passthrough_file(path: str | os.PathLike) -> Path | None:
    """The job's passthrough file for a particle file, when it exists.

    J24/J24_particles.cs -> J24/J24_passthrough_particles.cs (also with the suffixes
    cryoSPARC adds, e.g. particles_selected -> passthrough_particles_selected). Files
    downloaded from the web interface carry the project, the job and the iteration
    (cryosparc_P3_J24_005_particles.cs beside cryosparc_P3_J24_passthrough_particles.cs
    or P3_J24_passthrough_particles.cs), so any passthrough file of the same job is taken.
    """
    path = Path(path)
    stem = path.stem
    where = stem.find("particles")
    rest = stem[where:] if where >= 0 else "particles"
    candidates = []
    if where >= 0 and "passthrough" not in stem:
        candidates.append(f"{stem[:where]}passthrough_{rest}.cs")
        candidates.append(f"{path.parent.name}_passthrough_{rest}.cs")
    candidates.append(f"{path.parent.name}_passthrough_particles.cs")
    job = re.search(r"(?:^|_)(J\d+)_", stem)
    if job and "passthrough" not in stem:
        same_job = re.compile(rf"(?:.*_)?{job[1]}_passthrough_{re.escape(rest)}\.cs")
        candidates += sorted(p.name for p in path.parent.glob("*.cs") if same_job.fullmatch(p.name))
    for name in dict.fromkeys(candidates):
        if (path.parent / name).is_file() and name != path.name:
            return path.parent / name
    return None


def load_particles(path: str | os.PathLike):
    """The particle Dataset of a .cs, its passthrough fields joined on uid (rows in file order)."""
    path = Path(path)
    data = _load(path)
    if "uid" not in data.fields() or len(data) == 0:
        raise InputError(f"{path}: expected a cryoSPARC particle table with a uid field and rows")
    extra = passthrough_file(path)
    if extra is None:
        return data
    other = _load(extra)
    new = [f for f in other.descr() if f[0] not in data.fields()]
    if not new:
        return data
    order = np.argsort(other["uid"], kind="stable")
    at = np.searchsorted(other["uid"], data["uid"], sorter=order)
    at = np.minimum(at, len(order) - 1)
    found = other["uid"][order[at]] == data["uid"]
    if not found.all():
        i = int(np.flatnonzero(~found)[0])
        raise InputError(
            f"{extra}: has no row for particle uid {data['uid'][i]} (row {i} of {path}); "
            "expected the passthrough file of the same job"
        )
    rows = order[at]
    joined = data.copy()
    joined.add_fields(new)
    for name, *_ in new:
        joined[name] = other[name][rows]
    log.info("%s: joined %d fields of %s", path.name, len(new), extra.name)
    return joined


def _column(data, name: str, path: Path, default: float | None = None) -> np.ndarray:
    if name in data.fields():
        return np.asarray(data[name], dtype=np.float64)
    if default is not None:
        return np.full(len(data), float(default))
    raise InputError(f"{path}: missing field {name} (nor in a passthrough file beside it)")


def _check_3d(data, path: Path) -> None:
    fields = data.fields()
    if "alignments3D/pose" in fields and "alignments3D/shift" in fields:
        return
    if any(f.startswith("alignments_class_") for f in fields):
        raise InputError(
            f"{path}: has per-class alignments (alignments_class_N) only; 3D poses "
            "(alignments3D/pose) are needed (use the particles of a 3D refinement)"
        )
    if any(f.startswith("alignments2D/") for f in fields):
        raise InputError(
            f"{path}: has 2D alignments only; 3D poses (alignments3D/pose) are needed "
            "(use the particles of a 3D refinement)"
        )
    raise InputError(f"{path}: no alignments3D/pose and alignments3D/shift; 3D poses are needed")


def pose_to_matrix(pose: np.ndarray) -> np.ndarray:
    """cryoSPARC Rodrigues vectors (n, 3) -> our rotation matrices R = E(v)^T (n, 3, 3)."""
    return Rotation.from_rotvec(np.asarray(pose, dtype=np.float64)).as_matrix().transpose(0, 2, 1)


def matrix_to_pose(R: np.ndarray) -> np.ndarray:
    """Our rotation matrices (n, 3, 3) -> cryoSPARC Rodrigues vectors (n, 3); inverse of
    pose_to_matrix."""
    return Rotation.from_matrix(np.asarray(R, dtype=np.float64).transpose(0, 2, 1)).as_rotvec()


def _image_paths(data, path: Path, particles_dir: str | os.PathLike | None) -> list[str]:
    """blob/path of every row -> absolute image file, each distinct name resolved once.

    Without a particles folder, names are looked for from the project folder (a job's
    own .cs) and then beside the .cs (an exported result group, where '>' marks names
    relative to the metadata file's folder, as in cryoSPARC's .csg files)."""
    if "blob/path" not in data.fields():
        raise InputError(f"{path}: missing field blob/path (the particle images)")
    folder = path.resolve().parent
    bases = [Path(particles_dir)] if particles_dir else [folder.parent, folder]
    resolved: dict[str, str] = {}
    out = []
    for row, name in enumerate(data["blob/path"]):
        name = name.decode() if isinstance(name, bytes) else str(name)
        if name not in resolved:
            relative = name.lstrip(">")
            absolute = Path(relative).is_absolute()
            tried = [Path(relative)] if absolute else [base / relative for base in bases]
            found = next((p for p in tried if p.is_file()), None)
            if found is None:
                raise InputError(
                    f"{path} row {row}: image file '{name}' not found (looked for "
                    f"{', '.join(map(str, tried))}); expected paths relative to the cryoSPARC "
                    "project folder (set particles_dir to it)"
                )
            resolved[name] = str(found.resolve())
        out.append(resolved[name])
    return out


def _boxes(data, stacks, sources: list[str], path: Path) -> np.ndarray:
    box = np.array([stacks[s].box for s in sources])
    if "blob/shape" in data.fields():
        shape = np.asarray(data["blob/shape"]).reshape(len(data), -1)[:, 0].astype(int)
        bad = np.flatnonzero(shape != box)
        if bad.size:
            i = int(bad[0])
            raise InputError(
                f"{path} row {i}: blob/shape says {shape[i]} px but {sources[i]} holds "
                f"{box[i]} x {box[i]} images"
            )
    return box


def _subsets(data) -> np.ndarray:
    """alignments3D/split 0/1 -> 1/2 when every particle has one of both, else 0 (unknown)."""
    if "alignments3D/split" not in data.fields():
        return np.zeros(len(data), dtype=int)
    split = np.asarray(data["alignments3D/split"]).astype(int)
    return split + 1 if np.isin(split, (0, 1)).all() else np.zeros(len(data), dtype=int)


def _ctf(data, path: Path, notes: list[str]) -> dict[str, np.ndarray]:
    """CTFParams fields of every particle; ``notes`` gets the defaults and conversions used."""
    for name in _CTF_REQUIRED:
        _column(data, name, path)
    sign = _column(data, "blob/sign", path, default=-1.0)
    dark = sign > 0
    if dark.any():
        notes.append(
            f"{int(dark.sum())} particles with blob/sign +1 (dark protein): CTF phase shifted "
            "by 180 degrees, which inverts their contrast"
        )
    for name, value in (("blob/sign", "-1"), ("ctf/amp_contrast", "0.1")):
        if name not in data.fields():
            notes.append(f"no {name}: {value} for every particle")
    ignored = [f for f in _HIGHER_ORDER if f in data.fields() and np.any(data[f] != _NEUTRAL[f])]
    if ignored:
        log.warning(
            "%s: %s not modelled (CTF of defocus, Cs and phase only)", path.name, ", ".join(ignored)
        )
    phase = np.rad2deg(_column(data, "ctf/phase_shift_rad", path, default=0.0))
    return {
        "defocus_u": _column(data, "ctf/df1_A", path),
        "defocus_v": _column(data, "ctf/df2_A", path),
        "defocus_angle": np.rad2deg(_column(data, "ctf/df_angle_rad", path)),
        "voltage": _column(data, "ctf/accel_kv", path),
        "cs": _column(data, "ctf/cs_mm", path),
        "amp_contrast": _column(data, "ctf/amp_contrast", path, default=0.1),
        "phase_shift": phase + np.where(dark, 180.0, 0.0),
        "bfactor": _column(data, "ctf/bfactor", path, default=0.0),
    }


def read_cs(
    path: str | os.PathLike,
    *,
    apix: float | None = None,
    particles_dir: str | os.PathLike | None = None,
) -> ParticleRecords:
    """Particles of a cryoSPARC .cs (3D refinement output) with poses, CTF and images.

    ``apix`` overrides blob/psize_A; ``particles_dir`` is the folder blob/path is relative
    to (default: the cryoSPARC project folder, the parent of the .cs file's job folder).
    """
    path = Path(path).resolve()
    data = load_particles(path)
    _check_3d(data, path)
    n = len(data)
    sources = _image_paths(data, path, particles_dir)
    indices = np.asarray(data["blob/idx"] if "blob/idx" in data.fields() else np.arange(n))
    indices = indices.astype(np.int64)
    stacks = open_sources(sources, indices, path, index_base=0)
    notes: list[str] = override_notes(apix, _column(data, "blob/psize_A", path, default=np.nan))
    file_apix = _column(data, "blob/psize_A", path, default=0.0)
    blob_apix = np.full(n, float(apix)) if apix else file_apix
    if not (blob_apix > 0).all():
        i = int(np.flatnonzero(~(blob_apix > 0))[0])
        raise InputError(f"{path} row {i}: blob/psize_A is {blob_apix[i]}; pass apix explicitly")
    align_apix = _column(data, "alignments3D/psize_A", path, default=0.0)
    known = (align_apix > 0) & (file_apix > 0)  # the file's own ratio, whatever the override
    scale = np.where(known, align_apix / np.where(known, file_apix, 1.0), 1.0)
    shift = np.asarray(data["alignments3D/shift"], dtype=np.float64).reshape(n, 2)
    group = _column(data, "ctf/exp_group_id", path, default=0.0).astype(int) + 1
    return ParticleRecords(
        format="cryosparc",
        source_file=path,
        rotations=pose_to_matrix(np.asarray(data["alignments3D/pose"]).reshape(n, 3)),
        shifts=-shift * scale[:, None],
        ctf=_ctf(data, path, notes),
        source=sources,
        source_index=indices,
        optics_group=group,
        apix=blob_apix,
        box=_boxes(data, stacks, sources, path),
        subset=_subsets(data),
        notes=notes,
    )


def _result_type(prefix: str) -> str:
    for start, kind in _RESULT_TYPES.items():
        if prefix.startswith(start):
            return f"particle.{kind}"
    return f"particle.{prefix}"


def write_cs_subset(particles: str | os.PathLike, rows: np.ndarray, out: str | os.PathLike) -> Path:
    """Rows ``rows`` (0-based) of a .cs (with its passthrough fields) as ``out``.cs plus the
    ``out``.csg group file that cryoSPARC's Import Result Group job reads. Returns the .cs.

    Every field and value is kept (uid, blob/path as written), so the subset imports back
    into the same cryoSPARC project with its original images, poses and CTF.
    """
    particles, target = Path(particles), Path(out).with_suffix(".cs")
    data = load_particles(particles)
    rows = np.asarray(rows, dtype=np.int64)
    bad = rows[(rows < 0) | (rows >= len(data))]
    if bad.size:
        raise InputError(f"{particles}: particle index {bad[0]} is outside its {len(data)} rows")
    subset = data.take(rows)
    with atomic_output(target) as tmp, open(tmp, "wb") as handle:
        subset.save(handle)
    prefixes = dict.fromkeys(f.split("/", 1)[0] for f in subset.fields() if "/" in f)
    group = {
        "created": np.datetime_as_string(np.datetime64("now"), unit="s").replace("T", " "),
        "group": {
            "description": f"subset of {particles.name} written by gmmscape",
            "name": "particles",
            "title": target.stem,
            "type": "particle",
        },
        "results": {
            p: {"metafile": f">{target.name}", "num_items": len(subset), "type": _result_type(p)}
            for p in prefixes
        },
        "version": "v4.4.1",
    }
    with atomic_output(target.with_suffix(".csg")) as tmp:
        tmp.write_text(yaml.safe_dump(group, sort_keys=False))
    return target
