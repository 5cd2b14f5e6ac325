"""Rule landscape_classes: the class maps of every job gathered, the class table and the
classes' FSC curves of a run's landscape."""

from pathlib import Path
from typing import Any

import pandas as pd
from rulekit import Progress, run


def main(smk: Any, progress: Progress) -> None:
    from gmmscape.plots import fsc_curves
    from gmmscape.scatter import gather

    summary = gather(smk.input.parts, smk.output.maps)
    counts = pd.read_csv(smk.input.counts)[["cluster", "percent"]]
    summary.merge(counts, on="cluster").to_csv(smk.output.table, index=False)
    curves = {
        f"class {k} ({n} particles)": pd.read_csv(Path(smk.output.maps) / f"class_{k:02d}_fsc.csv")
        for k, n in zip(summary["cluster"], summary["particles"], strict=True)
    }
    fsc_curves(curves, smk.output.fsc, f"half-map FSC of the classes of {smk.wildcards.run}")
    progress(f"{len(summary)} class maps gathered from {len(smk.input.parts)} jobs")


run(main)
