"""Rule features_part: the raw FRC-loss gradients of one part of a half's particles."""

from typing import Any

from rulekit import Progress, run, with_choices


def main(smk: Any, progress: Progress) -> None:
    import pandas as pd

    from gmmscape.choices import load_snr
    from gmmscape.features import feature_part
    from gmmscape.gmmio import read_text
    from gmmscape.junk import junk_rows
    from gmmscape.streaming import load_particles
    from gmmscape.train import check_extent

    particles = load_particles(smk.input.table, smk.input.stack)
    neutral, box, apix = read_text(smk.input.gmm)
    check_extent(f"GMM {smk.input.gmm}", box, apix, particles)
    band = with_choices(smk, "train", smk.params.train)
    part, parts = int(smk.wildcards.part), smk.params.parts
    progress(f"features {smk.wildcards.half}: part {part + 1} of {parts}")
    feature_part(
        neutral,
        particles,
        smk.output.part,
        part,
        parts,
        res_lo=band["res_lo"],
        res_hi=band["res_hi"],
        exclude=list(junk_rows(pd.read_csv(smk.input.junk))),
        frc_weights=band["frc_weights"],
        snr=load_snr(smk.input.choices),
        part_size=smk.params.train["features_per_job"],
    )


run(main)
