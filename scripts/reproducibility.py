"""Rule reproducibility: match the even and odd halves' classes and give a verdict."""

import html
from pathlib import Path
from typing import Any

import pandas as pd
from rulekit import Progress, run


def class_maps(table_path: str, maps_dir: str) -> tuple[pd.DataFrame, list, list]:
    """A half's class table, its class maps and their half-map FSC tables (class_KK_fsc.csv)."""
    from gmmscape.io.mrc import read_map

    table = pd.read_csv(table_path)
    maps = [Path(maps_dir) / name for name in table["map"]]
    fsc = [pd.read_csv(m.with_name(f"{m.stem}_fsc.csv")) for m in maps]
    return table, [read_map(m)[0] for m in maps], fsc


def main(smk: Any, progress: Progress) -> None:
    from gmmscape.io.mrc import read_map
    from gmmscape.masks import read_mask
    from gmmscape.plots import fsc_curves
    from gmmscape.reproducibility import compare_halves

    even, even_maps, even_fsc = class_maps(smk.input.even_table, smk.input.even_maps)
    odd, odd_maps, odd_fsc = class_maps(smk.input.odd_table, smk.input.odd_maps)
    (half1, apix), (half2, _) = read_map(smk.input.half1), read_map(smk.input.half2)
    result = compare_halves(
        (even, odd),
        (even_maps, odd_maps),
        (even_fsc, odd_fsc),
        (half1, half2),
        apix,
        mask=read_mask(smk.input.mask, half1.shape[0]),
        population_tolerance=smk.params.settings["population_tolerance"],
        fsc_margin=smk.params.settings["fsc_margin"],
    )
    result.table.to_csv(smk.output.table, index=False)
    verdict = result.verdict()
    Path(smk.output.verdict).write_text(verdict + "\n")
    Path(smk.output.html).write_text(
        f"<html><body><h3>Even/odd reproducibility ({html.escape(smk.wildcards.mode)})</h3>"
        f"<p>{html.escape(verdict)}</p>"
        + result.table.to_html(index=False, float_format=lambda x: f"{x:.3g}", na_rep="")
        + "</body></html>\n"
    )
    curves = {"consensus half maps": result.consensus_fsc}
    curves |= {f"even {a} / odd {b}": t for (a, b), t in result.fsc.items()}
    fsc_curves(curves, smk.output.fsc, "FSC between matched class maps (even vs odd)")
    progress(verdict)


run(main)
