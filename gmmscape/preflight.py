"""Pre-flight convention check: do the imported poses, shifts, contrast and CTF make
sense together with the consensus map, before hours of GMM fitting and training?

A few thousand imported particles are reconstructed (gmmscape.reconstruct, two halves)
with their poses and CTF as stated, and again under the usual mistakes of converting
between programs:

- transposed rotations (R^T for R: the inverse rotation, as from a program that stores
  the other of the two matrices);
- negated shifts (origin and displacement confused);
- inverted contrast (protein dark): the stated map negated;
- CTF flipped twice, or not flipped at all: the stack is taken as not phase-flipped
  (weighted by the CTF instead of its magnitude);
- wrong hand: the stated map against the consensus map mirrored in z.

Each is scored by the mean FSC with the consensus map over a band of shells: from shell
2 to where the best of the reconstructions' own half maps still agree (FSC >= 0.143),
at most 3/4 of Nyquist. The stated conventions are expected to agree as well as their
half maps allow: a map from all the particles correlates with the truth as
sqrt(2 FSC_half / (1 + FSC_half)) (Rosenthal & Henderson 2003). The check fails when
a mistake agrees clearly better than the stated conventions (by MARGIN), or when the
stated conventions reach less than EXPECTED_FRACTION of what their half maps predict;
its message names the likely mistake and the config key that fixes it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .ctf import CTFParams, ctf_2d
from .errors import InputError
from .fsc import fsc_curve
from .images import ImageSource, cropped_source
from .importer import load_meta, load_table
from .io import atomic_output
from .io.mrc import read_volume
from .reconstruct import FourierVolume, SliceSamples
from .table import ROTATION_COLUMNS

MARGIN = 0.1  # mean FSC by which a mistake must beat the stated conventions
EXPECTED_FRACTION = 0.5  # of the FSC the stated half maps predict
MIN_SIGNAL = 0.3  # predicted mean FSC below which the data say too little to judge
N_PARTICLES = 2000
_TOGGLED = {"flipped": "raw", "raw": "flipped"}


@dataclass(frozen=True)
class Hypothesis:
    """One way of reading the imported particles, and what to set when it fits best."""

    name: str
    label: str
    transpose: bool = False
    negate_shift: bool = False
    toggle_flip: bool = False
    negate: bool = False
    mirror_map: bool = False
    fix: str = ""


HYPOTHESES = (
    Hypothesis("stated", "as imported"),
    Hypothesis(
        "transposed_rotations",
        "transposed rotations",
        transpose=True,
        fix="set conventions.transpose_rotations: true (the rotation matrices are transposed)",
    ),
    Hypothesis(
        "negated_shifts",
        "negated shifts",
        negate_shift=True,
        fix="set conventions.negate_shifts: true (the shifts have the opposite sign)",
    ),
    Hypothesis(
        "inverted_contrast",
        "inverted contrast",
        negate=True,
        fix="set conventions.invert_contrast: true (the protein is dark in the images)",
    ),
    Hypothesis("double_flip", "CTF flipped twice", toggle_flip=True),
    Hypothesis(
        "wrong_hand",
        "wrong hand",
        mirror_map=True,
        fix="set map to a map of the other hand (the map is mirrored relative to the poses; "
        "flip it along z)",
    ),
)


@dataclass
class PreflightResult:
    """Scores of every hypothesis, the verdict and its one-line message."""

    scores: dict[str, float]
    curves: dict[str, list[float]]
    half_fsc: list[float]
    expected: float
    band: tuple[int, int]  # shells
    resolution: tuple[float, float]  # Angstrom, of the band's ends
    n_particles: int
    verdict: str  # "pass", "low_signal", a hypothesis name or "worse_than_expected"
    message: str
    apix: float
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.verdict in ("pass", "low_signal")

    def to_json(self) -> dict:
        return {
            "verdict": self.verdict,
            "ok": self.ok,
            "message": self.message,
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
            "expected_stated": round(self.expected, 4),
            "band_shells": list(self.band),
            "band_resolution_A": [round(r, 2) for r in self.resolution],
            "n_particles": self.n_particles,
            "apix": self.apix,
            "fsc": {k: [round(x, 4) for x in v] for k, v in self.curves.items()},
            "half_map_fsc": [round(x, 4) for x in self.half_fsc],
            **self.extra,
        }


def map_at_box(volume: np.ndarray, box: int) -> np.ndarray:
    """A cubic map [z, y, x] Fourier-cropped (or padded) to a cube of ``box``, same extent."""
    volume = np.asarray(volume, dtype=np.float64)
    size = volume.shape[0]
    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise InputError(f"map: expected a cubic 3D map, got shape {volume.shape}")
    if size == box:
        return volume
    ft = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(volume)))
    out = np.zeros((box,) * 3, dtype=complex)
    n = min(size, box)
    src = slice(size // 2 - n // 2, size // 2 - n // 2 + n)
    dst = slice(box // 2 - n // 2, box // 2 - n // 2 + n)
    out[dst, dst, dst] = ft[src, src, src]
    vol = np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(out))).real
    return vol * (box / size) ** 3


def _sample(table: pd.DataFrame, n: int, seed: int) -> np.ndarray:
    """Up to n rows, seeded, in stack order (reads stay sequential)."""
    rows = np.arange(len(table))
    if len(rows) > n:
        rows = np.sort(np.random.default_rng(seed).choice(rows, n, replace=False))
    order = np.argsort(table["stack_index"].to_numpy()[rows], kind="stable")
    return rows[order]


def reconstruct_hypotheses(
    table: pd.DataFrame,
    source: ImageSource,
    rows: np.ndarray,
    hypotheses: tuple[Hypothesis, ...] = HYPOTHESES,
    *,
    chunk: int = 256,
) -> dict[str, tuple[FourierVolume, FourierVolume]]:
    """Half-map sums (alternate rows) of every distinct reconstruction the hypotheses need,
    keyed by hypothesis name; each image is read once."""
    needed = [h for h in hypotheses if not (h.negate or h.mirror_map)]
    volumes = {
        h.name: (FourierVolume.empty(source.box), FourierVolume.empty(source.box)) for h in needed
    }
    half = np.arange(len(rows)) % 2
    for start in range(0, len(rows), chunk):
        part = table.iloc[rows[start : start + chunk]]
        images = source.read(part)
        R = part[ROTATION_COLUMNS].to_numpy(np.float64).reshape(-1, 3, 3)
        t = source.shifts(part)
        ctf = np.nan_to_num(ctf_2d(CTFParams.from_table(part), source.box, source.apix), nan=1.0)
        which = half[start : start + chunk]
        for h in needed:
            samples = SliceSamples.from_images(
                images,
                R.transpose(0, 2, 1) if h.transpose else R,
                -t if h.negate_shift else t,
                ctf,
                _images_ctf(source, h.toggle_flip),
            )
            for k, volume in enumerate(volumes[h.name]):
                volume.add(samples, np.flatnonzero(which == k), "trilinear")
    return volumes


def _images_ctf(source: ImageSource, toggle: bool) -> str:
    """What the source's images hold (CTF_STATES), or, toggled, flipped <-> raw (a
    premultiplied stack has no such mistake to test)."""
    return _TOGGLED.get(source.images_ctf, source.images_ctf) if toggle else source.images_ctf


def _band(half_curves: list[np.ndarray], box: int) -> tuple[int, int]:
    """Shells 2..k: k the last shell up to 3/4 Nyquist where the best half-map FSC >= 0.143."""
    top = max(4, int(0.75 * box / 2))
    best = np.max(np.stack(half_curves), axis=0)[: top + 1]
    above = np.flatnonzero(best[2:] >= 0.143) + 2
    return 2, int(max(4, above.max() if above.size else 4))


def _fix_for(h: Hypothesis, meta: dict) -> str:
    if h.name != "double_flip":
        return h.fix
    if meta.get("source_ctf", "flipped" if meta.get("source_flipped") else "raw") != "raw":
        return "set phase_flipped: false (the images are not phase-flipped)"
    return (
        "set phase_flipped: true (the images were already phase-flipped and the import "
        "flipped them again)"
    )


def check_conventions(
    table: pd.DataFrame,
    source: ImageSource,
    reference: np.ndarray,
    *,
    meta: dict | None = None,
    n_particles: int = N_PARTICLES,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> PreflightResult:
    """Score every hypothesis against ``reference`` (the consensus map at source.box) and
    judge them. ``meta`` is the import's meta.json (which phase-flip key to name)."""
    meta = meta or {}
    reference = np.asarray(reference, dtype=np.float64)
    if reference.shape != (source.box,) * 3:
        raise InputError(
            f"preflight: map box {reference.shape} differs from the particles' {source.box}"
        )
    rows = _sample(table, n_particles, seed)
    if len(rows) < 2:
        raise InputError("preflight: needs at least 2 particles")
    if progress:
        progress(f"preflight: {len(rows)} particles, {len(HYPOTHESES)} readings")
    sums = reconstruct_hypotheses(table, source, rows)
    maps, halves = {}, {}
    for name, (a, b) in sums.items():
        maps[name] = (a + b).volume()
        halves[name] = fsc_curve(a.volume(), b.volume())
    mirrored = np.roll(reference[::-1], 1, axis=0)  # z -> -z about the centre voxel
    curves = {}
    for h in HYPOTHESES:
        base = maps["stated"] if (h.negate or h.mirror_map) else maps[h.name]
        curves[h.name] = fsc_curve(
            -base if h.negate else base, mirrored if h.mirror_map else reference
        )
    band = _band(list(halves.values()), source.box)
    lo, hi = band
    scores = {k: float(np.mean(c[lo : hi + 1])) for k, c in curves.items()}
    predicted = {k: _predicted(c[lo : hi + 1]) for k, c in halves.items()}
    verdict, message = _judge(scores, predicted, meta)
    expected = predicted["stated"]
    extent = source.box * source.apix
    resolution = (extent / lo, extent / hi)
    return PreflightResult(
        scores=scores,
        curves={k: v.tolist() for k, v in curves.items()},
        half_fsc=halves["stated"].tolist(),
        expected=expected,
        band=band,
        resolution=resolution,
        n_particles=len(rows),
        verdict=verdict,
        message=message,
        apix=source.apix,
    )


