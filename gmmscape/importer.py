"""Import: particles, poses and CTF (RELION STAR or EMAN2 .lst) -> the canonical particle
table, meta.json, junk.csv and a phase-flipped, Fourier-cropped float32 stack
(docs/conventions.md).

What the images hold (raw, already phase-flipped, CTF-premultiplied) comes from the
input's flags or the `phase_flipped` setting; images are flipped only when raw, and a
stack with premultiplied images holds CTF * X for every particle (raw ones are
multiplied by the CTF, flipped ones by |CTF|), so reconstruction has one rule per stack.
Optics groups whose box in Angstrom differs from the training frame's are cropped or
padded in real space (at their own pixel size) to the frame before the Fourier crop.
Particles with non-finite or constant images are junk: zero in the stack, listed in
junk.csv, absent from the table. The stack pass reads, flips, crops and writes a
bounded number of particles at a time, so memory stays flat whatever the data set's
size; the outputs appear together only when the import succeeded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from .ctf import CTFParams, ctf_2d
from .errors import InputError
from .fourier import check_box, crop_ft, to_fourier, to_real
from .geometry import matrix_to_relion
from .io import (
    ParticleRecords,
    atomic_output,
    map_info,
    open_stack,
    read_lst,
    read_star,
    write_stack,
)
from .io.common import CTF_STATES
from .io.conventions import correct_conventions
from .io.cryosparc import read_cs
from .io.stacks import read_sources
from .table import (
    CTF_COLUMNS,
    EVEN,
    ODD,
    ROTATION_COLUMNS,
    SUBSETS,
    TABLE_COLUMNS,
    half_rows,
    subset_counts,
)

log = logging.getLogger(__name__)
RAW, FLIPPED, PREMULTIPLIED = CTF_STATES

_READERS = {".star": read_star, ".lst": read_lst, ".cs": read_cs}
_EXTENT_RTOL = 5e-3  # boxes agree when their sizes in Angstrom agree to 0.5 %
_MAX_CUT = 0.25  # a group's box may lose at most this fraction of its width to the frame
PHASE_FLIPPED = ("auto", True, False)
# (what the images hold, what the stack holds) -> Fourier multiplier made of the CTF
_CTF_CHANGE: dict[tuple[str, str], Callable[[np.ndarray], np.ndarray]] = {
    (RAW, FLIPPED): np.sign,
    (RAW, PREMULTIPLIED): lambda c: c,
    (FLIPPED, PREMULTIPLIED): np.abs,
}
_PIXELS_PER_STEP = 2**23  # input pixels per read-flip-crop step: ~0.4 GB of working memory


@dataclass(frozen=True)
class ImportResult:
    """Where the import wrote its outputs, and the contents of meta.json."""

    stack: Path
    table: Path
    meta: dict
    junk: Path | None = None


@dataclass(frozen=True)
class Frame:
    """The one training frame: box size in Angstrom and pixels, and per particle the box
    (original pixels) its image is cropped or padded to in real space before the crop."""

    extent: float
    box: int
    windows: np.ndarray  # (n,) int

    @property
    def apix(self) -> float:
        return self.extent / self.box


def import_particles(
    particles: str | os.PathLike,
    outdir: str | os.PathLike,
    *,
    map_path: str | os.PathLike | None = None,
    box: int | None = None,
    seed: int = 0,
    chunk: int = 1000,
    apix: float | None = None,
    phase_flipped: str | bool = "auto",
    split: bool = False,
    particles_dir: str | os.PathLike | None = None,
    conventions: dict | None = None,
) -> ImportResult:
    """Import a .star or .lst into `outdir` (stack.mrcs, particles.csv, meta.json, junk.csv).

    box: training box to Fourier-crop to (default: the particles' box, the smallest one when
    optics groups differ; see training_frame). apix: pixel size
    of the particles and the map, overriding their headers. phase_flipped: "auto" (the
    input's flags), True (images already phase-flipped: never flipped again, and no CTF
    needed) or False (raw images, whatever the input says). split: an empty half is an
    error (else a warning).
    particles_dir: folder a cryoSPARC .cs's image paths are relative to (default:
    its project folder). conventions: corrections for another program's conventions
    (gmmscape.io.conventions.correct_conventions keywords), as the pre-flight check names.
    """
    particles, outdir = Path(particles).resolve(), Path(outdir)
    records = read_records(particles, apix, particles_dir, conventions)
    notes = list(records.notes)
    table = build_table(records, seed)
    states = ctf_states(records, phase_flipped, notes)
    if (conventions or {}).get("invert_contrast") and (states != RAW).any():
        raise InputError(
            f"{particles}: conventions.invert_contrast needs raw images (it inverts the "
            "contrast through the CTF the import flips with); these are already flipped or "
            "premultiplied"
        )
    stack_ctf = PREMULTIPLIED if (states == PREMULTIPLIED).any() else FLIPPED
    frame = training_frame(table, box, _map_frame(map_path, apix), particles)
    table["window"] = frame.windows
    _check_ctf(table, states, stack_ctf, particles)
    if split:  # fail before the long stack pass when the input alone has an empty half
        check_halves(table["subset"].to_numpy(), split, particles)
    step = max(1, min(int(chunk), _PIXELS_PER_STEP // int(table["box"].max()) ** 2))
    names = ("meta.json", "particles.csv", "junk.csv", "stack.mrcs")
    paths = {name: outdir / name for name in names}
    junk: dict[int, str] = {}
    with contextlib.ExitStack() as outputs:  # entered meta first, so renamed last
        tmp = {name: outputs.enter_context(atomic_output(p)) for name, p in paths.items()}
        chunks = _stack_chunks(table, states, stack_ctf, frame, step, junk)
        write_stack(tmp["stack.mrcs"], len(table), frame.box, frame.apix, chunks)
        junk_table = table.loc[list(junk), ["index", "subset"]].assign(reason=list(junk.values()))
        junk_table = junk_table[["index", "reason", "subset"]]
        table = table.drop(index=list(junk)).reset_index(drop=True)
        if table.empty:
            raise InputError(f"{particles}: every particle is junk (non-finite or constant)")
        check_halves(table["subset"].to_numpy(), split, particles)
        kept = states[table["stack_index"].to_numpy()]
        meta = _meta(records, table, kept, stack_ctf, frame, notes) | {"n_junk": len(junk)}
        table.to_csv(tmp["particles.csv"], index=False)
        junk_table.to_csv(tmp["junk.csv"], index=False)
        tmp["meta.json"].write_text(json.dumps(meta, indent=1) + "\n")
    return ImportResult(paths["stack.mrcs"], paths["particles.csv"], meta, paths["junk.csv"])


def read_table(
    particles: str | os.PathLike,
    *,
    apix: float | None = None,
    seed: int = 0,
    phase_flipped: str | bool = "auto",
    particles_dir: str | os.PathLike | None = None,
    conventions: dict | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The canonical table of a particle file and what each image holds (CTF_STATES),
    without reading any image."""
    records = read_records(Path(particles).resolve(), apix, particles_dir, conventions)
    return build_table(records, seed), ctf_states(records, phase_flipped, [])


