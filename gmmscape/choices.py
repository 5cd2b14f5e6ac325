"""Settings derived from the data, for every key the config leaves empty.

Defaults tuned on one data set discard the signal of another: a band of 32 A suits a
4 A/pixel demo of big blobs and throws away most of what a 2 A/pixel protein data set
holds. So the settings that depend on the data are chosen from it:

- **a single particle's SNR** per shell: from the FSC of half maps reconstructed
  here from up to ``HALF_PARTICLES`` particles per half at their imported poses
  (masked by the config's mask, else by a soft mask around the molecule);
- **training band** (``train.res_hi``): the loss is the mean FRC over rings, every
  ring weighted alike, so a ring where a single particle's expected FRC is below the
  ring's own noise adds noise to every gradient. The half maps' FSC gives a single
  particle's spectral SNR per shell (``particle_ring_snr``); the band ends at the last
  shell where the expected FRC exceeds ``RING_SNR`` (0.4) times the noise, bounded to
  [``MIN_BAND``, ``MAX_BAND``] A;
- **training box** (``box``): the smallest even box whose Nyquist lies at
  ``NYQUIST_MARGIN`` of the band (so the band's top rings are not the box edge), at
  least ``MIN_BOX`` and at most the particles' box;
- **neutral GMM** (``gmm.target_resolution``, ``gmm.target_n`` and the first level):
  the GMM is fitted to the band's resolution d, with one Gaussian per (0.45 d)^3 of the
  molecule's volume (the voxels of the consensus map above a noise-derived threshold,
  or inside the mask): about the sampling a map needs at Nyquist; the first level has
  1/8 of them at 2.5 d, so every derived build has ``LEVELS`` levels;
- **epochs** (``train.epochs``): about ``VISITS`` particle visits in all, within
  [``MIN_EPOCHS``, ``MAX_EPOCHS``], so small data sets train long enough and large
  ones do not take days;
- **candidate models** (``train.candidates``): after training, each particle is scored
  against this many decoded models (gmmscape.posterior); ``CANDIDATES_PER_EPOCH`` per
  epoch within [``MIN_CANDIDATES``, ``MAX_CANDIDATES``], so the scoring costs at most
  about a quarter of the training's time, however many particles there are.

Each derived value is written with its reason to ``choices.yaml``; a value the config
sets is kept and reported as set. The measured single-particle SNR per shell is kept
there too (``data.particle_ssnr``): the loss weighs its rings with it
(gmmscape.weighting).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from .errors import InputError
from .fsc import SpectralSNR, fsc_table, resolution_at
from .images import original_source
from .importer import read_table
from .io.common import atomic_output
from .io.mrc import read_map
from .masks import fsc_mask, mask_at_box, molecule_mask
from .reconstruct import reconstruct_with_halves
from .table import EVEN, ODD

log = logging.getLogger(__name__)

HALF_PARTICLES = 2_500  # per half, for the half maps reconstructed here
# Band edge: one particle's expected ring FRC / the FRC's noise. The loss weighs each
# ring by its SNR (gmmscape.weighting), so rings below their noise still add motion: on
# the realistic benchmark's full-size hinge set (docs/validation.md) a 6 A band (ratio
# ~0.4) reached motion rho 0.886 where 8 A (0.7) reached 0.854 and 10.7 A (1.0) 0.738.
RING_SNR = 0.4
MAX_FSC = 0.9999  # FSC estimates this close to 1 carry no further information
MIN_BAND, MAX_BAND = 4.0, 40.0  # Angstrom
NYQUIST_MARGIN = 0.95  # the band's top ring at this fraction of Nyquist
MIN_BOX = 32
# Of the resolution. At d/3 (1.5x Nyquist) the 6 A band of the full-size hinge set would
# take 6,650 Gaussians; 2,560 (0.44 d) reached the rho above at the 8 A run's cost.
GAUSSIAN_SPACING = 0.45
MIN_GAUSSIANS, MAX_GAUSSIANS = 128, 16384
LEVELS = 4  # first level: target_n / 2^(LEVELS-1)
START_FACTOR = 2.5  # first level's resolution / target resolution
VISITS = 200_000
MIN_EPOCHS, MAX_EPOCHS = 5, 60
# Scoring a particle against one decoded model costs about 1/8 of one training visit
# (1.1 ms against 8.1 ms on the realistic benchmark's CI-size set), so 2 candidates per
# epoch cost about a quarter of the training. There, 8 candidates recovered the motion
# as well as 32 (rho 0.837 and 0.839) and 4 nearly so (0.829): docs/validation.md.
CANDIDATE_COST = 1 / 8  # of a training visit, per particle and candidate
# A refit cycle of the decoder: one cycle of 5 epochs of 1,200 particles, at the training's
# learning rate, lifted the CI-size hinge from 0.837 to 0.852 (seed 1: 0.840 to 0.850);
# a second cycle added nothing (docs/validation.md).
REFIT_VISITS, REFIT_EPOCHS = 25_000, 5
CANDIDATES_PER_EPOCH = 2
MIN_CANDIDATES, MAX_CANDIDATES = 8, 32
CHOICE_KEYS = (
    "box",
    "gmm.start_n",
    "gmm.target_n",
    "gmm.start_resolution",
    "gmm.target_resolution",
    "train.res_hi",
    "train.epochs",
    "train.candidates",
)


@dataclass(frozen=True)
class Choice:
    value: object
    reason: str


@dataclass(frozen=True)
class DataFacts:
    """What the choices are derived from."""

    n_particles: int
    box: int  # the particles' own box
    apix: float  # the particles' own pixel size
    fsc: pd.DataFrame  # half-map FSC (shell, resolution, fsc)
    fsc_source: str
    half_particles: int  # particles in each half map
    volume: float  # molecule volume, Angstrom^3
    volume_source: str

    @property
    def extent(self) -> float:
        return self.box * self.apix


def half_map_fsc(
    half1: np.ndarray, half2: np.ndarray, apix: float, mask: np.ndarray | None
) -> pd.DataFrame:
    w = 1.0 if mask is None else mask
    return fsc_table(half1 * w, half2 * w, apix)


def reconstructed_halves(
    table: pd.DataFrame, states: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Half maps from up to HALF_PARTICLES particles per half, at their own box: those
    of the largest group sharing box, pixel size and image state (optics groups may
    differ in all three)."""
    groups = table.assign(_state=states).groupby(["box", "apix", "_state"]).indices
    (box, apix, state), members = max(groups.items(), key=lambda item: len(item[1]))
    rng = np.random.default_rng(seed)
    rows = []
    for half in (EVEN, ODD):
        half_rows = members[table["subset"].to_numpy()[members] == half]
        if len(half_rows) > HALF_PARTICLES:
            half_rows = rng.choice(half_rows, HALF_PARTICLES, replace=False)
        rows.append(half_rows)
    sub = table.iloc[np.sort(np.concatenate(rows))].reset_index(drop=True)
    source = original_source(sub, images_ctf=str(state))
    log.info("choices: reconstructing half maps from %d particles", len(sub))
    (result,) = reconstruct_with_halves(sub, source, [np.arange(len(sub))])
    return result.half1, result.half2, len(sub)


