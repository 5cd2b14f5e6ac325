"""Rule features: a half's features, gathered from its parts and normalised."""

from typing import Any

from rulekit import Progress, run, with_choices


def main(smk: Any, progress: Progress) -> None:
    from gmmscape.choices import load_snr
    from gmmscape.features import gather_features
    from gmmscape.gmmio import read_text
    from gmmscape.streaming import load_particles

    particles = load_particles(smk.input.table, smk.input.stack)
    neutral, _, _ = read_text(smk.input.gmm)
    band = with_choices(smk, "train", smk.params.train)
    info = gather_features(
        neutral,
        particles,
        list(smk.input.parts),
        smk.output.features,
        res_lo=band["res_lo"],
        res_hi=band["res_hi"],
        frc_weights=band["frc_weights"],
        snr=load_snr(smk.input.choices),
        dtype=smk.params.train["feature_dtype"],
    )
    progress(
        f"features {smk.wildcards.half}: {particles.n} particles, {len(neutral)} Gaussians, "
        f"{len(info.junk_rows)} junk"
    )


run(main)