def read_records(
    particles: Path,
    apix: float | None,
    particles_dir: str | os.PathLike | None = None,
    conventions: dict | None = None,
) -> ParticleRecords:
    """The parsed records of a .star, .lst or .cs, with the config's convention fixes."""
    reader = _READERS.get(particles.suffix.lower())
    if reader is None:
        raise InputError(f"{particles}: unsupported particle file (expected .star, .lst or .cs)")
    extra = {"particles_dir": particles_dir} if reader is read_cs else {}
    return correct_conventions(reader(particles, apix=apix, **extra), **(conventions or {}))


def build_table(records: ParticleRecords, seed: int = 0) -> pd.DataFrame:
    """The canonical particle table (docs/conventions.md) from parsed records."""
    n = len(records.source)
    R = records.rotations
    columns = {
        "index": np.arange(n),
        "stack_index": np.arange(n),
        "source": pd.array(records.source, dtype="string"),
        "source_index": records.source_index,
        **dict(zip(ROTATION_COLUMNS, R.reshape(n, 9).T, strict=True)),
        **dict(zip(("rot", "tilt", "psi"), matrix_to_relion(R).T, strict=True)),
        "shift_x": records.shifts[:, 0],
        "shift_y": records.shifts[:, 1],
        **{f: records.ctf[f] for f in CTF_COLUMNS},
        "optics_group": records.optics_group,
        "apix": records.apix,
        "box": records.box,
        "subset": even_odd(records.subset, seed),
        "window": records.box,
    }
    return pd.DataFrame(columns, columns=TABLE_COLUMNS)


