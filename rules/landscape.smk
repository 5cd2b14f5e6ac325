"""Landscape of every training run (train/{mode}_{half}): PCA + UMAP and classes, a map
with half maps and a particle subset per class, motion trajectories; the consensus half
maps; with `split: true`, the even/odd reproducibility report of every mode.

Needs from common.smk: config, out(), cpus(), sized(), optional(), HALVES, ANY_HALF, DEMO,
PARTICLES, MASK.
The default target adds LANDSCAPE_OUTPUTS (below).
"""

LANDSCAPE = config["landscape"]
LANDSCAPE_VIEWS = ["pca"] + (["umap"] if LANDSCAPE["umap"] else [])
FSC_MASK = MASK if LANDSCAPE["reconstruct"]["fsc_mask"] else None
# Localized eigen-motions: the configured region masks; the demo's moving domain by default.
REGIONS = LANDSCAPE["trajectory"]["regions"] or (
    {"domain": out("demo/moving_mask.mrc")} if DEMO else {}
)


wildcard_constraints:
    run=f"[a-z]+_({ANY_HALF})",


# Every training run: {mode}_{half} for the configured modes and halves.
LANDSCAPE_RUNS = [f"{mode}_{half}" for mode in config["train"]["modes"] for half in HALVES]
# What the default target needs from this stage (Snakefile: `rule all: input: ...,
# LANDSCAPE_OUTPUTS`): per run the landscape table, classes, subsets and trajectories
# (and the configured latent points' maps);
# the consensus half maps; with `split: true` the reproducibility report of every mode.
LANDSCAPE_OUTPUTS = [
    out(f"landscape/{run}/{name}")
    for run in LANDSCAPE_RUNS
    for name in ("latent.csv", "clusters.csv", "classes.csv", "subsets.csv", "trajectories.csv")
] + [out("landscape/consensus/map.mrc")]
LANDSCAPE_OUTPUTS += [out(f"landscape/{run}/explorer.html") for run in LANDSCAPE_RUNS]
if LANDSCAPE["points"]:
    LANDSCAPE_OUTPUTS += [out(f"landscape/{run}/points.csv") for run in LANDSCAPE_RUNS]
if config["split"]:
    LANDSCAPE_OUTPUTS += [out(f"reproducibility/{m}/report.html") for m in config["train"]["modes"]]


rule landscape_embed:
    input:
        latent=out("train/{run}/latent.csv"),
        decoder=out("train/{run}/decoder.keras"),
        decoder_meta=out("train/{run}/decoder.json"),
        junk=out("train/{run}/junk.csv"),
        import_junk=out("import/junk.csv"),
        table=out("import/particles.csv"),
    output:
        **{
            f"{view}_{kind}": report(
                out(f"landscape/{{run}}/{view}_{kind}.png"),
                caption=f"../report/landscape_{kind}.rst",
                category="Landscape",
                subcategory="{run}",
                labels={"run": "{run}", "view": view.upper(), "figure": kind},
            )
            for view in LANDSCAPE_VIEWS
            for kind in ("scatter", "density")
        },
        latent=out("landscape/{run}/latent.csv"),
        counts=report(
            out("landscape/{run}/clusters.csv"),
            caption="../report/landscape_counts.rst",
            category="Landscape",
            subcategory="{run}",
            labels={"run": "{run}", "figure": "class populations"},
        ),
    params:
        landscape=picked(LANDSCAPE, "umap", "n_neighbors", "min_dist", "cluster"),
        seed=config["seed"],
    log:
        out("logs/landscape_embed/{run}.log"),
    benchmark:
        out("benchmarks/landscape_embed/{run}.tsv")
    threads: cpus("landscape_embed")  # a seeded UMAP runs single-threaded
    resources:
        **sized("landscape_embed"),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/landscape_embed.py"


# Class maps and trajectory maps are split over landscape.reconstruct.jobs jobs each (job
# p does items p, p + jobs, ...: gmmscape.scatter), run side by side on a cluster, then
# gathered into classes/ and trajectories/: the same bytes as one job. The number of
# classes is known only after the landscape; the trajectories' at most from the config.
CLASS_JOBS = LANDSCAPE["reconstruct"]["jobs"]
TRAJECTORY_COUNT = (
    LANDSCAPE["trajectory"]["components"]
    + len(REGIONS)
    + len(LANDSCAPE["trajectory"]["lines"] or {})
    + len(LANDSCAPE["trajectory"]["circles"] or {})
)
TRAJECTORY_JOBS = max(1, min(CLASS_JOBS, TRAJECTORY_COUNT))


