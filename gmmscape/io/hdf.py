"""EMAN2 HDF5 image stacks: images at '/MDF/images/<i>/image', header attributes
'EMAN.<name>' on the group '/MDF/images/<i>' (e.g. 'EMAN.apix_x', 'EMAN.ctf').

Read lazily with h5py, one image (or header) at a time, so large stacks never load whole.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from ..errors import InputError
from .common import atomic_output

_IMAGES = "MDF/images"


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"{path}: not a readable HDF5 file ({err})") from err


def _decode(value):
    """h5py gives strings as bytes or numpy scalars; callers want plain Python values."""
    if isinstance(value, bytes):
        return value.decode(errors="replace").rstrip("\0")
    if isinstance(value, np.ndarray) and value.size == 1:
        return value.reshape(()).item()
    return value.item() if isinstance(value, np.generic) else value


class HdfStack:
    """A stack of square images in an EMAN2 .hdf file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: HDF stack not found")
        with _open(self.path) as f:
            if _IMAGES not in f or "0" not in f[_IMAGES]:
                raise InputError(f"{self.path}: no EMAN2 images (expected '/{_IMAGES}/0/image')")
            group = f[_IMAGES]
            self.n = int(_decode(group.attrs.get("imageid_max", len(group) - 1))) + 1
            shape = group["0/image"].shape
            self.apix = float(_decode(group["0"].attrs.get("EMAN.apix_x", 0.0)))
        if len(shape) != 2 or shape[0] != shape[1]:
            raise InputError(f"{self.path}: image 0 has shape {shape}, expected square 2D images")
        self.box = int(shape[0])

    def read(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Images at 0-based `indices` as float32 (k, box, box)."""
        out = np.empty((len(indices), self.box, self.box), dtype=np.float32)
        with _open(self.path) as f:
            for k, i in enumerate(indices):
                group = f.get(f"{_IMAGES}/{int(i)}")
                dataset = None if group is None else group.get("image")
                if dataset is None or dataset.shape != (self.box, self.box):
                    found = "missing" if dataset is None else f"shape {dataset.shape}"
                    raise InputError(
                        f"{self.path}: image {int(i)} is {found}, expected {self.box} x {self.box}"
                    )
                dataset.read_direct(out, dest_sel=np.s_[k])
                _undo_compression(out[k], group.attrs)
        return out

    def headers(self, indices: Sequence[int]) -> list[dict]:
        """EMAN2 header attributes (without the 'EMAN.' prefix) of the images at `indices`."""
        with _open(self.path) as f:
            out = []
            for i in indices:
                group = f.get(f"{_IMAGES}/{int(i)}")
                attrs = {} if group is None else group.attrs
                out.append({k[5:]: _decode(v) for k, v in attrs.items() if k.startswith("EMAN.")})
            return out


def _undo_compression(image: np.ndarray, attrs) -> None:
    """Rescale in place an image EMAN2 stored as n-bit integers (write_compressed)."""
    bits = int(_decode(attrs.get("EMAN.stored_renderbits", 0)))
    if bits > 0:
        lo = float(_decode(attrs["EMAN.stored_rendermin"]))
        hi = float(_decode(attrs["EMAN.stored_rendermax"]))
        image *= (hi - lo) / ((1 << bits) - 1)
        image += lo


def write_hdf_stack(
    path: str | os.PathLike, images: np.ndarray, apix: float, headers: Sequence[dict] | None = None
) -> None:
    """Write images (n, b, b) as an EMAN2 .hdf stack with 'EMAN.*' header attributes.

    For building EMAN2 test data from simulated particles; string attributes (e.g. 'ctf'
    in EMAN2Ctf's "E..." form) are stored as fixed-length strings like EMAN2 does.
    """
    images = np.asarray(images, dtype=np.float32)
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        group = f.create_group(_IMAGES)
        group.attrs["imageid_max"] = np.int32(len(images) - 1)
        for i, image in enumerate(images):
            g = group.create_group(str(i))
            g.create_dataset("image", data=image)
            attrs = {"apix_x": apix, "apix_y": apix, "apix_z": apix, "nx": image.shape[1]}
            attrs |= {"ny": image.shape[0], "nz": 1} | dict(headers[i] if headers else {})
            for key, value in attrs.items():
                g.attrs[f"EMAN.{key}"] = np.bytes_(value) if isinstance(value, str) else value
