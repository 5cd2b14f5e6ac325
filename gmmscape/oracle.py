"""The ceiling of a simulated data set: each particle's most likely true model.

With the true maps, the true pose and CTF of every particle and white noise, the best
any method can do is choose, per particle, the model m minimising

    sum_k w_k |X_k - CTF_k P_m,k|^2

over the whole Fourier grid (w: the half-plane pair weights), the maximum-likelihood
state. Its recovery scores (rank correlation of the coordinate, accuracy of the
composition) bound what a heterogeneity method can reach on that set. Gaussians
identical in every model are projected once per particle, and each group of Gaussians
that varies together once per configuration it takes. Limited to a band (``res_hi``),
it is the ceiling of a method that sees only that band: what a training band leaves out.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from .ctf import CTFParams, ctf_2d
from .geometry import relion_to_matrix
from .io.mrc import MrcStack
from .projection import FourierGrid, images_ft, project_ft

log = logging.getLogger(__name__)


def _projections(gmm: np.ndarray, rot: np.ndarray, shift: np.ndarray, grid: FourierGrid):
    re, im = project_ft(gmm.astype(np.float32), rot, shift, grid)
    return re.numpy().astype(np.float64) + 1j * im.numpy()


def _groups(models: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Varying Gaussians grouped by how they vary: (gaussians, configurations (K, n, 5),
    configuration of each model (M,)). A domain on a path of S states is one group of S
    configurations, a domain present or absent one of two, so each is projected S or 2
    times per particle instead of once per model."""
    varying = np.flatnonzero(np.ptp(models, axis=0).max(axis=1) > 0)
    patterns: dict[bytes, list[int]] = {}
    for g in varying:
        _, which = np.unique(models[:, g], axis=0, return_inverse=True)
        patterns.setdefault(which.ravel().astype(np.int64).tobytes(), []).append(int(g))
    groups = []
    for key, members in patterns.items():
        which = np.frombuffer(key, dtype=np.int64)
        first = np.unique(which, return_index=True)[1]
        groups.append((np.asarray(members), models[first][:, members], which))
    return groups


def best_models(
    models: np.ndarray,
    images: np.ndarray,
    rot: np.ndarray,
    shift: np.ndarray,
    ctf: CTFParams,
    apix: float,
    res_hi: float | None = None,
) -> np.ndarray:
    """(B,) index of the model (M, N, 5) that best explains each image (B, b, b) within
    the band up to res_hi Angstrom (None: Nyquist)."""
    box = images.shape[-1]
    grid = FourierGrid(box, apix, None, res_hi)
    c = grid.crop(ctf_2d(ctf, box, apix)).astype(np.float64)
    x_re, x_im = images_ft(images, grid)
    x = x_re.astype(np.float64) + 1j * x_im
    groups = _groups(models)
    varying = np.zeros(models.shape[1], bool)
    for members, _, _ in groups:
        varying[members] = True
    p = np.zeros((len(models), *x.shape), np.complex128)
    if (~varying).any():
        p += _projections(models[0, ~varying], rot, shift, grid)
    for _, configs, which in groups:
        parts = np.stack([_projections(g, rot, shift, grid) for g in configs])
        p += parts[which]
    cost = (grid.weight * np.abs(x[None] - c[None] * p) ** 2).sum(axis=(2, 3))
    return cost.argmin(axis=0)


def oracle(
    sim_dir: str | Path, limit: int | None = None, chunk: int = 64, res_hi: float | None = None
) -> pd.DataFrame:
    """Per particle of a simulated data set: index, the true state/coordinate/composition
    and the oracle's (``oracle_state``, ``oracle_coordinate``, ``oracle_composition``);
    with ``limit``, for that many particles drawn at random (a ceiling's estimate); with
    ``res_hi``, the ceiling within that band."""
    sim_dir = Path(sim_dir)
    truth = pd.read_csv(sim_dir / "ground_truth.csv")
    names = sorted(p.stem for p in (sim_dir / "truth_gmm").glob("state_*.npy"))
    models = np.stack([np.load(sim_dir / "truth_gmm" / f"{n}.npy") for n in names])
    model_state = np.array([int(n.split("_")[1]) for n in names])
    model_comp = np.array([int(n.split("_c")[1]) if "_c" in n else 0 for n in names])
    coordinate = truth.groupby("state")["coordinate"].first()
    star = starfile.read(sim_dir / "particles.star", always_dict=True)
    optics, particles = star["optics"], star["particles"]
    apix = float(optics["rlnImagePixelSize"].iloc[0])
    stack = MrcStack(sim_dir / "particles.mrcs")
    ctf_table = pd.DataFrame(
        {
            "defocus_u": particles["rlnDefocusU"],
            "defocus_v": particles["rlnDefocusV"],
            "defocus_angle": particles["rlnDefocusAngle"],
            "voltage": float(optics["rlnVoltage"].iloc[0]),
            "cs": float(optics["rlnSphericalAberration"].iloc[0]),
            "amp_contrast": float(optics["rlnAmplitudeContrast"].iloc[0]),
        }
    )
    picked = np.arange(len(particles))
    if limit is not None and limit < len(picked):
        picked = np.sort(np.random.default_rng(0).choice(picked, limit, replace=False))
    best = np.empty(len(picked), dtype=np.int64)
    for start in range(0, len(picked), chunk):
        at = np.arange(start, min(start + chunk, len(picked)))
        rows = picked[at]
        part = particles.iloc[rows]
        rot = relion_to_matrix(part["rlnAngleRot"], part["rlnAngleTilt"], part["rlnAnglePsi"])
        shift = -part[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy(np.float64) / apix
        ctf = CTFParams.from_table(ctf_table.iloc[rows].assign(phase_shift=0.0, bfactor=0.0))
        best[at] = best_models(models, stack.read(rows), rot, shift, ctf, apix, res_hi)
        if start // chunk % 4 == 0:
            log.info("oracle: %d/%d particles", at[-1] + 1, len(picked))
    state = model_state[best]
    return truth.iloc[picked].assign(
        oracle_state=state,
        oracle_coordinate=coordinate.loc[state].to_numpy(),
        oracle_composition=model_comp[best],
    )
