"""Open particle image stacks of any supported format, and check that every particle is in one."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from .hdf import HdfStack
from .mrc import MrcStack

ImageStack = MrcStack | HdfStack

_READERS: dict[str, type[MrcStack] | type[HdfStack]] = {
    ".mrcs": MrcStack,
    ".mrc": MrcStack,
    ".hdf": HdfStack,
    ".h5": HdfStack,
}


def open_stack(path: str | os.PathLike) -> ImageStack:
    """Open the header of an image stack, chosen by suffix; images are read later, on demand."""
    reader = _READERS.get(Path(path).suffix.lower())
    if reader is None:
        raise InputError(
            f"{path}: unsupported image file type (expected one of {sorted(_READERS)})"
        )
    return reader(path)


def read_sources(rows: pd.DataFrame, stacks: dict[str, ImageStack], box: int) -> np.ndarray:
    """The particles' own images (box pixels) of canonical-table rows (``source``,
    ``source_index``), in the rows' order. A file missing from `stacks` is opened and kept
    there, so the import and a reconstruction at the original box open each file once."""
    images = np.empty((len(rows), box, box), np.float32)
    index = rows["source_index"].to_numpy()
    for source, where in rows.groupby("source", sort=False).indices.items():
        if source not in stacks:
            stacks[source] = open_stack(source)
        images[where] = stacks[source].read(index[where])
    return images


def open_sources(
    sources: Sequence[str], indices: np.ndarray, file: Path, index_base: int
) -> dict[str, ImageStack]:
    """Open every distinct image file once and check each particle's index lies inside it.

    `index_base` is how the input numbers images (1 for RELION's "000012@stack.mrcs",
    0 for EMAN2), so the message quotes the number the user sees in the file.
    """
    stacks = {s: open_stack(s) for s in dict.fromkeys(sources)}
    lengths = np.array([stacks[s].n for s in sources])
    bad = np.flatnonzero((indices < 0) | (indices >= lengths))
    if bad.size:
        i = bad[0]
        raise InputError(
            f"{file} row {i} (0-based): image {indices[i] + index_base} (numbered from "
            f"{index_base}) is past the end of {sources[i]}, which holds {lengths[i]} images"
        )
    return stacks
