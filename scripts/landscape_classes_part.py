"""Rule landscape_classes_part: map, half maps and FSC of one job's share of a run's classes."""

from pathlib import Path
from typing import Any

import pandas as pd
from rulekit import Progress, run


def main(smk: Any, progress: Progress) -> None:
    from gmmscape.importer import load_meta, load_table
    from gmmscape.masks import read_mask
    from gmmscape.reconstruct import reconstruct_classes, reconstruction_source
    from gmmscape.scatter import write_part_table

    settings = smk.params.reconstruct
    table, meta = load_table(smk.input.table), load_meta(smk.input.meta)
    source = reconstruction_source(table, Path(smk.input.meta).parent, meta, settings["scale"])
    summary, _ = reconstruct_classes(
        pd.read_csv(smk.input.latent),
        table,
        source,
        smk.output.part,
        part=(int(smk.wildcards.part), smk.params.parts),
        wiener=settings["wiener"],
        mask=read_mask(smk.input.mask, source.box),
        interpolation=settings["interpolation"],
        progress=progress,
    )
    write_part_table(summary, summary["cluster"], smk.output.part)


run(main)
