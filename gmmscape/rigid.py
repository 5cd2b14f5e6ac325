"""Rigid-body mode (``train.modes: [rigid]`` with ``train.mask``): a masked domain moves
as one body, the rest of the model stays.

The decoder outputs six numbers per particle: an axis-angle vector w (radians; the
rotation by |w| about w/|w|) and a translation t (box fractions). Every Gaussian inside
the mask moves as c' = R(w) (c - o) + o + t about the domain's centre o (the
amplitude-weighted mean of its centres), so t is the displacement of the centre and the
motion reads in degrees and Angstrom; amplitudes, widths and every Gaussian outside the
mask keep their neutral values. The output layer is linear, initialised to zero (the
neutral model), and the six numbers are the whole motion, so no Gaussian of the domain
can jitter on its own as in position mode.

``RigidSpace`` offers what training and decoding use of gmmscape.networks.GmmSpace
(``neutral``, ``free``, ``targets``, ``to_gmm``, ``spread``, ``to_dict``);
``build_space``, ``space_decoder`` and ``space_from_dict`` pick either kind by mode.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from keras import layers

from .errors import InputError
from .geometry import angle_between
from .networks import GmmSpace, _hidden, build_decoder

RIGID = "rigid"
N_MOTION = 6  # axis-angle (3) and translation (3)


def rotation_matrices(w):
    """Rotation matrices (B, 3, 3) of axis-angle vectors w (B, 3) (Rodrigues' formula),
    R = I + a [w]x + b [w]x^2 with a = sin(q)/q, b = 2 sin^2(q/2)/q^2, q = |w|: both stay
    accurate and differentiable at w = 0 (a tiny floor on q^2)."""
    w = tf.convert_to_tensor(w, tf.float32)
    q = tf.sqrt(tf.reduce_sum(tf.square(w), axis=-1) + 1e-12)[:, None, None]
    x, y, z = w[:, 0], w[:, 1], w[:, 2]
    zero = tf.zeros_like(x)
    skew = tf.stack(
        [tf.stack([zero, -z, y], -1), tf.stack([z, zero, -x], -1), tf.stack([-y, x, zero], -1)],
        -2,
    )
    a = tf.sin(q) / q
    b = 2.0 * tf.square(tf.sin(q / 2.0)) / tf.square(q)
    return tf.eye(3, batch_shape=tf.shape(w)[:1]) + a * skew + b * (skew @ skew)


@dataclass(frozen=True, eq=False)
class RigidSpace:
    """Neutral model, the rigid domain (Gaussians inside the mask) and its centre."""

    neutral: np.ndarray  # (N, 5) float32
    inside: np.ndarray  # (N,) bool
    centre: np.ndarray  # (3,) float32, box fractions

    @classmethod
    def build(cls, neutral: np.ndarray, inside: np.ndarray | None) -> RigidSpace:
        neutral = GmmSpace.build(neutral, "position").neutral  # same checks of the model
        if inside is None:
            raise InputError("train.modes: 'rigid' needs train.mask (the domain that moves)")
        inside = np.asarray(inside, dtype=bool)
        if inside.shape != (len(neutral),) or not inside.any():
            raise InputError(
                f"rigid domain: expected some of the {len(neutral)} Gaussians inside the mask"
            )
        weight = neutral[inside, 3]
        centre = (neutral[inside, :3] * weight[:, None]).sum(axis=0) / weight.sum()
        return cls(neutral, inside, centre.astype(np.float32))

    @property
    def n_gaussians(self) -> int:
        return len(self.neutral)

    @property
    def free(self) -> np.ndarray:
        """(N, 5) bool: the domain's centres move (its amplitudes and widths do not)."""
        free = np.zeros(self.neutral.shape, dtype=bool)
        free[self.inside, :3] = True
        return free

    def targets(self) -> np.ndarray:
        """The neutral model in network space: no rotation, no translation."""
        return np.zeros(N_MOTION, np.float32)

    def to_gmm(self, out) -> tf.Tensor:
        """Decoder outputs (B, 6) -> GMMs (B, N, 5) float32 with the domain moved."""
        out = tf.convert_to_tensor(out, tf.float32)
        rot = rotation_matrices(out[:, :3])
        o = tf.constant(self.centre)
        centres = tf.constant(self.neutral[:, :3]) - o
        moved = tf.einsum("bij,nj->bni", rot, centres) + o + out[:, None, 3:6]
        neutral = tf.tile(tf.constant(self.neutral)[None], [tf.shape(out)[0], 1, 1])
        centres = tf.where(tf.constant(self.inside[:, None]), moved, neutral[..., :3])
        return tf.concat([centres, neutral[..., 3:]], axis=-1)

    def spread(self, out) -> tf.Tensor:
        """(B,) zeros: amplitudes and widths are fixed, nothing to spread."""
        return tf.zeros(tf.shape(out)[:1], tf.float32)

    def to_dict(self) -> dict:
        return {
            "kind": RIGID,
            "neutral": self.neutral.tolist(),
            "inside": self.inside.astype(int).tolist(),
            "centre": self.centre.tolist(),
            "free": self.free.astype(int).tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> RigidSpace:
        return cls(
            np.asarray(d["neutral"], np.float32),
            np.asarray(d["inside"], bool),
            np.asarray(d["centre"], np.float32),
        )


def build_rigid_decoder(
    latent_dim: int, hidden: Sequence[int] = (512, 512, 512), dropout: float = 0.3
) -> keras.Model:
    """Latent (B, d) -> rigid motion (B, 6): the hidden stack of every decoder, then a
    linear layer with zero bias (no motion: the neutral model) and unit-gain weights.

    Unlike the per-Gaussian decoder's near-zero start, the six outputs need weights of
    full size: at 1/100 of it the encoder's latent never grew past the latent noise
    (measured on the linear system, 10 epochs: rank correlation of the translation with
    the true position -0.16, against 0.92 at full size); pre-training still pulls the
    motion at latent 0 to none."""
    inputs = keras.Input((latent_dim,), name="latent")
    x = _hidden(inputs, hidden, dropout, "decoder")
    out = layers.Dense(
        N_MOTION,
        kernel_initializer=keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(hidden[-1])),
        bias_initializer="zeros",
        name="rigid",
    )(x)
    return keras.Model(inputs, out, name="decoder")


def build_space(
    neutral: np.ndarray, mode: str, inside: np.ndarray | None = None
) -> GmmSpace | RigidSpace:
    """The network space of a training mode: rigid, or a GmmSpace for the others."""
    return (
        RigidSpace.build(neutral, inside)
        if mode == RIGID
        else GmmSpace.build(neutral, mode, inside)
    )


def space_decoder(space: GmmSpace | RigidSpace, latent_dim: int, **net) -> keras.Model:
    """The decoder network of a space (``net``: hidden, dropout)."""
    if isinstance(space, RigidSpace):
        return build_rigid_decoder(latent_dim, **net)
    return build_decoder(space, latent_dim, **net)


def space_from_dict(d: dict) -> GmmSpace | RigidSpace:
    """A space saved by ``to_dict`` (decoder.json), of either kind."""
    return RigidSpace.from_dict(d) if d.get("kind") == RIGID else GmmSpace.from_dict(d)


def domain_motion(model: keras.Model, z: np.ndarray, box: int, apix: float) -> pd.DataFrame:
    """Per latent point (M, d) the rigid decoder's motion of the domain: rotation angle
    (degrees) and unit axis, and translation of its centre (Angstrom, and its length)."""
    out = np.asarray(model(np.asarray(z, np.float32), training=False), np.float64)
    w, t = out[:, :3], out[:, 3:6] * box * apix
    angle = np.linalg.norm(w, axis=1)
    axis = w / np.maximum(angle, 1e-12)[:, None]
    return pd.DataFrame(
        {
            "rotation_deg": np.rad2deg(angle),
            **{f"axis_{c}": axis[:, i] for i, c in enumerate("xyz")},
            **{f"t{c}_A": t[:, i] for i, c in enumerate("xyz")},
            "translation_A": np.linalg.norm(t, axis=1),
        }
    )


def relative_motion(
    model: keras.Model, z: np.ndarray, box: int, apix: float
) -> tuple[float, float]:
    """Rotation (degrees) and translation (Angstrom) of the domain from latent point z[0]
    to z[-1]: the angle of R_last R_first^T and the distance between the centres."""
    out = np.asarray(model(np.asarray(z, np.float32)[[0, -1]], training=False), np.float64)
    rot = rotation_matrices(out[:, :3]).numpy().astype(np.float64)
    angle = float(angle_between(rot[0], rot[1]))
    return angle, float(np.linalg.norm(out[1, 3:6] - out[0, 3:6]) * box * apix)


def write_domain_motion(decoder, trajectory, table_path) -> dict[str, float]:
    """Add the domain's motion at each point (``domain_motion``) to a trajectory's table
    (trajectory.csv) and return its rotation and translation from the first point to the
    last (domain_rotation_deg, domain_translation_A), for a rigid run's trajectories."""
    from .io.common import atomic_output

    args = (decoder.model, trajectory.latent, decoder.box, decoder.apix)
    table = pd.concat([pd.read_csv(table_path), domain_motion(*args)], axis=1)
    with atomic_output(table_path) as tmp:
        table.to_csv(tmp, index=False)
    rotation, translation = relative_motion(*args)
    return {"domain_rotation_deg": rotation, "domain_translation_A": translation}