def particle_ssnr(fsc: pd.DataFrame, half_particles: int, extent: float) -> SpectralSNR:
    """One particle's spectral SNR per shell, FSC / (1 - FSC) / n_half (a half map
    averages n_half particles), against frequency (shells of a box of `extent` A)."""
    f = np.clip(fsc["fsc"].to_numpy(np.float64), 0.0, MAX_FSC)
    frequency = fsc["shell"].to_numpy(np.float64) / extent
    return SpectralSNR(frequency, f / (1.0 - f) / max(half_particles, 1))


def load_snr(path: str | os.PathLike) -> SpectralSNR | None:
    """The particle SNR a choices.yaml holds; None when the data were not measured."""
    data = yaml.safe_load(Path(path).read_text()).get("data")
    if not isinstance(data, dict) or "particle_ssnr" not in data:
        return None
    return SpectralSNR.from_dict(data["particle_ssnr"])


def particle_ring_snr(fsc: pd.DataFrame, half_particles: int) -> np.ndarray:
    """Per shell, the expected FRC of one particle against the true projection over the
    noise of a ring's FRC: sqrt(SSNR_1 * 2 pi k) with SSNR_1 = FSC / (1 - FSC) / n_half
    the single particle's spectral SNR (a half map averages n_half particles) and
    1 / sqrt(2 pi k) the std of an FRC over the ~2 pi k pixels of ring k."""
    ssnr = particle_ssnr(fsc, half_particles, 1.0).ssnr
    return np.sqrt(ssnr * 2.0 * np.pi * fsc["shell"].to_numpy())


