"""Rotation matrices and shift conventions of RELION and EMAN2.

Every orientation is kept internally as a 3x3 matrix R acting on map coordinates
(x, y, z): a 3D point c of the map lands at R @ c, and the particle image is the
projection along z of the rotated map, displaced in-plane by the shift t (pixels).
So a Gaussian centred at c appears in the image at R[:2] @ c + t.

RELION: R = Rz(psi) Ry(tilt) Rz(rot) with RELION's (passive) sign conventions,
t = -origin (rlnOriginX/YAngst / apix, or rlnOriginX/Y in pixels for 3.0 files).
EMAN2: xform.projection is the same R (EMAN2's "spider" Euler type equals RELION's
rot/tilt/psi), its translation (tx, ty) equals t.
"""

from __future__ import annotations

import numpy as np


def _rz(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack(
        [np.stack([c, s, z], -1), np.stack([-s, c, z], -1), np.stack([z, z, o], -1)], -2
    )


def _ry(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack(
        [np.stack([c, z, -s], -1), np.stack([z, o, z], -1), np.stack([s, z, c], -1)], -2
    )


def _rx(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack(
        [np.stack([o, z, z], -1), np.stack([z, c, s], -1), np.stack([z, -s, c], -1)], -2
    )


def relion_to_matrix(rot, tilt, psi) -> np.ndarray:
    """RELION Euler angles in degrees (any broadcastable shape) -> rotation matrices (..., 3, 3)."""
    rot, tilt, psi = (np.deg2rad(np.asarray(a, dtype=np.float64)) for a in (rot, tilt, psi))
    rot, tilt, psi = np.broadcast_arrays(rot, tilt, psi)
    return _rz(psi) @ _ry(tilt) @ _rz(rot)


def matrix_to_relion(R: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> RELION (rot, tilt, psi) in degrees, shape (..., 3).

    Inverse of relion_to_matrix; at tilt 0 or 180 all in-plane rotation goes to psi.
    """
    R = np.asarray(R, dtype=np.float64)
    tilt = np.arccos(np.clip(R[..., 2, 2], -1.0, 1.0))
    sin_tilt = np.sqrt(R[..., 2, 0] ** 2 + R[..., 2, 1] ** 2)
    regular = sin_tilt > 1e-9
    rot = np.where(regular, np.arctan2(R[..., 2, 1], R[..., 2, 0]), 0.0)
    psi = np.where(
        regular,
        np.arctan2(R[..., 1, 2], -R[..., 0, 2]),
        np.arctan2(-R[..., 1, 0], R[..., 0, 0] * np.sign(R[..., 2, 2])),
    )
    return np.rad2deg(np.stack([rot, tilt, psi], -1))


def eman_to_matrix(az, alt, phi) -> np.ndarray:
    """EMAN2 'eman' Euler angles in degrees -> rotation matrices: Rz(phi) Rx(alt) Rz(az)."""
    az, alt, phi = (np.deg2rad(np.asarray(a, dtype=np.float64)) for a in (az, alt, phi))
    az, alt, phi = np.broadcast_arrays(az, alt, phi)
    return _rz(phi) @ _rx(alt) @ _rz(az)


def matrix_to_eman(R: np.ndarray) -> np.ndarray:
    """Rotation matrices -> EMAN2 (az, alt, phi) in degrees.

    EMAN2 defines az = rot + 90, alt = tilt, phi = psi - 90 between its 'eman' and
    'spider' Euler types; derived here from the matrices and checked in the tests.
    """
    rot, tilt, psi = np.moveaxis(matrix_to_relion(R), -1, 0)
    return np.stack([rot + 90.0, tilt, psi - 90.0], -1)


def relion_origin_to_shift(origin_x_px, origin_y_px) -> np.ndarray:
    """RELION origin offsets (pixels) -> image displacement t (pixels), shape (..., 2)."""
    return -np.stack(np.broadcast_arrays(origin_x_px, origin_y_px), -1).astype(np.float64)


def shift_to_relion_origin(shift: np.ndarray) -> np.ndarray:
    """Image displacement t (pixels) -> RELION origin offsets (pixels), shape (..., 2)."""
    return -np.asarray(shift, dtype=np.float64)


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """n rotation matrices drawn uniformly from SO(3) (unit quaternions from a Gaussian)."""
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def angle_between(Ra: np.ndarray, Rb: np.ndarray) -> np.ndarray:
    """Rotation angle in degrees of Ra^T Rb: the geodesic distance between orientations."""
    tr = np.einsum("...ij,...ij->...", Ra, Rb)
    return np.rad2deg(np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0)))
