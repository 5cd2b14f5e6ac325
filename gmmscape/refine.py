"""Local pose refinement against each particle's own decoded GMM (paper, Extended Data
Fig. 1: "particle orientations are refined against the dynamic GMM").

Per particle, its latent vector is decoded to a GMM, and its rotation and in-plane shift
are refined by gradient steps that minimise the training loss 1 - mean FRC (over the
resolution band) between the particle and the GMM's projection. The five pose
parameters are a small rotation w (degrees, axis-angle, applied after the particle's
rotation: R' = exp(w) R) and a shift change dt (pixels of the crop box), stepped by
Adam (elementwise, so the particles of a batch do not interact) with a step size that
decays linearly to zero. Every step's loss is kept, and each particle ends at the best
pose it visited (the starting pose included), so refinement never makes the loss of a
particle worse. Particles stream from disk in batches like training.

Refined poses go out as the user's STAR (RELION 3.1, every original column and row, in
input order) with new rlnAngleRot/Tilt/Psi and rlnOriginX/YAngst.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from .errors import InputError
from .geometry import matrix_to_relion, shift_to_relion_origin
from .io.star import write_star
from .plots import plot_changes
from .projection import FourierGrid, frc_loss, images_ft
from .rigid import rotation_matrices
from .streaming import ParticleSet, sequential_chunks
from .subsets import star_subset
from .table import ROTATION_COLUMNS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefineSettings:
    """Knobs of one refinement round."""

    steps: int = 40  # gradient steps per particle
    step_deg: float = 0.5  # Adam step size of the rotation (degrees), at the start
    step_px: float = 0.25  # and of the shift (crop-box pixels)
    batch: int = 64
    res_lo: float | None = None  # Angstrom; the FRC band, as in training
    res_hi: float | None = None

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch < 1 or self.step_deg <= 0 or self.step_px <= 0:
            raise InputError(
                f"refine: expected steps, batch >= 1 and positive step sizes, got {self}"
            )


@dataclass(frozen=True)
class RefinedPoses:
    """Poses of the refined rows of a ParticleSet, before and after."""

    rows: np.ndarray  # (m,) rows of the ParticleSet
    rotations: np.ndarray  # (m, 3, 3) float64
    shifts: np.ndarray  # (m, 2) float64, crop-box pixels
    loss_before: np.ndarray  # (m,) 1 - mean FRC at the starting pose
    loss_after: np.ndarray  # (m,) at the refined pose


def _posed(rot0, shift0, p):
    """Rotation exp(w) R0 and shift t0 + dt of pose parameters p = (w in degrees, dt)."""
    w = p[:, :3] * (np.pi / 180.0)
    return rotation_matrices(w) @ rot0, shift0 + p[:, 3:5]


def _loss_and_gradient(grid: FourierGrid) -> Callable:
    """Compiled per-particle loss (B,) and its gradient (B, 5) in the pose parameters."""

    @tf.function(reduce_retracing=True)
    def step(gmm, rot0, shift0, p, i_re, i_im):
        with tf.GradientTape() as tape:
            tape.watch(p)
            rot, shift = _posed(rot0, shift0, p)
            per = frc_loss(gmm, rot, shift, i_re, i_im, grid)
            total = tf.reduce_sum(per)  # particles are independent: their own gradients
        return per, tape.gradient(total, p)

    return step


def descend_best(
    evaluate: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    start: np.ndarray,
    size: np.ndarray | float,
    steps: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Adam on independent rows of parameters from ``start`` (B, k), step ``size`` (per
    column or one) decaying linearly to 0; ``evaluate(p)`` gives each row's loss (B,) and
    gradient (B, k). Returns the best parameters each row visited (the start included)
    and their losses: elementwise steps, so rows never interact."""
    p: np.ndarray = start.astype(np.float32)
    m: np.ndarray = np.zeros_like(p)
    v: np.ndarray = np.zeros_like(p)
    best_p, best = p.copy(), np.full(len(p), np.inf)
    for k in range(steps + 1):
        per, grad = evaluate(p)
        better = per < best
        best[better], best_p[better] = per[better], p[better]
        if k == steps:
            break
        m = 0.9 * m + 0.1 * grad  # Adam, bias-corrected, step size decaying to 0
        v = 0.999 * v + 0.001 * grad**2
        m_hat, v_hat = m / (1 - 0.9 ** (k + 1)), v / (1 - 0.999 ** (k + 1))
        p = p - size * (1 - k / steps) * m_hat / (np.sqrt(v_hat) + 1e-12)
    return best_p, best


