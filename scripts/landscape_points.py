"""Rule landscape_points: the config's latent points of a run, decoded and reconstructed
from the particles nearest each, with half maps and their FSC."""

from pathlib import Path
from typing import Any

from rulekit import Progress, run


def main(smk: Any, progress: Progress) -> None:
    from gmmscape.points import reconstruct_at

    recon = smk.params.reconstruct
    summary = reconstruct_at(
        smk.params.points,
        Path(smk.input.decoder).parent,
        smk.input.latent,
        Path(smk.input.meta).parent,
        smk.output.points,
        count=smk.params.particles,
        mask=smk.input.mask,
        wiener=recon["wiener"],
        interpolation=recon["interpolation"],
        scale=recon["scale"],
        table=smk.input.table,
        progress=progress,
    )
    summary.to_csv(smk.output.table, index=False)


run(main)
