"""Rule refine_features: the features of a refinement round's poses in one job (the
round's intermediate run; the final run's features are scattered, rules/train.smk)."""

from typing import Any

from rulekit import Progress, run, with_choices


def main(smk: Any, progress: Progress) -> None:
    from gmmscape.features import FeatureJob, run_features_job

    i = smk.input
    job = FeatureJob(
        i.table, i.stack, i.gmm, i.junk, i.choices, with_choices(smk, "train", smk.params.train)
    )
    message = run_features_job(job, smk.output.features)
    progress(f"refine features {smk.wildcards.round} {smk.wildcards.half}: {message}")


run(main)