def _predicted(half_fsc: np.ndarray) -> float:
    """Mean FSC with the truth that a map of both halves should reach, from their FSC."""
    c = np.clip(half_fsc, 0.0, 1.0)
    return float(np.mean(np.sqrt(2 * c / (1 + c))))


def _judge(scores: dict[str, float], predicted: dict[str, float], meta: dict) -> tuple[str, str]:
    """Verdict and message; ``predicted``: what each reconstruction's half maps predict."""
    stated, expected, signal = scores["stated"], predicted["stated"], max(predicted.values())
    mistakes = [h for h in HYPOTHESES if h.name != "stated"]
    best = max(mistakes, key=lambda h: scores[h.name])
    if signal < MIN_SIGNAL:
        return "low_signal", (
            f"preflight: too little signal to judge (half maps predict at most {signal:.2f}); "
            "passed unchecked"
        )
    if scores[best.name] > stated + MARGIN and scores[best.name] > MIN_SIGNAL:
        return best.name, (
            f"preflight: the particles agree with the map as if with {best.label} "
            f"(mean FSC {scores[best.name]:.2f} vs {stated:.2f} as imported): "
            f"{_fix_for(best, meta)}"
        )
    if stated < EXPECTED_FRACTION * expected:
        return "worse_than_expected", (
            f"preflight: the particles agree with the map worse than expected (mean FSC "
            f"{stated:.2f}, their half maps predict {expected:.2f}) and no usual convention "
            "mistake explains it: check that map and particles belong together and their "
            "pixel sizes (apix)"
        )
    return "pass", (
        f"preflight: conventions agree with the map (mean FSC {stated:.2f}, expected "
        f"{expected:.2f}; best mistake {best.label} {scores[best.name]:.2f})"
    )


