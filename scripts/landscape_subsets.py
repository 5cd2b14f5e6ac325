"""Rule landscape_subsets: one particle subset per class in the user's format (.star/.lst/.cs)."""

from typing import Any

import pandas as pd
from rulekit import Progress, run


def main(smk: Any, progress: Progress) -> None:
    from gmmscape.importer import load_meta, load_table
    from gmmscape.subsets import write_class_subsets

    landscape = pd.read_csv(smk.input.latent)
    landscape = landscape[[c for c in ("index", "copy", "cluster") if c in landscape]]
    table = write_class_subsets(
        smk.input.particles,
        landscape,
        smk.output.subsets,
        load_meta(smk.input.meta),
        load_table(smk.input.table),
        expanded=smk.params.expanded,
    )
    table.to_csv(smk.output.table, index=False)
    progress(f"subsets {smk.wildcards.run}: {', '.join(table['file'])}")


run(main)
