"""Simulated particle data sets with ground truth (paper, Extended Data Fig. 5).

A system of gmmscape.phantoms is projected at uniformly random orientations with
small random shifts, multiplied by a per-particle CTF (300 kV, defocus 1-2.5 um,
slight astigmatism; not phase-flipped, protein positive, as RELION expects) and
buried in white Gaussian noise. The output directory then holds what a RELION
user would have after a consensus refinement, plus the truth needed to score a
heterogeneity analysis:

- ``particles.star`` (RELION 3.1) and ``particles.mrcs`` (float32 stack);
- ``consensus.mrc``: the population-weighted average of the true maps;
- ``states/state_SSS.mrc`` (``state_SSS_cK.mrc`` for composition K): true maps;
- ``truth_gmm/<same name>.npy``: true GMMs (N, 5), box fractions, same Gaussians in
  every model; ``truth_gmm/part.npy``: each Gaussian's part (0 body, 1 moving
  domain, 2 extra density);
- ``ground_truth.csv``: ``index`` (row in the STAR), ``state``, ``coordinate``,
  ``composition``;
- ``mask.mrc`` (soft mask around the molecule in every state) and
  ``moving_mask.mrc`` (around the moving domain's whole path);
- ``simulation.json``: parameters and the measured signal and noise levels.

SNR is the signal variance over the noise variance: the signal variance is the
variance of each noise-free, CTF-modulated particle over its whole box, averaged
over the data set; the noise is white with variance signal / SNR.

Particles are in random order (not grouped by state); every random draw comes
from the seed, so a seed gives the same data. Outputs are written in a hidden
staging folder and moved into place at the end (particles.star last), so a killed
run leaves no partial outputs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from .ctf import CTFParams, ctf_2d
from .errors import InputError
from .fourier import check_box, to_real
from .fsc import fsc_curve, fsc_weighted
from .geometry import matrix_to_relion, random_rotations, relion_to_matrix
from .images import ImageSource
from .io.mrc import MrcStack, write_map, write_stack
from .io.star import write_star
from .masks import soft_mask
from .phantoms import DOMAIN, System, build_system
from .projection import FourierGrid, density, project_ft
from .protein import protein_system
from .reconstruct import reconstruct_with_halves
from .table import ROTATION_COLUMNS, alternating_subsets

log = logging.getLogger(__name__)

VOLTAGE, CS, AMP_CONTRAST = 300.0, 2.7, 0.1
DEFOCUS_RANGE = (10000.0, 25000.0)  # Angstrom
MAX_ASTIGMATISM = 400.0  # Angstrom, |defocus_u - defocus_v|
MAX_SHIFT = 0.04  # box fraction, each axis
MIN_BOX = 32  # the phantoms' Gaussians (0.03 box) must stay about a pixel wide
MASK_THRESHOLD = 0.1  # of the envelope's maximum
MASK_DILATE, MASK_EDGE = 0.03, 0.05  # box fractions
STAGING = ".simulate.partial"
OUTPUTS = {  # key in simulate's result -> name in the output folder
    "particles": "particles.star",
    "stack": "particles.mrcs",
    "consensus": "consensus.mrc",
    "states": "states",
    "truth_gmm": "truth_gmm",
    "ground_truth": "ground_truth.csv",
    "mask": "mask.mrc",
    "moving_mask": "moving_mask.mrc",
    "info": "simulation.json",
}
MAP_KINDS = ("true", "reconstructed")
PROTEIN_SYSTEMS = {"protein_hinge": False, "protein_composition": True}  # -> with extra domain


def clean_particles(
    gmm: np.ndarray, rot: np.ndarray, shift: np.ndarray, ctf: CTFParams, box: int, apix: float
) -> np.ndarray:
    """Noise-free particles (B, b, b) float32: projections of gmm multiplied by the CTF.

    gmm (N, 5) or (B, N, 5), rot (B, 3, 3), shift (B, 2) pixels; ctf per particle
    (or scalars shared by all).
    """
    re, im = project_ft(gmm, rot, shift, FourierGrid(box))
    ft = (re.numpy() + 1j * im.numpy()) * ctf_2d(ctf, box, apix)
    return to_real(ft, box).astype(np.float32)


def _check(box: int, apix: float, snr: float | None, per_state: int, chunk: int, seed: int) -> None:
    """Raise InputError for a parameter that cannot give a sensible data set."""
    if check_box(box) < MIN_BOX:
        raise InputError(f"box: expected at least {MIN_BOX} pixels for the phantoms, got {box}")
    if not apix > 0:
        raise InputError(f"apix: expected a positive pixel size in Angstrom, got {apix}")
    if snr is not None and not snr > 0:
        raise InputError(f"snr: expected a positive signal-to-noise ratio (or none), got {snr}")
    if per_state < 1 or chunk < 1:
        raise InputError(f"per_state and chunk: expected >= 1, got {per_state} and {chunk}")
    if seed < 0:
        raise InputError(f"seed: expected a non-negative integer, got {seed}")


def _assign_models(system: System, per_state: int, rng: np.random.Generator) -> np.ndarray:
    """Model of every particle, per_state per state, in random order.

    Within a state with two compositions the particles alternate between them,
    starting from a composition that alternates with the state, so composition is
    balanced and independent of the state.
    """
    models = []
    for s in range(system.n_states):
        options = np.flatnonzero(system.state == s)
        models.append(options[(np.arange(per_state) + s) % len(options)])
    return rng.permutation(np.concatenate(models))


def _draw_particles(
    system: System,
    per_state: int,
    box: int,
    apix: float,
    defocus: tuple[float, float],
    rng: np.random.Generator,
) -> pd.DataFrame:
    """One row per particle: model, ground truth, pose and CTF (canonical column names).

    Angles, origins and defoci are rounded to the STAR file's 6 decimals before the
    images are made, so the STAR describes the images exactly.
    """
    model = _assign_models(system, per_state, rng)
    n = len(model)
    angles = np.round(matrix_to_relion(random_rotations(n, rng)), 6)
    origin_a = np.round(rng.uniform(-MAX_SHIFT * box, MAX_SHIFT * box, (n, 2)) * apix, 6)
    mean_defocus = rng.uniform(*defocus, n)
    astig = rng.uniform(0.0, MAX_ASTIGMATISM, n)
    return pd.DataFrame(
        {
            "model": model,
            "state": system.state[model],
            "coordinate": system.coordinate[model],
            "composition": system.composition[model],
            "rot": angles[:, 0],
            "tilt": angles[:, 1],
            "psi": angles[:, 2],
            "shift_x": -origin_a[:, 0] / apix,
            "shift_y": -origin_a[:, 1] / apix,
            "defocus_u": np.round(mean_defocus + astig / 2, 6),
            "defocus_v": np.round(mean_defocus - astig / 2, 6),
            "defocus_angle": np.round(rng.uniform(0.0, 180.0, n), 6),
            "voltage": VOLTAGE,
            "cs": CS,
            "amp_contrast": AMP_CONTRAST,
            "phase_shift": 0.0,
            "bfactor": 0.0,
        }
    )


def _particle_chunks(
    system: System, table: pd.DataFrame, box: int, apix: float, chunk: int
) -> Iterator[np.ndarray]:
    """Noise-free particles of the table, chunk by chunk, logging progress every ~10%."""
    n = len(table)
    step = max(1, n // 10)
    for start in range(0, n, chunk):
        rows = table.iloc[start : start + chunk]
        rot = relion_to_matrix(rows["rot"], rows["tilt"], rows["psi"])
        shift = rows[["shift_x", "shift_y"]].to_numpy()
        gmm = system.models[rows["model"].to_numpy()]
        yield clean_particles(gmm, rot, shift, CTFParams.from_table(rows), box, apix)
        done = min(start + chunk, n)
        if done == n or done // step > start // step:
            log.info("  %d/%d particles", done, n)


def _signal_variance(chunks: Iterable[np.ndarray]) -> float:
    """Mean over particles of each particle's pixel variance."""
    total, count = 0.0, 0
    for images in chunks:
        total += float(images.reshape(len(images), -1).var(axis=1, dtype=np.float64).sum())
        count += len(images)
    return total / count


