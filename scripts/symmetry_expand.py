"""Rule symmetry_expand: one row per symmetry copy of a per-particle table (gmmscape.symmetry)."""

from typing import Any

from rulekit import Progress, run


def main(smk: Any, progress: Progress) -> None:
    from gmmscape.symmetry import write_expanded

    rows = write_expanded(smk.input[0], smk.output[0], smk.params.symmetry)
    progress(f"symmetry {smk.params.symmetry}: {smk.output[0]}, {rows} copies")


run(main)