rule landscape_classes_part:
    input:
        latent=out("landscape/{run}/latent.csv"),
        table=posed_run_table,  # import/particles.csv, or the last refinement round's
        stack=out("import/stack.mrcs"),
        meta=out("import/meta.json"),
        mask=optional(FSC_MASK),
    output:
        part=temp(directory(out("landscape/{run}/parts/classes_{part}"))),
    params:
        reconstruct=LANDSCAPE["reconstruct"],
        parts=CLASS_JOBS,
    log:
        out("logs/landscape_classes_part/{run}_{part}.log"),
    benchmark:
        out("benchmarks/landscape_classes_part/{run}_{part}.tsv")
    threads: cpus("landscape_classes")
    resources:
        **sized("landscape_classes", parts=CLASS_JOBS),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/landscape_classes_part.py"


rule landscape_classes:
    input:
        parts=expand(out("landscape/{{run}}/parts/classes_{part}"), part=range(CLASS_JOBS)),
        counts=out("landscape/{run}/clusters.csv"),
    output:
        maps=directory(out("landscape/{run}/classes")),
        table=report(
            out("landscape/{run}/classes.csv"),
            caption="../report/classes_table.rst",
            category="Classes",
            subcategory="{run}",
            labels={"run": "{run}", "figure": "class table"},
        ),
        fsc=report(
            out("landscape/{run}/classes_fsc.png"),
            caption="../report/classes_fsc.rst",
            category="Classes",
            subcategory="{run}",
            labels={"run": "{run}", "figure": "half-map FSC"},
        ),
    log:
        out("logs/landscape_classes/{run}.log"),
    benchmark:
        out("benchmarks/landscape_classes/{run}.tsv")
    threads: 1
    resources:
        **sized("gather"),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/landscape_classes.py"


rule landscape_subsets:
    input:
        latent=out("landscape/{run}/latent.csv"),
        particles=PARTICLES,
        meta=out("import/meta.json"),
        table=expanded(out("import/particles.csv")),
    output:
        subsets=directory(out("landscape/{run}/subsets")),
        table=out("landscape/{run}/subsets.csv"),
    params:
        expanded=LANDSCAPE["subsets"]["expanded"],
    log:
        out("logs/landscape_subsets/{run}.log"),
    benchmark:
        out("benchmarks/landscape_subsets/{run}.tsv")
    threads: cpus("landscape_subsets")
    resources:
        **sized("landscape_subsets"),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/landscape_subsets.py"


rule landscape_trajectories_part:
    input:
        latent=out("landscape/{run}/latent.csv"),
        decoder=out("train/{run}/decoder.keras"),
        decoder_meta=out("train/{run}/decoder.json"),
        table=posed_run_table,  # import/particles.csv, or the last refinement round's
        stack=out("import/stack.mrcs"),
        meta=out("import/meta.json"),
        regions=list(REGIONS.values()),
    output:
        part=temp(directory(out("landscape/{run}/parts/trajectories_{part}"))),
    params:
        trajectory=LANDSCAPE["trajectory"],
        reconstruct=LANDSCAPE["reconstruct"],
        regions=list(REGIONS),
        apix=config["apix"],
        parts=TRAJECTORY_JOBS,
    log:
        out("logs/landscape_trajectories_part/{run}_{part}.log"),
    benchmark:
        out("benchmarks/landscape_trajectories_part/{run}_{part}.tsv")
    threads: cpus("landscape_trajectories")
    resources:
        **sized("landscape_trajectories", parts=TRAJECTORY_JOBS),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/landscape_trajectories_part.py"


rule landscape_trajectories:
    input:
        parts=expand(
            out("landscape/{{run}}/parts/trajectories_{part}"), part=range(TRAJECTORY_JOBS)
        ),
    output:
        trajectories=report(
            directory(out("landscape/{run}/trajectories")),
            patterns=["{name}/quiver.png"],
            caption="../report/trajectory_quiver.rst",
            category="Trajectories",
            subcategory="{run}",
            labels={"run": "{run}", "trajectory": "{name}"},
        ),
        table=out("landscape/{run}/trajectories.csv"),
    log:
        out("logs/landscape_trajectories/{run}.log"),
    benchmark:
        out("benchmarks/landscape_trajectories/{run}.tsv")
    threads: 1
    resources:
        **sized("gather"),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/landscape_trajectories.py"


