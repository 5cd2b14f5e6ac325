"""Rule landscape_trajectories_part: PCA, localized eigen-motion, line and circle
trajectories of a run; this job's share of them decoded to GMMs and reconstructed from the
particles nearest each point."""

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rulekit import Progress, run


def main(smk: Any, progress: Progress) -> None:
    from gmmscape.decode import load_decoder
    from gmmscape.embedding import embedded, fit_pca, latent_columns
    from gmmscape.importer import load_meta, load_table
    from gmmscape.masks import mask_inside
    from gmmscape.points import Circle, user_trajectories
    from gmmscape.reconstruct import copies, reconstruction_source, table_rows
    from gmmscape.rigid import write_domain_motion
    from gmmscape.scatter import items_of, write_part_table
    from gmmscape.trajectory import (
        Trajectory,
        decode_points,
        displacement,
        localized_trajectory,
        pc_trajectories,
        write_trajectory,
    )

    settings, recon = smk.params.trajectory, smk.params.reconstruct
    landscape = embedded(pd.read_csv(smk.input.latent))  # junk has no latent
    latent = landscape[latent_columns(landscape)].to_numpy(np.float64)
    decoder = load_decoder(Path(smk.input.decoder).parent)
    span = dict(n_points=settings["points"], percentiles=tuple(settings["percentiles"]))
    pca = fit_pca(latent)
    trajectories: list[Trajectory | Circle] = [
        *pc_trajectories(latent, pca, settings["components"], **span)
    ]
    ratios = [np.nan] * len(trajectories)
    for name, mask_path in zip(smk.params.regions, smk.input.regions, strict=True):
        # the region mask must span the frame the decoder was trained in
        inside = mask_inside(mask_path, decoder.neutral, decoder, apix=smk.params.apix)
        region, ratio = localized_trajectory(latent, decoder, inside, f"region_{name}", **span)
        trajectories.append(region)
        ratios.append(ratio)
        progress(f"region {name}: {inside.sum()} Gaussians inside, motion ratio {ratio:.3g}")

    drawn = user_trajectories(settings, latent, pca, settings["points"])
    trajectories += drawn
    ratios += [np.nan] * len(drawn)

    table, meta = load_table(smk.input.table), load_meta(smk.input.meta)
    source = reconstruction_source(table, Path(smk.input.meta).parent, meta, recon["scale"])
    rows = table_rows(table, landscape["index"].to_numpy(), copies(landscape))
    nan = np.full(latent.shape[1], np.nan)  # a circle has no direction
    summary, mine = [], items_of(len(trajectories), (int(smk.wildcards.part), smk.params.parts))
    for trajectory, ratio in ((trajectories[i], ratios[i]) for i in mine):
        progress(f"trajectory {trajectory.name}")
        points = write_trajectory(
            trajectory,
            decoder,
            Path(smk.output.part) / trajectory.name,
            latent=latent,
            rows=rows,
            table=table,
            source=source,
            count=settings["particles"],
            wiener=recon["wiener"],
            interpolation=recon["interpolation"],
            progress=progress,
        )
        extra = {}
        if decoder.mode == "rigid":  # the domain's rotation (degrees) and shift (Angstrom)
            table_path = Path(smk.output.part) / trajectory.name / "trajectory.csv"
            extra = write_domain_motion(decoder, trajectory, table_path)
        move = displacement(decode_points(decoder, trajectory)) * decoder.box * decoder.apix
        summary.append(
            {
                "trajectory": trajectory.name,
                **{f"v{i}": x for i, x in enumerate(getattr(trajectory, "direction", nan))},
                "t_start": trajectory.t[0],
                "t_end": trajectory.t[-1],
                "particles_per_point": int(points["particles"].iloc[0]),
                "max_motion_A": float(move.max()),
                "mean_motion_A": float(move.mean()),
                "region_ratio": ratio,
                **extra,
            }
        )
    write_part_table(pd.DataFrame(summary), mine, smk.output.part)


run(main)