def _model_name(system: System, m: int) -> str:
    """File stem of model m: state_SSS, or state_SSS_cK when composition varies."""
    stem = f"state_{system.state[m]:03d}"
    return f"{stem}_c{system.composition[m]}" if system.composition.any() else stem


def _write_truth(system: System, table: pd.DataFrame, box: int, apix: float, out: Path) -> None:
    """True GMMs and maps per model, the consensus map and the two masks."""
    (out / "states").mkdir()
    (out / "truth_gmm").mkdir()
    np.save(out / "truth_gmm" / "part.npy", system.part)
    counts = np.bincount(table["model"], minlength=len(system.models))
    consensus = np.zeros((box, box, box), dtype=np.float64)
    envelope = np.zeros((box, box, box), dtype=np.float32)
    path_envelope = np.zeros((box, box, box), dtype=np.float32)
    for m, gmm in enumerate(system.models):
        name = _model_name(system, m)
        np.save(out / "truth_gmm" / f"{name}.npy", gmm)
        vol = density(gmm, box)
        write_map(out / "states" / f"{name}.mrc", vol, apix)
        consensus += counts[m] * vol
        np.maximum(envelope, vol, out=envelope)
        np.maximum(path_envelope, density(gmm[system.part == DOMAIN], box), out=path_envelope)
    write_map(out / "consensus.mrc", consensus / counts.sum(), apix)
    # One threshold for both masks, so the moving mask lies inside the molecule's.
    level, dilate = MASK_THRESHOLD * envelope.max(), round(MASK_DILATE * box)
    edge = max(2, round(MASK_EDGE * box))
    for name, env in (("mask.mrc", envelope), ("moving_mask.mrc", path_envelope)):
        write_map(out / name, soft_mask(env, level, dilate, edge), apix)