rule landscape_explorer:
    input:
        latent=out("landscape/{run}/latent.csv"),
        classes=out("landscape/{run}/classes.csv"),
        class_maps=out("landscape/{run}/classes"),
        subsets=out("landscape/{run}/subsets.csv"),
        trajectories=out("landscape/{run}/trajectories.csv"),
        trajectory_dirs=out("landscape/{run}/trajectories"),
        decoder=out("train/{run}/decoder.keras"),
        decoder_meta=out("train/{run}/decoder.json"),
        particles=PARTICLES,
        meta=out("import/meta.json"),
    output:
        page=out("landscape/{run}/explorer.html"),
    log:
        out("logs/landscape_explorer/{run}.log"),
    benchmark:
        out("benchmarks/landscape_explorer/{run}.tsv")
    threads: cpus("landscape_explorer")
    resources:
        **sized("landscape_explorer"),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/landscape_explorer.py"


rule landscape_points:
    input:
        latent=out("landscape/{run}/latent.csv"),
        decoder=out("train/{run}/decoder.keras"),
        decoder_meta=out("train/{run}/decoder.json"),
        table=posed_run_table,  # import/particles.csv, or the last refinement round's
        stack=out("import/stack.mrcs"),
        meta=out("import/meta.json"),
        mask=optional(FSC_MASK),
    output:
        points=directory(out("landscape/{run}/points")),
        table=out("landscape/{run}/points.csv"),
    params:
        points=LANDSCAPE["points"],
        particles=LANDSCAPE["trajectory"]["particles"],
        reconstruct=LANDSCAPE["reconstruct"],
    log:
        out("logs/landscape_points/{run}.log"),
    benchmark:
        out("benchmarks/landscape_points/{run}.tsv")
    threads: cpus("landscape_points")
    resources:
        **sized("landscape_points"),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/landscape_points.py"


rule consensus_halves:
    input:
        table=posed_table("all") if ROUNDS else out("import/particles.csv"),
        stack=out("import/stack.mrcs"),
        meta=out("import/meta.json"),
        mask=optional(FSC_MASK),
    output:
        map=out("landscape/consensus/map.mrc"),
        half1=out("landscape/consensus/map_half1.mrc"),
        half2=out("landscape/consensus/map_half2.mrc"),
        table=out("landscape/consensus/map_fsc.csv"),
        plot=report(
            out("landscape/consensus/fsc.png"),
            caption="../report/consensus_fsc.rst",
            category="Classes",
            subcategory="consensus",
            labels={"run": "consensus", "figure": "half-map FSC"},
        ),
    params:
        reconstruct=LANDSCAPE["reconstruct"],
    log:
        out("logs/consensus_halves.log"),
    benchmark:
        out("benchmarks/consensus_halves.tsv")
    threads: cpus("consensus_halves")
    resources:
        **sized("consensus_halves"),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/consensus_halves.py"


rule reproducibility:
    input:
        even_table=out("landscape/{mode}_even/classes.csv"),
        even_maps=out("landscape/{mode}_even/classes"),
        odd_table=out("landscape/{mode}_odd/classes.csv"),
        odd_maps=out("landscape/{mode}_odd/classes"),
        half1=out("landscape/consensus/map_half1.mrc"),
        half2=out("landscape/consensus/map_half2.mrc"),
        mask=optional(FSC_MASK),
    output:
        table=out("reproducibility/{mode}/report.csv"),
        verdict=out("reproducibility/{mode}/verdict.txt"),
        html=report(
            out("reproducibility/{mode}/report.html"),
            caption="../report/reproducibility.rst",
            category="Reproducibility",
            subcategory="{mode}",
            labels={"mode": "{mode}", "figure": "verdict"},
        ),
        fsc=report(
            out("reproducibility/{mode}/fsc.png"),
            caption="../report/reproducibility_fsc.rst",
            category="Reproducibility",
            subcategory="{mode}",
            labels={"mode": "{mode}", "figure": "matched class FSC"},
        ),
    params:
        settings=LANDSCAPE["reproducibility"],
    log:
        out("logs/reproducibility/{mode}.log"),
    benchmark:
        out("benchmarks/reproducibility/{mode}.tsv")
    threads: cpus("reproducibility")
    resources:
        **sized("reproducibility"),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/reproducibility.py"
