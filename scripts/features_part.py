"""Rule features_part: the raw FRC-loss gradients of one part of a half's particles."""

from typing import Any

from rulekit import Progress, run, with_choices


def main(smk: Any, progress: Progress) -> None:
    from gmmscape.features import FeatureJob, run_features_job

    i = smk.input
    job = FeatureJob(
        i.table, i.stack, i.gmm, i.junk, i.choices, with_choices(smk, "train", smk.params.train)
    )
    part = (int(smk.wildcards.part), smk.params.parts, smk.params.train["features_per_job"])
    progress(f"features {smk.wildcards.half}: {run_features_job(job, smk.output.part, part)}")


run(main)