def check_import(
    import_dir: str | os.PathLike,
    consensus: str | os.PathLike | np.ndarray,
    *,
    n_particles: int = N_PARTICLES,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> PreflightResult:
    """check_conventions on an import folder (stack.mrcs, particles.csv, meta.json) and the
    consensus map (file or array [z, y, x]), Fourier-cropped to the training box (the
    import checked that it spans the particles' box in Angstrom). The workflow's preflight rule and
    `gmmscape import --check` call this."""
    import_dir = Path(import_dir)
    meta = load_meta(import_dir / "meta.json")
    table = load_table(import_dir / "particles.csv")
    source = cropped_source(import_dir / "stack.mrcs", meta)
    volume = consensus if isinstance(consensus, np.ndarray) else read_volume(consensus)
    reference = map_at_box(volume, source.box)
    result = check_conventions(
        table, source, reference, meta=meta, n_particles=n_particles, seed=seed, progress=progress
    )
    where = "array" if isinstance(consensus, np.ndarray) else str(consensus)
    result.extra = {"map": where, "import": str(import_dir)}
    return result


def write_report(
    result: PreflightResult, json_path: str | os.PathLike, figure: str | os.PathLike
) -> None:
    """preflight.json and a figure of every hypothesis's FSC with the map."""
    from .plots import fsc_curves

    with atomic_output(json_path) as tmp:
        tmp.write_text(json.dumps(result.to_json(), indent=1) + "\n")
    labels = {h.name: h.label for h in HYPOTHESES}
    box = 2 * (len(result.half_fsc) - 1)
    shell = np.arange(len(result.half_fsc))
    with np.errstate(divide="ignore"):
        resolution = box * result.apix / shell
    curves = {
        labels[name]: pd.DataFrame({"shell": shell, "resolution": resolution, "fsc": fsc})
        for name, fsc in result.curves.items()
    }
    lo, hi = result.resolution
    title = f"pre-flight: {result.verdict} (scored {lo:.0f}-{hi:.0f} Å)"
    fsc_curves(curves, figure, title=title, ylim=(-1.05, 1.05))


def summary_lines(result: PreflightResult) -> list[str]:
    """The scores as lines for a log or a terminal."""
    labels = {h.name: h.label for h in HYPOTHESES}
    lines = [f"  {labels[k]:<22} mean FSC {v:+.3f}" for k, v in result.scores.items()]
    lo, hi = result.resolution
    lines.append(
        f"  band {lo:.1f}-{hi:.1f} A; stated expected from half maps {result.expected:.3f}"
    )
    return lines


def run_check(
    import_dir: str | os.PathLike,
    consensus: str | os.PathLike | np.ndarray,
    json_path: str | os.PathLike | None = None,
    figure: str | os.PathLike | None = None,
    *,
    n_particles: int = N_PARTICLES,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> PreflightResult:
    """The check as a step: scores to ``log``, preflight.json and figure when asked, then
    InputError with the one-line verdict when it fails (the rule and `gmmscape import
    --check`)."""
    result = check_import(import_dir, consensus, n_particles=n_particles, seed=seed, progress=log)
    for line in summary_lines(result):
        log(line)
    if json_path is not None:
        write_report(
            result, json_path, figure if figure is not None else Path(json_path).with_suffix(".png")
        )
    if not result.ok:
        raise InputError(result.message)
    log(result.message)
    return result
