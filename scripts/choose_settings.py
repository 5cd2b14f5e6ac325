"""Rule choose_settings: derive the settings the config leaves empty (choices.yaml)."""

from typing import Any

from rulekit import Progress, run


def main(smk: Any, progress: Progress) -> None:
    from gmmscape.choices import choose, summary

    p = smk.params
    progress(f"choosing the settings the config leaves empty, from {smk.input.particles}")
    chosen = choose(
        smk.input.particles,
        smk.input.map,
        smk.output[0],
        p.settings,
        mask_path=smk.input.mask or None,
        apix=p.apix,
        seed=p.seed,
        phase_flipped=p.phase_flipped,
        particles_dir=p.particles_dir,
        conventions=p.conventions,
        measure_snr=p.measure_snr,
    )
    progress(f"settings (written to {smk.output[0]}):\n{summary(chosen)}")


run(main)