def _canonical_table(table: pd.DataFrame) -> pd.DataFrame:
    """The particles as the import's canonical table (rotation matrices, stack rows and
    the STAR's even/odd subsets), for reconstructions from the simulated stack."""
    rot = relion_to_matrix(table["rot"], table["tilt"], table["psi"]).reshape(len(table), 9)
    canonical = table.copy()
    canonical[ROTATION_COLUMNS] = rot
    canonical["stack_index"] = np.arange(len(table))
    canonical["subset"] = alternating_subsets(len(table))
    return canonical


def _write_reconstructed(table: pd.DataFrame, box: int, apix: float, out: Path) -> None:
    """Half maps reconstructed from the noisy particles at their true poses, and the
    consensus map as a refinement writes it: both halves, FSC-weighted. What a user's
    refinement hands over, noise and all, instead of the noise-free average."""
    stack = MrcStack(out / OUTPUTS["stack"])
    source = ImageSource(
        box,
        apix,
        "raw",
        shifts=lambda rows: rows[["shift_x", "shift_y"]].to_numpy(np.float64),
        read=lambda rows: stack.read(rows["stack_index"].to_numpy()),
    )
    canonical = _canonical_table(table)
    (result,) = reconstruct_with_halves(canonical, source, [np.arange(len(table))])
    write_map(out / "half1.mrc", result.half1, apix)
    write_map(out / "half2.mrc", result.half2, apix)
    fsc = fsc_curve(result.half1, result.half2)
    write_map(out / OUTPUTS["consensus"], fsc_weighted(result.full, 2 * fsc / (1 + fsc)), apix)


def _star_tables(table: pd.DataFrame, box: int, apix: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """RELION 3.1 optics and particles tables of the simulated particles."""
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": [1],
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnVoltage": [VOLTAGE],
            "rlnSphericalAberration": [CS],
            "rlnAmplitudeContrast": [AMP_CONTRAST],
            "rlnImagePixelSize": [apix],
            "rlnImageSize": [box],
            "rlnImageDimensionality": [2],
        }
    )
    n = len(table)
    particles = pd.DataFrame(
        {
            "rlnImageName": [f"{i + 1:06d}@particles.mrcs" for i in range(n)],
            "rlnAngleRot": table["rot"],
            "rlnAngleTilt": table["tilt"],
            "rlnAnglePsi": table["psi"],
            "rlnOriginXAngst": np.round(-table["shift_x"] * apix, 6),
            "rlnOriginYAngst": np.round(-table["shift_y"] * apix, 6),
            "rlnDefocusU": table["defocus_u"],
            "rlnDefocusV": table["defocus_v"],
            "rlnDefocusAngle": table["defocus_angle"],
            "rlnOpticsGroup": 1,
            "rlnRandomSubset": alternating_subsets(n),
            "rlnClassNumber": 1,
        }
    )
    return optics, particles


def _publish(staging: Path, outdir: Path) -> None:
    """Move the finished outputs from staging into outdir, particles.star last."""
    star = OUTPUTS["particles"]
    names = sorted(p.name for p in staging.iterdir() if p.name != star)
    for name in [*names, star]:
        target = outdir / name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(staging / name, target)
    staging.rmdir()


