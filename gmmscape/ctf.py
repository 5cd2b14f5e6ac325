"""Contrast transfer function with RELION's parameters and sign, and phase flipping.

CTF(s) = sin(pi*lambda*D(theta)*s^2 - pi/2*Cs*lambda^3*s^4 + phase_shift + atan(Q/sqrt(1-Q^2)))
         * exp(-B*s^2/4),
D(theta) = (U+V)/2 + (U-V)/2*cos(2*(theta - angle)), defocus positive for underfocus,
so the CTF is positive at low frequency, as in RELION (protein white).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fourier import rfft_freqs, to_fourier, to_real


def electron_wavelength(voltage_kv: float | np.ndarray) -> np.ndarray:
    """Relativistic electron wavelength in Angstrom for an acceleration voltage in kV."""
    v = np.asarray(voltage_kv, dtype=np.float64) * 1e3
    return 12.2643247 / np.sqrt(v * (1.0 + v * 0.978466e-6))


@dataclass(frozen=True)
class CTFParams:
    """Per-particle CTF parameters; each field a scalar or an array of shape (n,)."""

    defocus_u: np.ndarray  # Angstrom, underfocus positive
    defocus_v: np.ndarray  # Angstrom
    defocus_angle: np.ndarray  # degrees
    voltage: np.ndarray  # kV
    cs: np.ndarray  # mm
    amp_contrast: np.ndarray  # fraction
    phase_shift: np.ndarray | float = 0.0  # degrees
    bfactor: np.ndarray | float = 0.0  # A^2

    @classmethod
    def from_table(cls, table) -> CTFParams:
        """Build from a canonical particle table (pandas DataFrame) or a row subset of it."""
        return cls(**{f: np.asarray(table[f], dtype=np.float64) for f in cls.__dataclass_fields__})


def ctf_2d(params: CTFParams, box: int, apix: float) -> np.ndarray:
    """CTF on the rfft2 grid of a box: shape (n, b, b//2+1), float32."""
    ky, kx = rfft_freqs(box)
    sx, sy = kx / (box * apix), ky / (box * apix)  # cycles per Angstrom
    s2 = sx * sx + sy * sy
    theta = np.arctan2(sy, sx)

    def col(v):
        return np.atleast_1d(np.asarray(v, dtype=np.float64))[:, None, None]

    lam = electron_wavelength(col(params.voltage))
    u, v = col(params.defocus_u), col(params.defocus_v)
    defocus = 0.5 * (u + v) + 0.5 * (u - v) * np.cos(
        2.0 * (theta - np.deg2rad(col(params.defocus_angle)))
    )
    q = np.clip(col(params.amp_contrast), 0.0, 0.999)
    chi = (
        np.pi * lam * defocus * s2
        - 0.5 * np.pi * col(params.cs) * 1e7 * lam**3 * s2 * s2
        + np.deg2rad(col(params.phase_shift))
        + np.arctan(q / np.sqrt(1.0 - q * q))
    )
    return (np.sin(chi) * np.exp(-col(params.bfactor) * s2 / 4.0)).astype(np.float32)


def phase_flip(images: np.ndarray, params: CTFParams, apix: float) -> np.ndarray:
    """Multiply each image's transform by the sign of its CTF (images (n, b, b))."""
    box = images.shape[-1]
    flipped = to_fourier(images) * np.sign(ctf_2d(params, box, apix))
    return to_real(flipped, box).astype(np.float32)
