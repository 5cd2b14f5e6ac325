"""EMAN2 particle lists (.lst) with poses in 'xform.projection', images in .hdf stacks.

Format ("#LSX", EMAN2's fast LST): the line "#LSX", one comment line, "# <record length>",
then fixed-length space-padded records of three TAB-separated fields: image index
(0-based), image file (relative to the .lst folder, or to the project folder, the cwd,
as EMAN2 writes sets/*.lst), and a JSON dict of header overrides.
'xform.projection' is read as any of
  {"__class__": "Transform", "matrix": [12 floats]}   (3x4 row-major, translation in column 3;
                                                       the key "transform" is accepted too)
  {"type": "eman", "az", "alt", "phi", "tx", "ty"}    (Euler dicts; EMAN2's "spider"
  {"type": "spider", "phi", "theta", "psi", "tx", "ty"}  type is RELION's rot/tilt/psi)
or, in older files, a third field "Transform({'az':..,'type':'eman'})" (optionally
preceded by "<score>;").

Geometry: EMAN2's Transform maps a map point c to M[:, :3] @ c + M[:, 3]; a projection
keeps x, y. That is our convention (particle point = R[:2] @ c + t) with R = M[:, :3] and
t = (tx, ty) in pixels, so the matrix is taken as it is.

CTF (EMAN2Ctf: defocus and dfdiff in um, dfang in degrees, ampcont in %) comes from a
'ctf' entry of the record's dict (EMAN2Ctf JSON dict or its "E..." string) or else from
the image header attribute 'EMAN.ctf'. U = defocus + dfdiff/2 lies along dfang (EMAN2's
major axis), V = defocus - dfdiff/2; EMAN2's fitted B-factor (an envelope) is not carried
over. Without a CTF the CTF columns are NaN. The pixel size comes from 'EMAN.apix_x', else
the CTF's apix. Even/odd: the record key "class" (0 or 1 on every record) when present.
Phase-flipped images are marked by the header attribute 'EMAN.ctf_phase_flipped' (1), or,
without that attribute, by EMAN2's stack name "..__ctf_flip..." (e.g. ptcls__ctf_flip.hdf).
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..geometry import eman_to_matrix, relion_to_matrix
from .common import CTF_STATES, ParticleRecords, atomic_output, override_notes, resolve_path
from .hdf import HdfStack
from .stacks import ImageStack, open_sources

_CTF_FIELDS = ("defocus_u", "defocus_v", "defocus_angle", "voltage", "cs", "amp_contrast")


class _RecordError(ValueError):
    """A record could not be parsed; the reader adds the file and record number."""


def lst_records(path: Path) -> list[str]:
    """The record lines of a #LSX file (or an old variable-length #LST file)."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not a readable .lst file ({err})") from err
    kind = lines[0].strip() if lines else ""
    if kind == "#LST":
        return [line for line in lines[1:] if not line.startswith("#")]
    if kind != "#LSX" or len(lines) < 3 or not lines[2].lstrip("# ").strip().isdigit():
        raise InputError(
            f"{path}: not an EMAN2 list (expected '#LSX', a comment line and '# <record length>')"
        )
    return lines[3:]