def band_for(fsc: pd.DataFrame, half_particles: int, apix: float) -> tuple[float, str]:
    """Training band (Angstrom): the last shell (from shell 1) at which one particle's
    expected FRC still exceeds RING_SNR times its noise."""
    ratio = particle_ring_snr(fsc, half_particles)
    shells = fsc["shell"].to_numpy()
    below = np.flatnonzero((shells >= 1) & (ratio < RING_SNR))
    first = int(np.flatnonzero(shells >= 1)[0])
    last = int(shells[-1]) if len(below) == 0 else int(shells[max(below[0] - 1, first)])
    res = float(fsc["resolution"].to_numpy()[last])
    band = float(np.clip(res, max(MIN_BAND, 2.0 * apix / NYQUIST_MARGIN), MAX_BAND))
    reason = (
        f"a single particle's FRC stays above its noise to {res:.1f} A (half maps of "
        f"{half_particles:,} particles: FSC 0.143 at {resolution_at(fsc):.1f} A, "
        f"0.5 at {resolution_at(fsc, 0.5):.1f} A)"
    )
    if band != res:
        reason += f", bounded to [{MIN_BAND}, {MAX_BAND}] A and the sampling"
    return round(band, 2), reason


def box_for(extent: float, band: float, particle_box: int) -> int:
    """Smallest even box (>= MIN_BOX, <= the particles') whose Nyquist holds the band."""
    box = math.ceil(extent / (NYQUIST_MARGIN * band / 2.0))
    box += box % 2
    return int(min(max(box, MIN_BOX), particle_box))


def gaussians_for(volume: float, resolution: float) -> int:
    n = volume / (GAUSSIAN_SPACING * resolution) ** 3
    n = int(np.clip(round(n / 64.0) * 64, MIN_GAUSSIANS, MAX_GAUSSIANS))
    return n


def epochs_for(n_particles: int) -> int:
    return int(np.clip(math.ceil(VISITS / max(n_particles, 1)), MIN_EPOCHS, MAX_EPOCHS))


def candidates_for(epochs: int) -> int:
    return int(np.clip(CANDIDATES_PER_EPOCH * epochs, MIN_CANDIDATES, MAX_CANDIDATES))


def refit_epochs(particles: int) -> int:
    """Epochs of one cycle of the decoder refitted to the posterior latents (gmmscape.train):
    about REFIT_VISITS particle visits, within 1-REFIT_EPOCHS."""
    return int(np.clip(math.ceil(REFIT_VISITS / max(particles, 1)), 1, REFIT_EPOCHS))


def scoring_passes(epochs: int) -> float:
    """The candidate scoring after ``epochs`` of training, in training epochs' worth."""
    return candidates_for(epochs) * CANDIDATE_COST


