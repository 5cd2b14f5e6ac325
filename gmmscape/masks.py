"""Masks: soft masks, the molecule's mask, mask files at a box, and the Gaussians of a
GMM inside a mask. NumPy only: no TensorFlow, so any rule's script can use them."""

from __future__ import annotations

import math
import os
from typing import Protocol

import numpy as np
from scipy import ndimage

from .errors import InputError
from .fourier import check_cube
from .io.mrc import read_map, read_volume

NOISE_SIGMAS = 5.0  # molecule threshold: solvent mean + this many solvent std


def soft_mask(volume: np.ndarray, threshold: float, dilate: int, edge: int) -> np.ndarray:
    """Mask: 1 where volume >= threshold, grown by dilate voxels, then a cosine edge to 0.

    The soft edge keeps masked maps and masked training free of ringing.
    """
    core = volume >= threshold
    if dilate > 0:
        core = ndimage.binary_dilation(core, iterations=dilate)
    dist = ndimage.distance_transform_edt(~core)
    falloff = 0.5 * (1.0 + np.cos(np.pi * np.minimum(dist / edge, 1.0)))
    return np.where(core, 1.0, falloff).astype(np.float32)


def solvent_threshold(volume: np.ndarray) -> float:
    """Density level of the molecule: the solvent's (voxels beyond 0.45 box from the
    centre) mean plus NOISE_SIGMAS of its std, at least 5 % of the map's maximum."""
    box = volume.shape[0]
    grid = np.indices(volume.shape) - box // 2
    outside = np.sqrt((grid**2).sum(axis=0)) > 0.45 * box
    solvent = volume[outside]
    return float(max(solvent.mean() + NOISE_SIGMAS * solvent.std(), 0.05 * volume.max()))


def molecule_mask(volume: np.ndarray, apix: float, resolution: float) -> np.ndarray:
    """Binary mask of the molecule: the map smoothed to the resolution, above the
    solvent threshold, largest connected pieces kept (specks of noise dropped)."""
    sigma = resolution / (2.0 * math.pi * apix) * math.sqrt(2.0)
    smooth = ndimage.gaussian_filter(np.asarray(volume, np.float64), sigma)
    core = smooth >= solvent_threshold(smooth)
    labels, n = ndimage.label(core)
    if n > 1:
        sizes = ndimage.sum(core, labels, range(1, n + 1))
        core = np.isin(labels, 1 + np.flatnonzero(sizes >= 0.05 * sizes.max()))
    if not core.any():
        raise InputError("map: no density above the solvent level to measure the molecule")
    return core


def fsc_mask(volume: np.ndarray, apix: float, resolution: float = 15.0) -> np.ndarray:
    """Soft mask around the molecule for the half-map FSC (a few voxels of margin)."""
    core = molecule_mask(volume, apix, resolution).astype(np.float32)
    box = volume.shape[0]
    return soft_mask(core, 0.5, max(1, round(0.03 * box)), max(2, round(0.05 * box)))


def mask_at_box(mask: np.ndarray, box: int) -> np.ndarray:
    """A soft mask [z, y, x] resampled (trilinear) to a cube of ``box``, clipped to [0, 1];
    masks cover the same extent in Angstrom whatever their box."""
    mask = np.asarray(mask, dtype=np.float32)
    if mask.ndim != 3 or len(set(mask.shape)) != 1:
        raise InputError(f"mask: expected a cubic 3D map, got shape {mask.shape}")
    if mask.shape[0] != box:
        mask = ndimage.zoom(mask, box / mask.shape[0], order=1, grid_mode=True, mode="nearest")
    return np.clip(mask, 0.0, 1.0)


def read_mask(path: str | os.PathLike | None, box: int) -> np.ndarray | None:
    """The FSC mask file at a reconstruction's box (``mask_at_box``), or None without one."""
    return mask_at_box(read_volume(path), box) if path else None


def centre_values(gmm: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(N,) mask value at each Gaussian centre's nearest voxel; -inf for centres outside the box."""
    box = mask.shape[-1]
    idx = np.rint(np.asarray(gmm[:, :3], dtype=np.float64) * box).astype(np.int64) + box // 2
    inside = np.all((idx >= 0) & (idx < box), axis=1)
    values = np.full(len(gmm), -np.inf)
    x, y, z = idx[inside].T
    values[inside] = mask[z, y, x]
    return values


def drop_outside(gmm: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Keep the Gaussians whose centre's nearest voxel has mask > 0.5 (outside the box: dropped)."""
    check_cube(mask, "mask")
    return gmm[centre_values(gmm, mask) > 0.5]


class Frame(Protocol):
    """A box (pixels) at a pixel size (Angstrom) that maps and GMMs must span: the
    particles' (streaming.ParticleSet) or a trained decoder's (decode.Decoder)."""

    @property
    def box(self) -> int: ...

    @property
    def apix(self) -> float: ...

    @property
    def frame_source(self) -> str:
        """What the frame is, for messages: e.g. ``the particles of stack.mrcs``."""
        ...


def check_extent(what: str, box: int, apix: float, frame: Frame) -> None:
    """A map or GMM frame must span the frame's box in Angstrom (any sampling): GMM
    centres are box fractions, so another extent means another data set."""
    extent, expected = box * apix, frame.box * frame.apix
    if abs(extent - expected) > 5e-3 * expected:
        raise InputError(
            f"{what}: box {box} at {apix:.4g} A spans {extent:.1f} A; expected "
            f"{expected:.1f} A, box {frame.box} at {frame.apix:.4g} A of {frame.frame_source}"
        )


def mask_inside(
    path: str | os.PathLike,
    neutral: np.ndarray,
    frame: Frame,
    threshold: float = 0.5,
    apix: float | None = None,
) -> np.ndarray:
    """(N,) bool: Gaussians whose centre voxel in the mask [z, y, x] is >= threshold; the
    mask must span `frame` (the particles or a decoder). `apix`: the config's pixel size
    override for the mask's header."""
    mask, apix = read_map(path, apix)
    if len(set(mask.shape)) != 1:
        raise InputError(
            f"{path}: mask of {'x'.join(map(str, mask.shape))} voxels, expected a cube"
        )
    box = mask.shape[-1]
    check_extent(f"mask {path}", box, apix, frame)
    inside = centre_values(neutral, mask) >= threshold
    if not inside.any():
        raise InputError(f"{path}: no Gaussian of the neutral GMM lies inside the mask")
    return inside
