"""Rule summary: the answers of the run on one page (gmmscape.summary)."""

from pathlib import Path
from typing import Any

from rulekit import Progress, run


def main(smk: Any, progress: Progress) -> None:
    from gmmscape.summary import RunAnswers, Summary, write_summary

    modes = smk.params.modes
    verdicts = list(smk.input.verdicts) or [None] * len(modes)
    runs = [
        RunAnswers(f"{mode}_all", Path(c), Path(p), Path(v) if v else None)
        for mode, c, p, v in zip(
            modes, smk.input.classes, smk.input.pictures, verdicts, strict=True
        )
    ]
    write_summary(Summary(runs, Path(smk.input.choices)), smk.output[0])
    progress(f"answers: {smk.output[0]}")


run(main)
