"""Soft masks: a binary core grown and given a cosine edge, for FSCs and masked maps."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


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