def even_odd(subset: np.ndarray, seed: int) -> np.ndarray:
    """The input's halves when every particle has one, else a seeded balanced split."""
    subset = np.asarray(subset, dtype=int)
    if np.isin(subset, (EVEN, ODD)).all():
        return subset
    order = np.random.default_rng(seed).permutation(len(subset))
    split = np.full(len(subset), ODD)
    split[order[: (len(subset) + 1) // 2]] = EVEN
    return split


def ctf_states(records: ParticleRecords, phase_flipped: str | bool, notes: list[str]) -> np.ndarray:
    """What each particle's image holds (CTF_STATES): the input's flags ("auto") or the
    setting (True: flipped, False: raw); flags a setting overrides are noted."""
    if phase_flipped not in PHASE_FLIPPED:
        raise InputError(f"phase_flipped: expected auto, true or false, got {phase_flipped!r}")
    stated = records.states()
    flagged = {s: int((stated == s).sum()) for s in (FLIPPED, PREMULTIPLIED)}
    if phase_flipped == "auto":
        notes += [f"{n} particles flagged {s} by the input" for s, n in flagged.items() if n]
        return stated
    forced = FLIPPED if phase_flipped else RAW
    overridden = {s: n for s, n in flagged.items() if n and s != forced}
    setting = str(phase_flipped).lower()
    notes += [
        f"phase_flipped: {setting} overrides {n} particles flagged {s}"
        for s, n in overridden.items()
    ]
    return np.full(len(stated), forced, dtype=object)


def check_halves(subset: np.ndarray, split: bool, particles: Path) -> None:
    """An empty even or odd half: an error when the halves are run (split), else a warning."""
    counts = subset_counts(subset)
    if min(counts.values()) > 0:
        return
    empty, full = sorted(counts, key=lambda half: counts[half])
    message = (
        f"{particles}: half {SUBSETS[empty]} ({empty}) is empty: all {counts[full]} "
        f"particles are in half {SUBSETS[full]} (_rlnRandomSubset or EMAN2 'class')"
    )
    if split:
        raise InputError(
            f"{message}; split: true needs both halves (remove that column for a seeded split)"
        )
    log.warning("warning: %s", message)


@dataclass(frozen=True)
class MapFrame:
    """A consensus map's box, for matching the particles' frame to it."""

    path: Path
    box: int
    apix: float

    @property
    def extent(self) -> float:
        return self.box * self.apix


def _map_frame(map_path: str | os.PathLike | None, apix: float | None) -> MapFrame | None:
    """The consensus map's box and pixel size (`apix` overrides its header), checked cubic."""
    if map_path is None:
        return None
    shape, map_apix = map_info(map_path, apix)
    if len(set(shape)) != 1:
        raise InputError(
            f"{map_path}: map is {shape[2]} x {shape[1]} x {shape[0]}, expected a cube"
        )
    return MapFrame(Path(map_path), shape[0], map_apix)


def training_frame(
    table: pd.DataFrame, box: int | None, consensus: MapFrame | None, particles: Path
) -> Frame:
    """The frame every particle is brought to: the box in Angstrom of the optics group the
    map matches (without a map, the first particle's), at `box` pixels (default: the
    smallest window). A group spanning a different size in Angstrom is cropped or padded
    in real space to the nearest even box of that size; refused only when that would cut
    more than a quarter of its box, or when the map matches no group."""
    sizes, pixel = table["box"].to_numpy(), table["apix"].to_numpy()
    extents = sizes * pixel
    ref = 0 if consensus is None else int(np.argmin(np.abs(extents - consensus.extent)))
    if consensus is not None and abs(extents[ref] - consensus.extent) > _EXTENT_RTOL * extents[ref]:
        raise InputError(
            f"box mismatch: map {consensus.path} is {consensus.box} px at {consensus.apix:.4g} "
            f"A/px ({consensus.extent:.1f} A) but the particles of {particles} span "
            f"{_extent_range(table)}; expected the same box in Angstrom (if a header's pixel "
            "size is wrong, set apix)"
        )
    extent = float(extents[ref])
    close = np.abs(extents - extent) <= _EXTENT_RTOL * extent
    windows = np.where(close, sizes, 2 * np.round(extent / (2 * pixel))).astype(int)
    cut = np.flatnonzero(windows < (1 - _MAX_CUT) * sizes)
    if cut.size:
        raise InputError(
            f"{particles}: optics group {_group(table, cut[0])} would lose more than a quarter "
            f"of its box to the training frame of {extent:.1f} A ({_group(table, ref)}); "
            "re-extract the particles with a similar box in Angstrom"
        )
    smallest = int(np.argmin(windows))
    box = check_box(windows[smallest] if box is None else box, "box")
    if box > windows[smallest]:
        raise InputError(
            f"box {box}: larger than the {windows[smallest]}-pixel frame of optics group "
            f"{_group(table, smallest)} of {particles}"
        )
    return Frame(extent, box, windows)


def _group(table: pd.DataFrame, row: int) -> str:
    group, box, apix = (table[c].iloc[row] for c in ("optics_group", "box", "apix"))
    return f"{group} ({box} px x {apix:.4g} A = {box * apix:.1f} A)"


def _extent_range(table: pd.DataFrame) -> str:
    groups = table.drop_duplicates(["optics_group", "box", "apix"])
    return ", ".join(f"optics group {_group(groups, i)}" for i in range(len(groups)))


def _check_ctf(table: pd.DataFrame, states: np.ndarray, stack_ctf: str, particles: Path) -> None:
    """Every image the stack pass multiplies by something made of the CTF has one."""
    needs = np.array([(s, stack_ctf) in _CTF_CHANGE for s in states])
    missing = np.flatnonzero(needs & table["defocus_u"].isna().to_numpy())
    if missing.size:
        row = table.iloc[missing[0]]
        raise InputError(
            f"{particles} row {missing[0]}: no CTF for {row.source} image {row.source_index}; "
            f"{'phase flipping' if stack_ctf == FLIPPED else 'CTF premultiplying'} needs one "
            "(set phase_flipped: true if the images are already phase-flipped)"
        )


def _meta(
    records: ParticleRecords,
    table: pd.DataFrame,
    states: np.ndarray,
    stack_ctf: str,
    frame: Frame,
    notes: list[str],
) -> dict:
    """meta.json (docs/conventions.md): the frame, what the images hold, the optics groups."""
    source_ctf = states[0] if (states == states[0]).all() else "mixed"
    return {
        "apix": frame.apix,
        "box": frame.box,
        "apix_original": float(table["apix"].iloc[0]),
        "box_original": int(table["box"].iloc[0]),
        "extent": frame.extent,
        "n_particles": len(table),
        "source_file": str(records.source_file),
        "format": records.format,
        "flipped": stack_ctf == FLIPPED,
        "stack_ctf": stack_ctf,
        "source_ctf": str(source_ctf),
        "source_flipped": source_ctf == FLIPPED,  # reconstruction from the original images
        "has_ctf": bool(table["defocus_u"].notna().all()),
        "halves": list(subset_counts(table["subset"].to_numpy()).values()),
        "optics_groups": _optics_summary(table, states),
        "notes": notes,
    }


def _optics_summary(table: pd.DataFrame, states: np.ndarray) -> list[dict]:
    out = []
    table = table.assign(state=states)
    for group, rows in table.groupby("optics_group", sort=True):
        defocus = rows[["defocus_u", "defocus_v"]].to_numpy().mean(axis=1)
        first = rows.iloc[0]
        out.append(
            {
                "optics_group": int(group),
                "particles": len(rows),
                "apix": float(first.apix),
                "box": int(first.box),
                "window": int(first.window),
                "voltage": float(first.voltage),
                "cs": float(first.cs),
                "amp_contrast": float(first.amp_contrast),
                "images": first.state if (rows["state"] == first.state).all() else "mixed",
                "defocus": [float(np.nanmin(defocus)), float(np.nanmax(defocus))]
                if np.isfinite(defocus).any()
                else None,
            }
        )
    return out


_STACK_CTF_TEXT = {
    (RAW, FLIPPED): "raw, phase-flipped at import",
    (FLIPPED, FLIPPED): "already phase-flipped, used as they are",
    (PREMULTIPLIED, PREMULTIPLIED): "CTF-premultiplied, used as they are (CTF^2 weights)",
    (RAW, PREMULTIPLIED): "raw, multiplied by the CTF at import (others are premultiplied)",
    (FLIPPED, PREMULTIPLIED): "flipped, multiplied by |CTF| (others are premultiplied)",
}


def summary(meta: dict) -> str:
    """A few lines on what the import found, for the user (gmmscape import, the log)."""
    lines = [
        f"{meta['n_particles']} particles from {meta['source_file']} ({meta['format']}), "
        f"{meta['n_junk']} junk (junk.csv)",
    ]
    for g in meta["optics_groups"]:
        defocus = g["defocus"]
        df = (
            "no CTF"
            if defocus is None
            else f"defocus {defocus[0] / 1e4:.2f}-{defocus[1] / 1e4:.2f} um"
        )
        window = "" if g["window"] == g["box"] else f", cropped/padded to {g['window']} px"
        lines.append(
            f"optics group {g['optics_group']}: {g['particles']} particles, {g['apix']:.4g} A/px, "
            f"box {g['box']}{window}, {g['voltage']:g} kV, Cs {g['cs']:g} mm, "
            f"Q0 {g['amp_contrast']:g}, {df}, {g['images']} images"
        )
    lines.append(
        f"training frame: box {meta['box']} at {meta['apix']:.4g} A/px ({meta['extent']:.1f} A)"
    )
    source, stack = meta["source_ctf"], meta["stack_ctf"]
    text = _STACK_CTF_TEXT.get((source, stack), f"{source} (per optics group); the stack: {stack}")
    lines.append(f"images: {text}")
    lines.append(f"halves: {meta['halves'][0]} even, {meta['halves'][1]} odd")
    lines += [f"note: {note}" for note in meta["notes"]]
    return "\n".join(lines)


def _stack_chunks(
    table: pd.DataFrame,
    states: np.ndarray,
    stack_ctf: str,
    frame: Frame,
    step: int,
    junk: dict[int, str],
) -> Iterator[np.ndarray]:
    """Consecutive chunks of the output stack: read, flip, window and crop each step; junk
    images (recorded in `junk`, table row -> reason) are zero."""
    stacks = {s: open_stack(s) for s in table["source"].unique()}
    keys = ["box", "apix", "window", "state"]
    with tqdm(
        total=len(table), unit="particle", desc="import", file=sys.stderr, mininterval=2
    ) as bar:
        for start in range(0, len(table), step):
            rows = table.iloc[start : start + step].assign(state=states[start : start + step])
            out = np.zeros((len(rows), frame.box, frame.box), dtype=np.float32)
            for (box, apix, window, state), group in rows.groupby(keys, sort=False):
                images = read_sources(group, stacks, int(box))
                reasons = junk_reasons(images)
                good = reasons == ""
                junk.update(zip(group.index[~good], reasons[~good], strict=True))
                change = (state, stack_ctf)
                params = CTFParams.from_table(group[good]) if change in _CTF_CHANGE else None
                out[group.index[good] - start] = flip_and_crop(
                    images[good], params, apix, frame.box, change=change, window=window
                )
            bar.update(len(rows))
            yield out


def junk_reasons(images: np.ndarray) -> np.ndarray:
    """Per image: "" when usable, else why not (non-finite pixels, a constant image)."""
    reasons = np.full(len(images), "", dtype=object)
    finite = np.isfinite(images).all(axis=(1, 2))
    reasons[~finite] = "non-finite pixels"
    flat = np.zeros(len(images), bool)
    flat[finite] = np.ptp(images[finite], axis=(1, 2)) == 0
    reasons[flat] = "constant image"
    return reasons


def flip_and_crop(
    images: np.ndarray,
    params: CTFParams | None,
    apix: float,
    box: int,
    *,
    change: tuple[str, str] = (RAW, FLIPPED),
    window: int | None = None,
) -> np.ndarray:
    """Multiply images (n, b, b) by a function of their CTF (`change`: phase flip by
    default; params None: nothing), crop or pad them in real space to `window` pixels
    and Fourier-crop them to `box`.

    Without a window this equals fourier_crop(phase_flip(images, params, apix), box),
    but with one forward FFT at the full box and the CTF evaluated on the cropped grid
    only (the frequencies kept are the same): the stack pass is dominated by this step.
    """
    full = images.shape[-1]
    factor = None if params is None else _CTF_CHANGE[change]
    if window is not None and window != full:
        if factor is not None and params is not None:
            ft = to_fourier(images) * factor(ctf_2d(params, full, apix))
            images = to_real(ft, full).astype(np.float32)
        images, factor, full = real_window(images, window), None, window
    if box == full:
        if factor is None or params is None:
            return np.asarray(images, dtype=np.float32)
        return to_real(to_fourier(images) * factor(ctf_2d(params, box, apix)), box).astype(
            np.float32
        )
    ft = crop_ft(to_fourier(images), full, box)
    if factor is not None and params is not None:
        ft *= factor(ctf_2d(params, box, apix * full / box))
    return to_real(ft, box).astype(np.float32) * np.float32((box / full) ** 2)


def real_window(images: np.ndarray, window: int) -> np.ndarray:
    """Crop or pad images (n, b, b) about their centre (b//2) to (n, w, w); padding takes
    each image's mean over its border, so no edge appears."""
    full = images.shape[-1]
    if window <= full:
        lo = full // 2 - window // 2
        return np.ascontiguousarray(images[:, lo : lo + window, lo : lo + window])
    border = np.concatenate(
        [
            images[:, [0, -1], :].reshape(len(images), -1),
            images[:, 1:-1, [0, -1]].reshape(len(images), -1),
        ],
        axis=1,
    )
    out = np.empty((len(images), window, window), np.float32)
    out[:] = border.mean(axis=1)[:, None, None]
    lo = window // 2 - full // 2
    out[:, lo : lo + full, lo : lo + full] = images
    return out


def load_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read particles.csv written by the import."""
    return pd.read_csv(path, dtype={"source": "string"})


def junk_of_half(path: str | os.PathLike, half: str) -> np.ndarray:
    """`index` of the import's junk particles (import/junk.csv) in one half: all, even, odd."""
    return half_rows(pd.read_csv(path), half)["index"].to_numpy(np.int64)


def load_meta(path: str | os.PathLike) -> dict:
    """Read meta.json written by the import."""
    return json.loads(Path(path).read_text())


def table_poses(table: pd.DataFrame, box: int) -> tuple[np.ndarray, np.ndarray]:
    """Rotations (n, 3, 3) and shifts (n, 2) in pixels of the cropped `box`, for training.

    A particle's `window` (its box brought to the training frame; `box` in tables without
    one) is what the crop scales down to `box` pixels.
    """
    R = table[ROTATION_COLUMNS].to_numpy(dtype=np.float64).reshape(-1, 3, 3)
    window = table["window"] if "window" in table else table["box"]
    scale = box / window.to_numpy(dtype=np.float64)
    return R, table[["shift_x", "shift_y"]].to_numpy(dtype=np.float64) * scale[:, None]
