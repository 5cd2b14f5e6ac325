"""Rule consensus_halves: the consensus map of every particle, its half maps and their FSC."""

from pathlib import Path
from typing import Any

import numpy as np
from rulekit import Progress, run


def main(smk: Any, progress: Progress) -> None:
    from gmmscape.fsc import resolution_at
    from gmmscape.importer import load_meta, load_table
    from gmmscape.masks import read_mask
    from gmmscape.plots import fsc_curves
    from gmmscape.reconstruct import (
        reconstruct_with_halves,
        reconstruction_source,
        write_half_maps,
    )

    settings = smk.params.reconstruct
    table, meta = load_table(smk.input.table), load_meta(smk.input.meta)
    source = reconstruction_source(table, Path(smk.input.meta).parent, meta, settings["scale"])
    (result,) = reconstruct_with_halves(
        table,
        source,
        [np.arange(len(table))],
        wiener=settings["wiener"],
        mask=read_mask(smk.input.mask, source.box),
        interpolation=settings["interpolation"],
        progress=progress,
    )
    write_half_maps(result, Path(smk.output.map).with_suffix(""), source.apix)
    res = {t: resolution_at(result.fsc, t) for t in (0.143, 0.5)}
    fsc_curves({"consensus half maps": result.fsc}, smk.output.plot, "consensus half-map FSC")
    progress(
        f"consensus: {len(table)} particles, "
        f"FSC 0.143 at {res[0.143]:.1f} A, 0.5 at {res[0.5]:.1f} A"
    )


run(main)
