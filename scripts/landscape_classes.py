"""Rule landscape_classes: a map, half maps and FSC per class of a run's landscape."""

from pathlib import Path
from typing import Any

import pandas as pd
from rulekit import Progress, run


def main(smk: Any, progress: Progress) -> None:
    from gmmscape.importer import load_meta, load_table
    from gmmscape.masks import read_mask
    from gmmscape.plots import fsc_curves
    from gmmscape.reconstruct import reconstruct_classes, reconstruction_source

    settings = smk.params.reconstruct
    table, meta = load_table(smk.input.table), load_meta(smk.input.meta)
    source = reconstruction_source(table, Path(smk.input.meta).parent, meta, settings["scale"])
    summary, fsc = reconstruct_classes(
        pd.read_csv(smk.input.latent),
        table,
        source,
        smk.output.maps,
        wiener=settings["wiener"],
        mask=read_mask(smk.input.mask, source.box),
        interpolation=settings["interpolation"],
        progress=progress,
    )
    counts = pd.read_csv(smk.input.counts)[["cluster", "percent"]]
    summary.merge(counts, on="cluster").to_csv(smk.output.table, index=False)
    curves = {
        f"class {k} ({n} particles)": fsc[k]
        for k, n in zip(summary["cluster"], summary["particles"], strict=True)
    }
    fsc_curves(curves, smk.output.fsc, f"half-map FSC of the classes of {smk.wildcards.run}")


run(main)
