"""Fourier-space conventions shared by every module.

An image of even box b is an array [y, x] whose origin (x = y = 0) is the pixel
(b//2, b//2). Its transform is ``rfft2(ifftshift(image))``: rows ky in FFT order
(``fftfreq(b) * b``), columns kx = 0..b/2, both in integer Fourier indices
(cycles per box). Resolution of index k is b * apix / k Angstrom.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError


def check_box(box: int, what: str = "box") -> int:
    """Return box as int, or raise: all kernels assume an even box with centre at b//2."""
    box = int(box)
    if box < 8 or box % 2:
        raise InputError(f"{what}: expected an even box size >= 8 pixels, got {box}")
    return box


def check_cube(volume: np.ndarray, what: str = "map") -> int:
    """The box of a cubic 3D map [z, y, x] (``check_box``), or raise."""
    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise InputError(f"{what}: expected a cubic 3D map [z, y, x], got shape {volume.shape}")
    return check_box(volume.shape[0], f"{what} box")


def rfft_freqs(box: int) -> tuple[np.ndarray, np.ndarray]:
    """(ky, kx) integer Fourier indices of the rfft2 grid, shapes (b, 1) and (1, b//2+1)."""
    ky = np.fft.fftfreq(box, 1.0 / box)[:, None]
    kx = np.fft.rfftfreq(box, 1.0 / box)[None, :]
    return ky, kx


def to_fourier(images: np.ndarray) -> np.ndarray:
    """Images (..., b, b) with origin at b//2 -> rfft2 (..., b, b//2+1), complex."""
    return np.fft.rfft2(np.fft.ifftshift(images, axes=(-2, -1)))


def to_real(ft: np.ndarray, box: int) -> np.ndarray:
    """Inverse of to_fourier for a box of b pixels."""
    return np.fft.fftshift(np.fft.irfft2(ft, s=(box, box)), axes=(-2, -1))


def fourier_crop(images: np.ndarray, new_box: int) -> np.ndarray:
    """Fourier-crop images (n, b, b) to (n, nb, nb), keeping pixel values' scale.

    The pixel size grows by b / nb. The Nyquist row and column of the new box are
    dropped so the result stays real and centred. Works on float32 chunks.
    """
    box = images.shape[-1]
    new_box = check_box(new_box, "new box")
    if new_box > box:
        raise InputError(f"cannot Fourier-crop a box of {box} to a larger box of {new_box}")
    if new_box == box:
        return np.asarray(images, dtype=np.float32)
    ft = to_fourier(np.asarray(images, dtype=np.float32))
    return to_real(crop_ft(ft, box, new_box), new_box).astype(np.float32) * (new_box / box) ** 2


def crop_ft(ft: np.ndarray, box: int, new_box: int) -> np.ndarray:
    """Cut the rfft2 grid of box b down to the rfft2 grid of box nb (Nyquist zeroed)."""
    h = new_box // 2
    out = np.zeros(ft.shape[:-2] + (new_box, h + 1), dtype=ft.dtype)
    out[..., :h, :h] = ft[..., :h, :h]
    out[..., h + 1 :, :h] = ft[..., box - h + 1 :, :h]
    return out
