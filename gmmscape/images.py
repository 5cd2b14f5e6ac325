"""The particle images of a canonical table: the import's Fourier-cropped stack or the
particles' original stacks behind one ImageSource.

Training, features and reconstructions all read images through it, so they agree on
what a table row's image is, its box and pixel size, what it holds of the CTF and in
which pixels its shift is given.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import InputError
from .importer import load_meta, table_poses
from .io.common import CTF_STATES
from .io.mrc import MrcStack
from .io.stacks import ImageStack, read_sources


@dataclass(frozen=True)
class ImageSource:
    """Where a table's particle images come from: box, pixel size, what they hold, reader.

    ``read(rows)`` returns the images of a slice of the canonical table in its order;
    ``shifts(rows)`` their shifts (n, 2) in pixels of this box; ``images_ctf`` is
    raw, flipped or premultiplied (io.common.CTF_STATES).
    """

    box: int
    apix: float
    images_ctf: str
    shifts: Callable[[pd.DataFrame], np.ndarray]
    read: Callable[[pd.DataFrame], np.ndarray]


def cropped_source(stack: str | os.PathLike | MrcStack, meta: dict | None = None) -> ImageSource:
    """The import's phase-flipped (or premultiplied), Fourier-cropped stack, read by the
    table's ``stack_index`` (an opened MrcStack is reused, e.g. after checking those rows).

    `meta` is the import's meta.json: its box must be the stack's, and its pixel size is
    used as written (the header rounds it to float32). Without it (training, which also
    opens bare stacks) the pixel size is the header's and what the images hold is taken
    from a meta.json beside the stack, if there is one.
    """
    images = stack if isinstance(stack, MrcStack) else MrcStack(stack)
    if meta is None:
        beside = images.path.with_name("meta.json")
        stated, apix = (load_meta(beside) if beside.is_file() else {}), images.apix
    else:
        if images.box != int(meta["box"]):
            raise InputError(
                f"{images.path}: images are {images.box} pixels but meta.json says box "
                f"{meta['box']}"
            )
        stated, apix = meta, float(meta["apix"])
    return ImageSource(
        box=images.box,
        apix=apix,
        images_ctf=stated.get("stack_ctf", "flipped"),
        shifts=lambda rows: table_poses(rows, images.box)[1],
        read=lambda rows: images.read(rows["stack_index"].to_numpy()),
    )


def original_source(table: pd.DataFrame, *, images_ctf: str = "raw") -> ImageSource:
    """The particles' own (unbinned) images, read from the table's source/source_index.

    images_ctf: what they hold (meta.json "source_ctf"): RELION particles are raw unless
    flagged, EMAN2 '__ctf_flip' stacks are flipped.
    """
    if images_ctf not in CTF_STATES:
        raise InputError(
            f"reconstruction at the original box needs images all raw, flipped or "
            f"premultiplied, found {images_ctf} (optics groups differ)"
        )
    boxes, apixes = table["box"].unique(), table["apix"].unique()
    if len(boxes) != 1 or np.ptp(apixes) > 1e-3 * apixes[0]:
        raise InputError(
            "reconstruction at the original box needs one box and pixel size for all particles, "
            f"found boxes {sorted(boxes.tolist())} and pixel sizes {sorted(apixes.tolist())}"
        )
    stacks: dict[str, ImageStack] = {}

    def read(rows: pd.DataFrame) -> np.ndarray:
        return read_sources(rows, stacks, int(boxes[0]))

    def shifts(rows: pd.DataFrame) -> np.ndarray:
        return rows[["shift_x", "shift_y"]].to_numpy(np.float64)

    return ImageSource(int(boxes[0]), float(apixes[0]), images_ctf, shifts, read)
