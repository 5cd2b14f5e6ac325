"""Rule landscape_embed: PCA + UMAP of a run's latent vectors, classes, count table, plots."""

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rulekit import Progress, run


def main(smk: Any, progress: Progress) -> None:
    from gmmscape.clustering import LatentClusters, cluster_counts
    from gmmscape.embedding import LatentEmbedding, make_landscape, with_junk
    from gmmscape.importer import junk_of_half, load_table
    from gmmscape.plots import landscape_figures

    settings = smk.params.landscape
    cluster = dict(settings["cluster"])
    space = cluster.pop("space")
    latent = pd.read_csv(smk.input.latent)
    half = smk.wildcards.run.rsplit("_", 1)[1]  # runs are {mode}_{half}
    # junk of training (train/{run}/junk.csv) and of the import (import/junk.csv)
    junk = np.union1d(
        pd.read_csv(smk.input.junk)["index"], junk_of_half(smk.input.import_junk, half)
    )
    embedding = LatentEmbedding(
        umap=settings["umap"],
        n_neighbors=settings["n_neighbors"],
        min_dist=settings["min_dist"],
        random_state=smk.params.seed,
    )
    progress(f"landscape {smk.wildcards.run}: {len(latent)} particles, {len(junk)} junk")
    clusters = LatentClusters(**cluster, random_state=smk.params.seed)
    amplitudes = None
    if cluster["method"] == "auto":
        from gmmscape.decode import load_decoder

        decoder = load_decoder(Path(smk.input.decoder).parent)
        z = latent[[c for c in latent.columns if c.startswith("z")]].to_numpy()
        amplitudes = decoder.decode(z)[..., 3]
    table = make_landscape(latent, embedding, clusters, space, amplitudes)
    full = with_junk(table, junk)
    full.to_csv(smk.output.latent, index=False)
    # Populations among the trained particles (junk: train/{run}/junk.csv), so junk rates
    # do not shift the class percentages that the even/odd reproducibility compares.
    subset = load_table(smk.input.table).set_index("index")["subset"]
    counts = cluster_counts(table["cluster"].to_numpy(), subset[table["index"]].to_numpy())
    counts.to_csv(smk.output.counts, index=False)
    landscape_figures(full, Path(smk.output.latent).parent)
    how = clusters.reason_ if cluster["method"] == "auto" else f"{cluster['method']} on {space}"
    progress(f"landscape {smk.wildcards.run}: {(counts['cluster'] >= 0).sum()} classes ({how})")


run(main)
