"""Rule train: encoder and decoder of one mode on one half, resuming from checkpoints."""

from pathlib import Path
from typing import Any

from rulekit import Progress, run, with_choices

WORKFLOW_KEYS = ("modes", "mask", "features_per_job")  # train: keys of the workflow, not of one run


def main(smk: Any, progress: Progress) -> None:
    import pandas as pd

    from gmmscape.choices import load_snr
    from gmmscape.gmmio import read_text
    from gmmscape.junk import junk_rows
    from gmmscape.masks import check_extent, mask_inside
    from gmmscape.streaming import load_particles
    from gmmscape.symmetry import free_gaussians
    from gmmscape.train import settings_from_config, train

    values = with_choices(smk, "train", smk.params.train)
    section = {k: v for k, v in values.items() if k not in WORKFLOW_KEYS}
    settings = settings_from_config(section, mode=smk.wildcards.mode, seed=smk.params.seed)
    particles = load_particles(smk.input.table, smk.input.stack)
    neutral, box, apix = read_text(smk.input.gmm)
    check_extent(f"GMM {smk.input.gmm}", box, apix, particles)
    mask, apix_override = smk.input.mask, smk.params.apix
    inside = mask_inside(mask, neutral, particles, apix=apix_override) if mask else None
    inside = free_gaussians(
        smk.params.symmetry,
        neutral,
        particles,
        asu_mask=smk.input.asu_mask or None,
        inside=inside,
        apix=apix_override,
    )
    run_name = f"{smk.wildcards.mode}_{smk.wildcards.half}"
    free = "all" if inside is None else f"{int(inside.sum())} inside the mask or ASU"
    progress(f"train {run_name}: {particles.n} particles, {len(neutral)} Gaussians ({free} free)")
    outdir = Path(smk.output.latent).parent
    history = train(
        neutral,
        particles,
        smk.input.features,
        outdir,
        settings,
        inside=inside,
        frame=(box, apix),
        junk_reasons=junk_rows(pd.read_csv(smk.input.junk)),
        snr=load_snr(smk.input.choices),
    )
    progress(f"train {run_name}: done, final loss {history['loss'].iloc[-1]:.5f}")


run(main)
