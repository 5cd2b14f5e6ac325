"""Rule gmm_level: fit one level of the coarse-to-fine neutral GMM to the map."""

from typing import Any

from rulekit import Progress, gmm_schedule, load_map, run, with_choices

from gmmscape import gmmfit, gmmio


def main(smk: Any, progress: Progress) -> None:
    p = smk.params
    gmm = with_choices(smk, "gmm", p.gmm)
    level = int(smk.wildcards.level)
    n_gaussians, resolution = gmm_schedule(gmm)[level]
    volume, apix = load_map(smk.input.map, p.apix)
    mask = load_map(smk.input.mask, p.apix)[0] if smk.input.mask else None
    previous = gmmio.read_text(smk.input.previous)[0] if smk.input.previous else None
    progress(
        f"GMM {smk.wildcards.half} level {level}: {n_gaussians} Gaussians up to {resolution:.1f} A"
    )
    model = gmmfit.build_level(
        volume, apix, previous, n_gaussians, resolution, mask, gmm["epochs"], p.seed, progress
    )
    gmmio.write_text(smk.output[0], model, volume.shape[-1], apix)


run(main)
