"""Corrections for inputs written with another program's conventions (config
`conventions:`), as the pre-flight check (gmmscape.preflight) names them."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import InputError
from .common import ParticleRecords


def correct_conventions(
    records: ParticleRecords,
    *,
    transpose_rotations: bool = False,
    negate_shifts: bool = False,
    invert_contrast: bool = False,
) -> ParticleRecords:
    """Undo a convention mistake of the program that wrote the input: R -> R^T, t -> -t,
    or inverted contrast, which is the same linear model as a CTF shifted by 180 degrees
    of phase (so the import's phase flip and every reconstruction follow)."""
    out = dataclasses.replace(records)  # a new record set; the input's stays as it was
    if transpose_rotations:
        out.rotations = records.rotations.transpose(0, 2, 1).copy()
    if negate_shifts:
        out.shifts = -records.shifts
    if invert_contrast:
        if np.isnan(records.ctf["defocus_u"]).any():
            raise InputError(
                f"{records.source_file}: conventions.invert_contrast needs a CTF for every "
                "particle (it inverts the contrast through the CTF's phase)"
            )
        out.ctf = records.ctf | {"phase_shift": records.ctf["phase_shift"] + 180.0}
    return out
