"""Import: particles, poses and CTF (RELION STAR or EMAN2 .lst) -> the canonical particle
table, meta.json and a phase-flipped, Fourier-cropped float32 stack (docs/conventions.md).

The stack pass reads, flips, crops and writes a bounded number of particles at a time,
so memory stays flat whatever the data set's size; all three outputs appear together
only when the import succeeded.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from .ctf import CTFParams, ctf_2d, phase_flip
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
from .io.stacks import ImageStack

ROTATION_COLUMNS = [f"r{i}{j}" for i in range(3) for j in range(3)]
CTF_COLUMNS = list(CTFParams.__dataclass_fields__)
_POSE_COLUMNS = [*ROTATION_COLUMNS, "rot", "tilt", "psi", "shift_x", "shift_y"]
TABLE_COLUMNS = ["index", "stack_index", "source", "source_index", *_POSE_COLUMNS, *CTF_COLUMNS]
TABLE_COLUMNS += ["optics_group", "apix", "box", "subset"]
_READERS = {".star": read_star, ".lst": read_lst}
_EXTENT_RTOL = 5e-3  # boxes agree when their sizes in Angstrom agree to 0.5 %
_PIXELS_PER_STEP = 2**23  # input pixels per read-flip-crop step: ~0.4 GB of working memory


@dataclass(frozen=True)
class ImportResult:
    """Where the import wrote its outputs, and the contents of meta.json."""

    stack: Path
    table: Path
    meta: dict


def import_particles(
    particles: str | os.PathLike,
    outdir: str | os.PathLike,
    *,
    map_path: str | os.PathLike | None = None,
    box: int | None = None,
    seed: int = 0,
    chunk: int = 1000,
    apix: float | None = None,
    flip: bool = True,
) -> ImportResult:
    """Import a .star or .lst into `outdir` (stack.mrcs, particles.csv, meta.json).

    box: training box to Fourier-crop to (default: the particles' box). apix: pixel size
    override for inputs that lack one. flip=False takes the images as already
    phase-flipped (e.g. EMAN2 '__ctf_flip' stacks) and allows inputs without CTF.
    """
    particles, outdir = Path(particles).resolve(), Path(outdir)
    reader = _READERS.get(particles.suffix.lower())
    if reader is None:
        raise InputError(f"{particles}: unsupported particle file (expected .star or .lst)")
    records = reader(particles, apix=apix)
    table = build_table(records, seed)
    extent = _common_extent(table, particles)
    if map_path is not None:
        _check_map(Path(map_path), extent, particles)
    box = _crop_box(table, box, particles)
    if flip:
        _check_ctf(table, particles)
    meta = {
        "apix": extent / box,
        "box": box,
        "apix_original": float(table["apix"].iloc[0]),
        "box_original": int(table["box"].iloc[0]),
        "n_particles": len(table),
        "source_file": str(particles),
        "format": records.format,
        "flipped": True,
        "source_flipped": not flip,  # reconstruction from the original images needs it
        "has_ctf": bool(table["defocus_u"].notna().all()),
    }
    step = max(1, min(int(chunk), _PIXELS_PER_STEP // int(table["box"].max()) ** 2))
    paths = {name: outdir / name for name in ("meta.json", "particles.csv", "stack.mrcs")}
    with contextlib.ExitStack() as outputs:  # entered meta first, so renamed last
        tmp = {name: outputs.enter_context(atomic_output(p)) for name, p in paths.items()}
        chunks = _stack_chunks(table, box, flip, step, particles)
        write_stack(tmp["stack.mrcs"], len(table), box, meta["apix"], chunks)
        table.to_csv(tmp["particles.csv"], index=False)
        tmp["meta.json"].write_text(json.dumps(meta, indent=1) + "\n")
    return ImportResult(stack=paths["stack.mrcs"], table=paths["particles.csv"], meta=meta)


def read_table(
    particles: str | os.PathLike, *, apix: float | None = None, seed: int = 0
) -> pd.DataFrame:
    """The canonical table of a particle file, without reading any image."""
    particles = Path(particles).resolve()
    reader = _READERS.get(particles.suffix.lower())
    if reader is None:
        raise InputError(f"{particles}: unsupported particle file (expected .star or .lst)")
    return build_table(reader(particles, apix=apix), seed)


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
    }
    return pd.DataFrame(columns, columns=TABLE_COLUMNS)


def even_odd(subset: np.ndarray, seed: int) -> np.ndarray:
    """The input's halves when every particle has one (1/2), else a seeded balanced split."""
    subset = np.asarray(subset, dtype=int)
    if np.isin(subset, (1, 2)).all():
        return subset
    order = np.random.default_rng(seed).permutation(len(subset))
    split = np.full(len(subset), 2)
    split[order[: (len(subset) + 1) // 2]] = 1
    return split


def _common_extent(table: pd.DataFrame, particles: Path) -> float:
    """The particles' box size in Angstrom, the same for all (so one crop fits all)."""
    extent = (table["apix"] * table["box"]).to_numpy()
    bad = np.flatnonzero(np.abs(extent - extent[0]) > _EXTENT_RTOL * extent[0])
    if bad.size:
        a, b = table.iloc[0], table.iloc[bad[0]]
        raise InputError(
            f"{particles}: particles differ in box size: row 0 (optics group {a.optics_group}) "
            f"is {a.box} px x {a.apix:.4g} A, row {bad[0]} (optics group {b.optics_group}) is "
            f"{b.box} px x {b.apix:.4g} A; expected the same box in Angstrom (rescale/re-extract)"
        )
    return float(extent[0])


def _check_map(map_path: Path, extent: float, particles: Path) -> None:
    """The consensus map must cover the same box (in Angstrom) as the particles."""
    shape, map_apix = map_info(map_path)
    if len(set(shape)) != 1:
        raise InputError(
            f"{map_path}: map is {shape[2]} x {shape[1]} x {shape[0]}, expected a cube"
        )
    if abs(shape[0] * map_apix - extent) > _EXTENT_RTOL * extent:
        raise InputError(
            f"box mismatch: map {map_path} is {shape[0]} px at {map_apix:.4g} A/px "
            f"({shape[0] * map_apix:.1f} A) but the particles of {particles} span {extent:.1f} A; "
            "expected the same box and pixel size"
        )


def _crop_box(table: pd.DataFrame, box: int | None, particles: Path) -> int:
    smallest = int(table["box"].min())
    box = check_box(smallest if box is None else box, "box")
    if box > smallest:
        raise InputError(f"box {box}: larger than the {smallest}-pixel particles of {particles}")
    return box


def _check_ctf(table: pd.DataFrame, particles: Path) -> None:
    missing = np.flatnonzero(table["defocus_u"].isna().to_numpy())
    if missing.size:
        row = table.iloc[missing[0]]
        raise InputError(
            f"{particles} row {missing[0]}: no CTF for {row.source} image {row.source_index}; "
            "phase flipping needs one (use flip=False if the images are already flipped)"
        )


def _stack_chunks(
    table: pd.DataFrame, box: int, flip: bool, step: int, particles: Path
) -> Iterator[np.ndarray]:
    """Consecutive chunks of the output stack: read, phase-flip and crop each step."""
    stacks = {s: open_stack(s) for s in table["source"].unique()}
    with tqdm(
        total=len(table), unit="particle", desc="import", file=sys.stderr, mininterval=2
    ) as bar:
        for start in range(0, len(table), step):
            rows = table.iloc[start : start + step]
            out = np.empty((len(rows), box, box), dtype=np.float32)
            for (_, apix), group in rows.groupby(["box", "apix"], sort=False):
                images = _read_images(group, stacks, particles)
                params = CTFParams.from_table(group) if flip else None
                out[group.index - start] = flip_and_crop(images, params, apix, box)
            bar.update(len(rows))
            yield out


def flip_and_crop(
    images: np.ndarray, params: CTFParams | None, apix: float, box: int
) -> np.ndarray:
    """Phase-flip images (n, b, b) with their CTF (None: no flip) and Fourier-crop to box.

    Equal to fourier_crop(phase_flip(images, params, apix), box), but with one forward
    FFT at the full box and the CTF evaluated on the cropped grid only (the frequencies
    kept are the same): the stack pass is dominated by this step.
    """
    full = images.shape[-1]
    if box == full:
        return images if params is None else phase_flip(images, params, apix)
    ft = crop_ft(to_fourier(images), full, box)
    if params is not None:
        ft *= np.sign(ctf_2d(params, box, apix * full / box))
    return to_real(ft, box).astype(np.float32) * np.float32((box / full) ** 2)


def _read_images(rows: pd.DataFrame, stacks: dict[str, ImageStack], particles: Path) -> np.ndarray:
    """The source images of `rows` (all of one box), checked for NaN/inf pixels."""
    box = int(rows["box"].iloc[0])
    images = np.empty((len(rows), box, box), dtype=np.float32)
    position = pd.Series(np.arange(len(rows)), index=rows.index)
    for source, group in rows.groupby("source", sort=False):
        indices = group["source_index"].to_numpy()
        data = stacks[source].read(indices)
        finite = np.isfinite(data).all(axis=(1, 2))
        if not finite.all():
            k = int(np.flatnonzero(~finite)[0])
            raise InputError(
                f"{source}: image {indices[k]} (0-based) has NaN or infinite pixels "
                f"(particle row {group.index[k]} of {particles})"
            )
        images[position[group.index].to_numpy()] = data
    return images


def load_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read particles.csv written by the import."""
    return pd.read_csv(path, dtype={"source": "string"})


def load_meta(path: str | os.PathLike) -> dict:
    """Read meta.json written by the import."""
    return json.loads(Path(path).read_text())


def table_poses(table: pd.DataFrame, box: int) -> tuple[np.ndarray, np.ndarray]:
    """Rotations (n, 3, 3) and shifts (n, 2) in pixels of the cropped `box`, for training."""
    R = table[ROTATION_COLUMNS].to_numpy(dtype=np.float64).reshape(-1, 3, 3)
    scale = box / table["box"].to_numpy(dtype=np.float64)
    return R, table[["shift_x", "shift_y"]].to_numpy(dtype=np.float64) * scale[:, None]