def derive(settings: dict[str, object], facts: DataFacts) -> dict[str, Choice]:
    """Every key of CHOICE_KEYS: the config's value when set, else derived from facts."""
    chosen: dict[str, Choice] = {}

    def pick(key: str, value: Any, reason: str) -> Any:  # config values are untyped
        given = settings.get(key)
        chosen[key] = (
            Choice(given, "set in the config") if given is not None else Choice(value, reason)
        )
        return chosen[key].value

    band, why = band_for(facts.fsc, facts.half_particles, facts.apix)
    band = pick("train.res_hi", band, why)
    box = pick(
        "box",
        box_for(facts.extent, float(band), facts.box),
        f"Nyquist at {NYQUIST_MARGIN:g} of the {band} A band over the {facts.extent:.0f} A box",
    )
    if box > facts.box:
        raise InputError(f"box: training box {box} is larger than the particles' box {facts.box}")
    target_res = pick("gmm.target_resolution", band, "the training band")
    n = gaussians_for(facts.volume, float(target_res))
    target_n = pick(
        "gmm.target_n",
        n,
        f"one Gaussian per ({GAUSSIAN_SPACING:.2g} x {target_res} A)^3 of the molecule's "
        f"{facts.volume:.0f} A^3 ({facts.volume_source})",
    )
    pick(
        "gmm.start_n",
        max(1, int(target_n) // 2 ** (LEVELS - 1)),
        f"target_n / {2 ** (LEVELS - 1)}: {LEVELS} levels",
    )
    pick(
        "gmm.start_resolution",
        round(START_FACTOR * float(target_res), 2),
        f"{START_FACTOR} x the target resolution",
    )
    epochs = pick(
        "train.epochs",
        epochs_for(facts.n_particles),
        f"about {VISITS:,} particle visits for {facts.n_particles:,} particles "
        f"(within {MIN_EPOCHS}-{MAX_EPOCHS})",
    )
    pick(
        "train.candidates",
        candidates_for(int(epochs)),
        f"{CANDIDATES_PER_EPOCH} per epoch (within {MIN_CANDIDATES}-{MAX_CANDIDATES}): "
        f"scoring the particles against them costs at most ~1/4 of the training",
    )
    return chosen


def measure(
    table: pd.DataFrame,
    states: np.ndarray,
    map_path: str | os.PathLike,
    *,
    mask_path: str | os.PathLike | None = None,
    seed: int = 0,
    apix: float | None = None,
) -> DataFacts:
    """The facts of a data set: the FSC of half maps of a known, modest particle count
    and the molecule's volume (``apix`` overrides the map's header).

    The half maps are always reconstructed here from at most HALF_PARTICLES per half,
    even when the refinement's own are at hand: a single particle's SNR is read from
    FSC / (1 - FSC), and half maps of 10^5 particles sit at FSC ~1 over every shell
    the training could use, where that ratio is not measurable.
    """
    volume, map_apix = read_map(map_path)
    map_apix = apix or map_apix
    mask = mask_at_box(read_map(mask_path)[0], volume.shape[0]) if mask_path else None
    h1, h2, count = reconstructed_halves(table, states, seed)
    half_apix = float(table["apix"].iloc[0])
    w = mask if mask is not None and mask.shape == h1.shape else fsc_mask(h1 + h2, half_apix)
    fsc = half_map_fsc(h1, h2, half_apix, w)
    resolution = max(resolution_at(fsc, 0.5), 2.0 * map_apix)
    core = molecule_mask(volume, map_apix, resolution)
    volume_source = "consensus map above the solvent level"
    if mask is not None:  # a mask is drawn generously: it bounds the molecule, no more
        core &= mask >= 0.5
        volume_source += ", inside the mask"
    return DataFacts(
        n_particles=len(table),
        box=int(table["box"].iloc[0]),
        apix=half_apix,
        fsc=fsc,
        fsc_source=f"half maps reconstructed here from {count:,} particles",
        half_particles=count // 2,
        volume=float(core.sum()) * map_apix**3,
        volume_source=volume_source,
    )


def write_choices(
    path: str | os.PathLike, chosen: dict[str, Choice], facts: DataFacts | None
) -> None:
    """choices.yaml: the measured facts (when measured) and every setting with its reason."""
    doc: dict[str, object] = {"data": "not measured: the config sets every derivable key"}
    if facts is not None:
        doc["data"] = {
            "particles": facts.n_particles,
            "box": facts.box,
            "apix": facts.apix,
            "resolution_0.143": round(resolution_at(facts.fsc, 0.143), 2),
            "resolution_0.5": round(resolution_at(facts.fsc, 0.5), 2),
            "fsc_from": facts.fsc_source,
            "molecule_volume_A3": round(facts.volume),
            "particle_ssnr": particle_ssnr(facts.fsc, facts.half_particles, facts.extent).to_dict(),
        }
    doc["settings"] = {k: {"value": c.value, "reason": c.reason} for k, c in chosen.items()}
    with atomic_output(Path(path)) as tmp:
        tmp.write_text(yaml.safe_dump(doc, sort_keys=False))


def load_choices(path: str | os.PathLike) -> dict[str, object]:
    """key -> value of a choices.yaml."""
    doc = yaml.safe_load(Path(path).read_text())
    return {k: v["value"] for k, v in doc["settings"].items()}


def summary(chosen: dict[str, Choice]) -> str:
    return "\n".join(f"  {k} = {c.value}  ({c.reason})" for k, c in chosen.items())


def choose(
    particles: str | os.PathLike,
    map_path: str | os.PathLike,
    out: str | os.PathLike,
    settings: dict[str, object],
    *,
    mask_path: str | os.PathLike | None = None,
    apix: float | None = None,
    seed: int = 0,
    phase_flipped: str | bool = "auto",
    particles_dir: str | os.PathLike | None = None,
    conventions: dict | None = None,
    measure_snr: bool = True,
) -> dict[str, Choice]:
    """Measure the data set, derive every CHOICE_KEYS setting the config leaves empty
    (None in ``settings``) and write them with their reasons to ``out``. The data are
    measured even when the config sets every key if ``measure_snr`` (the loss's ring
    weights need the particles' SNR)."""
    if not measure_snr and all(settings.get(k) is not None for k in CHOICE_KEYS):
        chosen = {k: Choice(settings[k], "set in the config") for k in CHOICE_KEYS}
        write_choices(out, chosen, None)
        return chosen
    table, states = read_table(
        particles, apix=apix, seed=seed, phase_flipped=phase_flipped,
        particles_dir=particles_dir, conventions=conventions,
    )  # fmt: skip
    facts = measure(table, states, map_path, mask_path=mask_path, seed=seed, apix=apix)
    chosen = derive(settings, facts)
    write_choices(out, chosen, facts)
    return chosen
