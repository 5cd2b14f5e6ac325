"""Rule gmm_evaluate: FSC between every level's GMM and the map, as a table and a plot."""

from typing import Any

import pandas as pd
from rulekit import Progress, gmm_schedule, load_map, run, with_choices

from gmmscape import gmmfit, gmmio, plots


def main(smk: Any, progress: Progress) -> None:
    gmm = with_choices(smk, "gmm", smk.params.gmm)
    volume, apix = load_map(smk.input.map, smk.params.apix)
    curves = {}
    for level, (path, (n, resolution)) in enumerate(
        zip(smk.input.models, gmm_schedule(gmm), strict=True)
    ):
        fsc = gmmfit.evaluate(gmmio.read_text(path)[0], volume, apix)
        curves[f"level {level}: {n} Gaussians, {resolution:.0f} Å"] = fsc.assign(
            level=level, n_gaussians=n, level_resolution=resolution
        )
        fitted = fsc[(fsc["shell"] >= 1) & (fsc["resolution"] >= resolution)]
        progress(f"level {level}: lowest FSC up to {resolution:.1f} A is {fitted['fsc'].min():.3f}")
    pd.concat(curves.values(), ignore_index=True).to_csv(smk.output.table, index=False)
    plots.plot_fsc(smk.output.plot, curves, gmm["target_resolution"])


run(main)