def _write_particles(
    system: System,
    table: pd.DataFrame,
    box: int,
    apix: float,
    snr: float | None,
    seed: np.random.SeedSequence,
    chunk: int,
    path: Path,
) -> dict[str, float | None]:
    """Write the particle stack; returns the signal variance and noise sigma (None: no noise).

    Two passes over the projections (they are cheap): the first measures the data
    set's signal variance, the second adds noise scaled to it and writes.
    """
    noisy = snr is not None and math.isfinite(snr)
    levels: dict[str, float | None] = {"signal_variance": None, "noise_sigma": None}
    sigma = 0.0
    if noisy and snr is not None:
        log.info("measuring the signal variance")
        signal_var = _signal_variance(_particle_chunks(system, table, box, apix, chunk))
        sigma = math.sqrt(signal_var / snr)
        levels = {"signal_variance": signal_var, "noise_sigma": sigma}
    rng = np.random.default_rng(seed)

    def images() -> Iterator[np.ndarray]:
        for clean in _particle_chunks(system, table, box, apix, chunk):
            if noisy:
                clean += sigma * rng.standard_normal(clean.shape, np.float32)
            yield clean

    log.info("writing %s", path.name)
    write_stack(path, len(table), box, apix, images())
    return levels


def named_system(name: str, extent: float) -> System:
    """A system by name: the paper's phantoms (gmmscape.phantoms) or the protein-like
    ones (gmmscape.protein), the latter built for a box of `extent` Angstrom."""
    if name in PROTEIN_SYSTEMS:
        return protein_system(extent, PROTEIN_SYSTEMS[name])
    return build_system(name)


def simulate(
    system: str | System,
    outdir: str | os.PathLike,
    *,
    per_state: int = 200,
    box: int = 64,
    apix: float = 4.0,
    snr: float | None = 0.1,
    seed: int = 0,
    chunk: int = 128,
    defocus: tuple[float, float] = DEFOCUS_RANGE,
    maps: str = "true",
) -> dict[str, Path]:
    """Write a simulated data set of a system, given by name ("linear", "cyclic",
    "composition") or as a gmmscape.phantoms.System (e.g. from ``scale_part``).

    per_state particles per state (split between compositions), box in pixels, apix in
    Angstrom, snr None or inf for noise-free particles. Returns the output paths by key
    (particles, stack, consensus, states, truth_gmm, ground_truth, mask, moving_mask, info).
    defocus is the range of mean defocus (Angstrom). maps "true": consensus.mrc is the
    noise-free population average; "reconstructed": consensus.mrc, half1.mrc and half2.mrc
    are reconstructed from the particles, as a refinement would hand them over.
    """
    sys_ = named_system(system, box * apix) if isinstance(system, str) else system
    _check(box, apix, snr, per_state, chunk, seed)
    if maps not in MAP_KINDS:
        raise InputError(f"maps: expected one of {', '.join(MAP_KINDS)}, got {maps!r}")
    pose_seed, noise_seed = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(pose_seed)
    table = _draw_particles(sys_, per_state, box, apix, defocus, rng)
    outdir = Path(outdir)
    staging = outdir / STAGING
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    n = len(table)
    log.info(
        "simulate %s: %d particles, box %d, %.3g A/pixel, SNR %s", sys_.name, n, box, apix, snr
    )

    levels = _write_particles(
        sys_, table, box, apix, snr, noise_seed, chunk, staging / OUTPUTS["stack"]
    )
    log.info("writing true maps, consensus map and masks")
    _write_truth(sys_, table, box, apix, staging)
    if maps == "reconstructed":
        log.info("reconstructing the half maps and the consensus map from the particles")
        _write_reconstructed(table, box, apix, staging)
    truth = table[["state", "coordinate", "composition"]]
    truth.insert(0, "index", np.arange(n))
    truth.to_csv(staging / OUTPUTS["ground_truth"], index=False)
    info = dict(
        system=sys_.name,
        coordinate=sys_.coordinate_name,
        n_states=sys_.n_states,
        per_state=per_state,
        n_particles=n,
        box=box,
        apix=apix,
        snr=None if levels["noise_sigma"] is None else snr,
        seed=seed,
        defocus=list(defocus),
        maps=maps,
        n_gaussians=int(sys_.models.shape[1]),
        **levels,
    )
    (staging / OUTPUTS["info"]).write_text(json.dumps(info, indent=2) + "\n")
    write_star(staging / OUTPUTS["particles"], *_star_tables(table, box, apix))
    _publish(staging, outdir)
    log.info("wrote %s", outdir / OUTPUTS["particles"])
    return {key: outdir / name for key, name in OUTPUTS.items()}
