"""Rule landscape_trajectories: the trajectories of every job gathered, and their table."""

from typing import Any

from rulekit import Progress, run


def main(smk: Any, progress: Progress) -> None:
    from gmmscape.scatter import gather

    summary = gather(smk.input.parts, smk.output.trajectories)
    summary.to_csv(smk.output.table, index=False)
    progress(f"{len(summary)} trajectories gathered from {len(smk.input.parts)} jobs")


run(main)