def _descend(
    step: Callable, args: list, images: list, start: np.ndarray, settings: RefineSettings
) -> tuple[np.ndarray, np.ndarray]:
    """descend_best on the pose parameters (B, 5) of a batch."""
    size = np.array([settings.step_deg] * 3 + [settings.step_px] * 2, np.float32)

    def evaluate(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        per, grad = step(*args, tf.constant(p), *images)
        return per.numpy(), grad.numpy()

    return descend_best(evaluate, start, size, settings.steps)


def refine_batch(
    steps: tuple[Callable, Callable],
    gmm: np.ndarray,
    rot0: np.ndarray,
    shift0: np.ndarray,
    images: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    settings: RefineSettings,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Refined (rotations, shifts) of a batch and its losses before and after.

    Coarse to fine: ``steps`` and ``images`` are the (loss, gradient) functions and the
    images' transforms on the coarse band (half the rings) and on the whole band. The
    coarse pass widens the basin: on the whole band a shift error of ~2 pixels already
    sat in a side minimum of the FRC (measured on noise-free particles). The particle
    keeps its starting pose unless the refined one has a lower whole-band loss.
    """
    args = [tf.constant(a, tf.float32) for a in (gmm, rot0, shift0)]
    coarse, fine = ([tf.constant(a, tf.float32) for a in pair] for pair in images)
    zero = np.zeros((len(rot0), 5), np.float32)
    p, _ = _descend(steps[0], args, coarse, zero, settings)
    p, loss = _descend(steps[1], args, fine, p, settings)
    first = steps[1](*args, tf.constant(zero), *fine)[0].numpy()
    keep = first <= loss
    p[keep], loss[keep] = 0.0, first[keep]
    rot, shift = _posed(args[1], args[2], tf.constant(p))
    return rot.numpy().astype(np.float64), shift.numpy().astype(np.float64), first, loss


def refine_poses(
    decoder,
    particles: ParticleSet,
    latent: pd.DataFrame,
    settings: RefineSettings = RefineSettings(),
    progress: Callable[[str], None] | None = None,
) -> RefinedPoses:
    """Refine the pose of every particle with a latent vector (``latent``: index, z0..,
    e.g. train/{run}/latent.csv) against its own decoded GMM (``decoder.decode``)."""
    columns = [f"z{k}" for k in range(decoder.latent_dim)]
    missing = [c for c in ["index", *columns] if c not in latent.columns]
    if missing:
        raise InputError(f"latent table: missing columns {', '.join(missing)}")
    position = pd.Series(np.arange(particles.n), index=particles.index)
    unknown = ~latent["index"].isin(position.index)
    if unknown.any():
        raise InputError(
            f"latent table: particle index {latent['index'][unknown].iloc[0]} is not in "
            f"{particles.table}"
        )
    rows = position[latent["index"].to_numpy()].to_numpy()
    order = np.argsort(rows, kind="stable")
    rows, z = rows[order], latent[columns].to_numpy(np.float32)[order]
    fine = FourierGrid(particles.box, particles.apix, settings.res_lo, settings.res_hi)
    half = max(fine.ring_lo + 1, fine.ring_hi // 2)
    coarse = FourierGrid(
        particles.box, particles.apix, settings.res_lo, particles.box * particles.apix / half
    )
    steps = (_loss_and_gradient(coarse), _loss_and_gradient(fine))
    out = [np.empty((len(rows), 3, 3)), np.empty((len(rows), 2)), np.empty(len(rows)),
           np.empty(len(rows))]  # fmt: skip
    for part in sequential_chunks(len(rows), settings.batch):
        r = rows[part]
        images = particles.images(r)
        result = refine_batch(
            steps, decoder.decode(z[part]), particles.rotations[r], particles.shifts[r],
            (images_ft(images, coarse), images_ft(images, fine)), settings,
        )  # fmt: skip
        for target, value in zip(out, result, strict=True):
            target[part] = value
        if progress is not None:
            progress(f"refine: {part[-1] + 1}/{len(rows)} particles")
    return RefinedPoses(rows, *out)


def write_refined_star(
    star: str | os.PathLike,
    table: pd.DataFrame,
    particles: ParticleSet,
    poses: RefinedPoses,
    out: str | os.PathLike,
    meta: dict,
) -> Path:
    """The user's STAR with the refined poses: every original row (input order) and
    column, RELION 3.1; rlnAngleRot/Tilt/Psi and rlnOriginX/YAngst of the refined
    particles replaced (the others keep theirs). ``table`` is the import's particles.csv
    (each particle's original box and pixel size), ``meta`` its meta.json."""
    star, out = Path(star), Path(out)
    if star.suffix.lower() != ".star":
        raise InputError(f"{star}: refined poses are written for RELION .star input only")
    every = np.arange(int(meta["n_particles"]))
    optics, rows = star_subset(star, every, apix=meta["apix_original"], box=meta["box_original"])
    index = particles.index[poses.rows]
    original = table.set_index("index").loc[index]
    scale = original["box"].to_numpy(np.float64) / particles.box  # crop -> original pixels
    origin = shift_to_relion_origin(poses.shifts * scale[:, None])
    origin *= original["apix"].to_numpy(np.float64)[:, None]
    angles = matrix_to_relion(poses.rotations)
    updates = {
        "rlnAngleRot": angles[:, 0], "rlnAngleTilt": angles[:, 1], "rlnAnglePsi": angles[:, 2],
        "rlnOriginXAngst": origin[:, 0], "rlnOriginYAngst": origin[:, 1],
    }  # fmt: skip
    for column, values in updates.items():
        if column not in rows:
            rows[column] = 0.0
        rows[column] = rows[column].astype(np.float64)
        rows.loc[index, column] = values
    write_star(out, optics, rows)  # atomic
    return out


def posed_table(table: pd.DataFrame, particles: ParticleSet, poses: RefinedPoses) -> pd.DataFrame:
    """The canonical table (import/{half}.csv, rows as ``particles``) with the refined
    poses: rotation matrix, RELION angles and shift (original-box pixels) replaced."""
    if len(table) != particles.n or not np.array_equal(table["index"], particles.index):
        raise InputError(f"{particles.table}: table rows differ from the particles refined")
    out = table.copy()
    rows = poses.rows
    out.loc[rows, ROTATION_COLUMNS] = poses.rotations.reshape(-1, 9)
    out.loc[rows, ["rot", "tilt", "psi"]] = matrix_to_relion(poses.rotations)
    scale = out["box"].to_numpy(np.float64)[rows] / particles.box
    out.loc[rows, ["shift_x", "shift_y"]] = poses.shifts * scale[:, None]
    return out


def pose_changes(particles: ParticleSet, poses: RefinedPoses) -> pd.DataFrame:
    """Per refined particle: index, rotation change (degrees), shift change (crop
    pixels), loss before and after."""
    from .geometry import angle_between

    rows = poses.rows
    return pd.DataFrame(
        {
            "index": particles.index[rows],
            "rotation_deg": angle_between(
                particles.rotations[rows].astype(np.float64), poses.rotations
            ),
            "shift_px": np.linalg.norm(poses.shifts - particles.shifts[rows], axis=1),
            "loss_before": poses.loss_before,
            "loss_after": poses.loss_after,
        }
    )


def refine_round(
    run_dir: str | os.PathLike,
    table_path: str | os.PathLike,
    stack: str | os.PathLike,
    star: str | os.PathLike,
    meta: dict,
    outputs: dict[str, str | os.PathLike],
    settings: RefineSettings = RefineSettings(),
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """One refinement round of a half: the poses of the table's particles refined against
    the decoder of a training run (``run_dir`` with latent.csv) and written as
    ``outputs``: table (canonical table with the new poses, for the next training),
    star (the user's STAR, every row), changes (csv) and plot (png). Returns the changes."""
    from .decode import load_decoder
    from .importer import load_table
    from .io.common import atomic_output
    from .streaming import load_particles

    particles = load_particles(table_path, stack)
    latent = pd.read_csv(Path(run_dir) / "latent.csv")
    poses = refine_poses(load_decoder(run_dir), particles, latent, settings, progress)
    table = load_table(table_path)
    with atomic_output(outputs["table"]) as tmp:
        posed_table(table, particles, poses).to_csv(tmp, index=False)
    write_refined_star(star, table, particles, poses, outputs["star"], meta)
    changes = pose_changes(particles, poses)
    with atomic_output(outputs["changes"]) as tmp:
        changes.to_csv(tmp, index=False)
    median = changes[["rotation_deg", "shift_px"]].median()
    plot_changes(
        changes, outputs["plot"],
        f"median change {median['rotation_deg']:.2f} degrees, {median['shift_px']:.2f} pixels",
    )  # fmt: skip
    return changes
