"""Encoder and decoder networks (paper Methods, Extended Data Fig. 7) and the map from the
decoder's sigmoid outputs to a GMM.

Both networks: dense ReLU layers (default 3 x 512), then dropout
and batch normalisation, then the output layer: linear for the encoder (latent),
sigmoid for the decoder (5N numbers in (0, 1)). The models hold only standard Keras
layers, so ``.keras`` files load without this package.

Network space (``GmmSpace``): a centre is ``s - 0.5`` box (so in (-0.5, 0.5)), an
amplitude ``s / amp_scale`` with the neutral model's largest amplitude at s = 0.5 (so
every Gaussian can grow or fade), a width ``(0.5 + s)`` times the Gaussian's neutral
width (so in (0.5, 1.5) of its base width; neutral at s = 0.5). Parameters the mode
or mask does not free are replaced by their neutral values after decoding, so they
never move and still project. When every amplitude is free, the decoded amplitudes are
rescaled to the neutral model's mean: the FRC ignores a global scale, and without an
anchor the decoder drifted along it (measured: body amplitudes varying by ~40 % with
the latent in amplitude mode), which made decoded models incomparable.

L2 is applied as decoupled weight decay by the optimizer (gmmscape.train), not as Keras
kernel regularisers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from .errors import InputError

MODES: dict[str, tuple[int, ...]] = {
    "amplitude": (3,),  # compositional: only amplitudes change
    "position": (0, 1, 2),  # conformational: only centres move
    "all": (0, 1, 2, 3, 4),
}
TARGET_EDGE = 0.02  # network-space targets are kept this far from 0 and 1 (finite logits)


TRAIN_MODES = (*MODES, "rigid")  # rigid: a masked domain moves as one body (gmmscape.rigid)


def check_mode(mode: str) -> str:
    if mode not in TRAIN_MODES:
        raise InputError(f"train mode: expected one of {', '.join(TRAIN_MODES)}, got {mode!r}")
    return mode


@dataclass(frozen=True, eq=False)
class GmmSpace:
    """Neutral model, which parameters may change, and the network-space scaling."""

    neutral: np.ndarray  # (N, 5) float32
    free: np.ndarray  # (N, 5) bool
    amp_scale: float

    @classmethod
    def build(cls, neutral: np.ndarray, mode: str, inside: np.ndarray | None = None) -> GmmSpace:
        """Free the mode's parameter columns, for every Gaussian or only those `inside`."""
        neutral = np.asarray(neutral, dtype=np.float32)
        if neutral.ndim != 2 or neutral.shape[1] != 5 or len(neutral) == 0:
            raise InputError(f"neutral GMM: expected an (N, 5) array, got shape {neutral.shape}")
        if not (np.all(neutral[:, 3] > 0) and np.all(neutral[:, 4] > 0)):
            raise InputError("neutral GMM: expected positive amplitudes and widths")
        free = np.zeros(neutral.shape, dtype=bool)
        free[:, list(MODES[check_mode(mode)])] = True
        if inside is not None:
            free &= np.asarray(inside, dtype=bool)[:, None]
        return cls(neutral, free, float(0.5 / neutral[:, 3].max()))

    @property
    def n_gaussians(self) -> int:
        return len(self.neutral)

    def targets(self) -> np.ndarray:
        """The neutral model in network space, (5N,) float32 inside (0, 1)."""
        t = np.column_stack(
            [
                self.neutral[:, :3] + 0.5,
                self.neutral[:, 3] * self.amp_scale,
                np.full(self.n_gaussians, 0.5),
            ]
        )
        return np.clip(t, TARGET_EDGE, 1.0 - TARGET_EDGE).astype(np.float32).reshape(-1)

    def to_gmm(self, out) -> tf.Tensor:
        """Decoder outputs (B, 5N) -> GMMs (B, N, 5) float32, fixed parameters at neutral."""
        s = tf.reshape(tf.convert_to_tensor(out, tf.float32), [-1, self.n_gaussians, 5])
        neutral = tf.constant(self.neutral)
        amplitude = s[..., 3:4] / self.amp_scale
        if self.free[:, 3].all():
            # No fixed amplitude anchors the scale, and the FRC ignores it: pin the mean.
            mean = tf.reduce_mean(amplitude, axis=1, keepdims=True)
            amplitude *= float(self.neutral[:, 3].mean()) / mean
        decoded = tf.concat(
            [s[..., :3] - 0.5, amplitude, neutral[:, 4:5] * (0.5 + s[..., 4:5])], axis=-1
        )
        return tf.where(tf.constant(self.free), decoded, neutral)

    def spread(self, out) -> tf.Tensor:
        """(B,) std over Gaussians of network-space amplitude plus that of width (paper's
        regulariser encouraging the Gaussians to spread out)."""
        s = tf.reshape(out, [-1, self.n_gaussians, 5])[..., 3:]
        var = tf.math.reduce_variance(s, axis=1)  # (B, 2)
        return tf.reduce_sum(tf.sqrt(var + 1e-12), axis=1)  # eps: finite gradient at var 0

    def to_dict(self) -> dict:
        return {
            "neutral": self.neutral.tolist(),
            "free": self.free.astype(int).tolist(),
            "amp_scale": self.amp_scale,
        }

    @classmethod
    def from_dict(cls, d: dict) -> GmmSpace:
        return cls(
            np.asarray(d["neutral"], np.float32),
            np.asarray(d["free"], bool),
            float(d["amp_scale"]),
        )


def _hidden(x, hidden: Sequence[int], dropout: float, name: str):
    """Dense ReLU stack, then dropout and batch normalisation (before the output layer)."""
    for k, units in enumerate(hidden):
        x = layers.Dense(units, activation="relu", name=f"{name}_dense{k}")(x)
    x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return layers.BatchNormalization(name=f"{name}_norm")(x)


def build_encoder(
    n_features: int,
    latent_dim: int,
    hidden: Sequence[int] = (512, 512, 512),
    dropout: float = 0.3,
    init_scale: float = 1e-3,
) -> keras.Model:
    """Features (B, 5N) -> latent (B, d). Small initial output weights give latents near
    zero at the start, where the pre-trained decoder gives the neutral model."""
    inputs = keras.Input((n_features,), name="features")
    x = _hidden(inputs, hidden, dropout, "encoder")
    latent = layers.Dense(
        latent_dim,
        kernel_initializer=keras.initializers.RandomNormal(stddev=init_scale),
        name="latent",
    )(x)
    return keras.Model(inputs, latent, name="encoder")


def build_decoder(
    space: GmmSpace,
    latent_dim: int,
    hidden: Sequence[int] = (512, 512, 512),
    dropout: float = 0.3,
) -> keras.Model:
    """Latent (B, d) -> network-space GMM parameters (B, 5N), sigmoid.

    The output bias starts at the logits of the neutral model and the output weights
    near zero, so the untrained decoder already gives about the neutral model and
    pre-training only has to settle the hidden layers near latent 0.
    """
    inputs = keras.Input((latent_dim,), name="latent")
    x = _hidden(inputs, hidden, dropout, "decoder")
    targets = space.targets()
    logits = np.log(targets / (1.0 - targets))
    out = layers.Dense(
        targets.size,
        activation="sigmoid",
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01 / math.sqrt(hidden[-1])),
        bias_initializer=keras.initializers.Constant(logits),
        name="gmm",
    )(x)
    return keras.Model(inputs, out, name="decoder")