def _parse_meta(text: str) -> dict:
    """The third field of a record: a JSON dict, or an old 'Transform({...})' string."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise _RecordError(f"invalid JSON ({err.msg} at column {err.pos})") from err
    start, end = text.find("Transform("), text.rfind(")")
    if start < 0 or end < start:
        raise _RecordError(f"expected a JSON dict or Transform(...), got '{text[:40]}'")
    try:
        return {"xform.projection": ast.literal_eval(text[start + len("Transform(") : end])}
    except (ValueError, SyntaxError) as err:
        raise _RecordError(f"unreadable Transform(...) string '{text[:60]}'") from err


def _pose(xform) -> tuple[np.ndarray, np.ndarray]:
    """xform.projection -> rotation R (3, 3) and shift t (2,) in pixels."""
    if not isinstance(xform, dict):
        raise _RecordError("xform.projection is not a Transform dict")
    if xform.get("mirror") or float(xform.get("scale", 1.0)) != 1.0:
        raise _RecordError("mirrored or scaled transforms are not supported")
    if xform.get("__class__") == "Transform":
        matrix = xform.get("matrix", xform.get("transform"))
        matrix = json.loads(matrix) if isinstance(matrix, str) else matrix
        try:
            m = np.asarray(matrix, dtype=np.float64).reshape(3, 4)
        except (TypeError, ValueError) as err:
            raise _RecordError("Transform matrix must hold 12 numbers (3x4, row-major)") from err
        R, t = m[:, :3], m[:2, 3]
    else:
        kind = xform.get("type")
        try:
            if kind == "eman":
                R = eman_to_matrix(xform["az"], xform["alt"], xform["phi"])
            elif kind == "spider":
                R = relion_to_matrix(xform["phi"], xform["theta"], xform["psi"])
            else:
                raise _RecordError(f"unsupported Euler type {kind!r} (expected 'eman' or 'spider')")
            t = np.array([float(xform.get("tx", 0.0)), float(xform.get("ty", 0.0))])
        except (KeyError, TypeError, ValueError) as err:
            raise _RecordError(f"incomplete '{kind}' Euler angles ({err})") from err
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-3) or np.linalg.det(R) < 0:
        raise _RecordError("xform.projection is not a rotation (scaled, mirrored or garbled)")
    return R, t


def _ctf(value) -> dict[str, float]:
    """EMAN2Ctf (JSON dict or "E<defocus> <dfdiff> <dfang> <bfactor> <ampcont> <voltage>
    <cs> <apix> ..." string) -> CTFParams fields in RELION units, plus 'apix'."""
    if isinstance(value, str):
        try:
            if not value.startswith("E"):
                raise ValueError(value)
            numbers = [float(v) for v in value[1:].split()[:8]]
            keys = ("defocus", "dfdiff", "dfang", "bfactor", "ampcont", "voltage", "cs", "apix")
            value = dict(zip(keys, numbers, strict=True))
        except ValueError as err:
            raise _RecordError(f"unreadable EMAN2 CTF string '{value[:60]}'") from err
    try:
        defocus, dfdiff = float(value["defocus"]), float(value.get("dfdiff", 0.0))
        ampcont = float(value["ampcont"])
        ctf = {
            "defocus_u": (defocus + dfdiff / 2) * 1e4,
            "defocus_v": (defocus - dfdiff / 2) * 1e4,
            "defocus_angle": float(value.get("dfang", 0.0)),
            "voltage": float(value["voltage"]),
            "cs": float(value["cs"]),
            "amp_contrast": ampcont / 100.0,
            "apix": float(value.get("apix", 0.0)),
        }
    except (KeyError, TypeError, ValueError) as err:
        raise _RecordError(f"incomplete EMAN2 CTF ({err})") from err
    if not 0.0 <= ampcont <= 100.0:
        raise _RecordError(
            f"EMAN2 CTF ampcont {ampcont}: expected 0-100 % (phase plates unsupported)"
        )
    return ctf


class _Particle:
    """One parsed record: where its image is and its pose, CTF and subset."""

    def __init__(self, line: str):
        fields = line.rstrip().split("\t", 2)
        if len(fields) < 2 or not fields[0].strip().lstrip("-").isdigit() or not fields[1]:
            raise _RecordError(f"expected '<index><TAB><image file><TAB><dict>', got '{line[:60]}'")
        self.index, self.source = int(fields[0]), fields[1]
        meta = _parse_meta(fields[2] if len(fields) > 2 else "")
        if "xform.projection" not in meta:
            raise _RecordError("no xform.projection")
        self.rotation, self.shift = _pose(meta["xform.projection"])
        self.ctf = _ctf(meta["ctf"]) if "ctf" in meta else None
        self.eo_class = meta.get("class")


def _parse(path: Path) -> list[_Particle]:
    """All records, image files resolved to absolute paths (each distinct name once)."""
    particles, resolved = [], {}
    for i, line in enumerate(lst_records(path)):
        what = f"{path} record {i} (line {i + 4})"
        try:
            particle = _Particle(line)
        except _RecordError as err:
            raise InputError(f"{what}: {err}") from err
        if particle.source not in resolved:
            resolved[particle.source] = str(resolve_path(particle.source, path.parent, what))
        particle.source = resolved[particle.source]
        particles.append(particle)
    if not particles:
        raise InputError(f"{path}: the list has no records")
    return particles


def _headers(stacks: dict[str, ImageStack], particles: list[_Particle]) -> list[dict]:
    """The EMAN2 header of each particle's image (empty for non-HDF images)."""
    rows: dict[str, list[int]] = {}
    for i, p in enumerate(particles):
        rows.setdefault(p.source, []).append(i)
    out: list[dict] = [{}] * len(particles)
    for source, members in rows.items():
        stack = stacks[source]
        if isinstance(stack, HdfStack):
            headers = stack.headers([particles[i].index for i in members])
            for i, header in zip(members, headers, strict=True):
                out[i] = header
    return out


def _flipped(source: str, header: dict) -> bool:
    """EMAN2's phase-flip markers: the header flag, else the '__ctf_flip' stack name."""
    if "ctf_phase_flipped" in header:
        return bool(int(header["ctf_phase_flipped"]))
    return "__ctf_flip" in Path(source).name


def read_lst(path: str | os.PathLike, *, apix: float | None = None) -> ParticleRecords:
    """Particles of an EMAN2 .lst file with poses, CTF (when known) and image locations."""
    path = Path(path).resolve()
    particles = _parse(path)
    sources = [p.source for p in particles]
    indices = np.array([p.index for p in particles])
    stacks = open_sources(sources, indices, path, index_base=0)
    ctfs, pixel, stated = [], np.empty(len(particles)), np.empty(len(particles))
    state = np.full(len(particles), CTF_STATES[0], dtype=object)
    for i, (p, header) in enumerate(zip(particles, _headers(stacks, particles), strict=True)):
        if _flipped(p.source, header):
            state[i] = CTF_STATES[1]
        ctf = p.ctf
        if ctf is None and "ctf" in header:
            try:
                ctf = _ctf(header["ctf"])
            except _RecordError as err:
                raise InputError(f"{p.source} image {p.index}: {err}") from err
        ctfs.append(ctf or dict.fromkeys(_CTF_FIELDS, np.nan))
        candidates = (header.get("apix_x"), (ctf or {}).get("apix"), stacks[p.source].apix)
        stated[i] = next((float(a) for a in candidates if a is not None and float(a) > 0), np.nan)
        pixel[i] = stated[i] if apix is None else apix
        if np.isnan(pixel[i]):
            raise InputError(
                f"{path} record {i}: no pixel size for {p.source} image {p.index} "
                "(no EMAN.apix_x, no CTF apix); set apix"
            )
    eo = [p.eo_class for p in particles]
    subset = np.array(eo) + 1 if all(c in (0, 1) for c in eo) else np.zeros(len(eo), int)
    ctf_columns = {f: np.array([c[f] for c in ctfs], dtype=np.float64) for f in _CTF_FIELDS}
    ctf_columns |= {"phase_shift": np.zeros(len(particles)), "bfactor": np.zeros(len(particles))}
    return ParticleRecords(
        format="eman2",
        source_file=path,
        rotations=np.stack([p.rotation for p in particles]),
        shifts=np.stack([p.shift for p in particles]),
        ctf=ctf_columns,
        source=sources,
        source_index=indices,
        optics_group=np.ones(len(particles), dtype=int),
        apix=pixel,
        box=np.array([stacks[s].box for s in sources]),
        subset=subset.astype(int),
        ctf_state=state,
        notes=override_notes(apix, stated),
    )


def pose_to_xform(R: np.ndarray, t: np.ndarray) -> dict:
    """Rotation R (3, 3) and shift t (2,) pixels -> EMAN2's JSON form of a Transform."""
    m = np.concatenate([np.asarray(R, float), np.append(np.asarray(t, float), 0.0)[:, None]], 1)
    return {"__class__": "Transform", "matrix": m.ravel().tolist()}


def ctf_to_eman2(ctf: dict[str, float], apix: float) -> str:
    """CTFParams fields (RELION units) -> EMAN2Ctf's "E..." header string (no background/SNR)."""
    u, v = ctf["defocus_u"] / 1e4, ctf["defocus_v"] / 1e4
    numbers = (
        *((u + v) / 2, u - v, ctf["defocus_angle"], 0.0, ctf["amp_contrast"] * 100),
        *(ctf["voltage"], ctf["cs"], apix, 0.0),
    )
    return "E" + " ".join(f"{x:.8g}" for x in numbers) + " 0 0"


def write_lst(
    path: str | os.PathLike,
    records: Iterable[tuple[int, str, dict | str]],
    comment: str = "written by gmmscape",
) -> None:
    """Write an EMAN2 #LSX list from (image index, image file, dict or raw third field).

    Dicts are written as compact JSON with sorted keys, as EMAN2 does; a string (e.g. an
    old "Transform({...})") is written as it is. Appears only when complete.
    """
    lines = []
    for index, source, meta in records:
        text = (
            meta
            if isinstance(meta, str)
            else json.dumps(meta, sort_keys=True, separators=(",", ":"))
        )
        lines.append(f"{int(index)}\t{source}\t{text}")
    width = max(len(line) for line in lines) + 1
    with atomic_output(path) as tmp:
        body = "".join(f"{line:<{width - 1}}\n" for line in lines)
        tmp.write_text(f"#LSX\n# {comment}\n# {width}\n{body}")
