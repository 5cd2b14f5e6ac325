"""Rule junk: particles whose image statistics or FRC to the neutral GMM are outliers."""

from typing import Any

from rulekit import Progress, run, with_choices


def main(smk: Any, progress: Progress) -> None:
    from gmmscape.gmmio import read_text
    from gmmscape.junk import JunkSettings, find_junk, plot_junk
    from gmmscape.streaming import load_particles

    particles = load_particles(smk.input.table, smk.input.stack)
    neutral = read_text(smk.input.gmm)[0]
    band = with_choices(smk, "train", smk.params.train)
    settings = JunkSettings(threshold=smk.params.junk["threshold"])
    table = find_junk(
        neutral,
        particles,
        smk.output.table,
        res_lo=band["res_lo"],
        res_hi=band["res_hi"],
        settings=settings,
    )
    plot_junk(table, particles, settings.threshold, smk.output.plot)
    progress(f"junk {smk.wildcards.half}: {int((table['reason'] != '').sum())} of {particles.n}")


run(main)
