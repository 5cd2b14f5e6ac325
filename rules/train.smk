"""Heterogeneity training per half (all; even and odd with `split: true`): junk particles
(statistical outliers, junk/{half}.csv), the gradient features of the half's other
particles against its own neutral GMM, then one run per mode in `train.modes`, written
to train/{mode}_{half}/ (e.g. amplitude_all, position_even).
"""

TRAIN = config["train"]
if "rigid" in TRAIN["modes"] and TRAIN["mask"] is None and not DEMO:
    fail("train.modes: 'rigid' needs train.mask (a mask of the domain that moves)")


wildcard_constraints:
    mode="amplitude|position|all|rigid",
    part=r"\d+",


rule junk:
    input:
        table=out("import/{half}.csv"),
        stack=out("import/stack.mrcs"),
        gmm=out("gmm/{half}/neutral.txt"),
        choices=out("choices.yaml"),
    output:
        table=out("junk/{half}.csv"),
        plot=report(
            out("junk/{half}.png"),
            caption="../report/junk.rst",
            category="Junk particles",
            subcategory="{half}",
        ),
    params:
        junk=config["junk"],
        train=picked(TRAIN, *BAND_KEYS),
    log:
        out("logs/junk/{half}.log"),
    benchmark:
        out("benchmarks/junk/{half}.tsv")
    threads: cpus("junk")
    resources:
        **sized("junk"),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/junk.py"


# The gradient pass runs as FEATURE_PARTS jobs of train.features_per_job particles each
# (a cluster runs them side by side; the last takes any rows beyond the estimate), then
# one job gathers and normalises them: the same bytes as one job (gmmscape.features).
FEATURE_PARTS = part_count(data_scale().particles, TRAIN["features_per_job"])


rule features_part:
    input:
        table=posed_half_table,  # import/{half}.csv, or the last refinement round's
        stack=out("import/stack.mrcs"),
        gmm=out("gmm/{half}/neutral.txt"),
        choices=out("choices.yaml"),
        junk=expanded(out("junk/{half}.csv")),
    output:
        part=temp(out("features/{half}/part_{part}.npy")),
        sums=temp(out("features/{half}/part_{part}.sums.npz")),
    params:
        train=picked(TRAIN, *BAND_KEYS, "features_per_job"),
        parts=FEATURE_PARTS,
    log:
        out("logs/features_part/{half}_{part}.log"),
    benchmark:
        out("benchmarks/features_part/{half}_{part}.tsv")
    threads: cpus("features")
    resources:
        **sized("features", gpu=True, parts=FEATURE_PARTS),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/features_part.py"


rule features:
    input:
        parts=expand(out("features/{{half}}/part_{part}.npy"), part=range(FEATURE_PARTS)),
        sums=expand(out("features/{{half}}/part_{part}.sums.npz"), part=range(FEATURE_PARTS)),
        table=posed_half_table,
        stack=out("import/stack.mrcs"),
        gmm=out("gmm/{half}/neutral.txt"),
        choices=out("choices.yaml"),
    output:
        features=out("features/{half}.npy"),
        info=out("features/{half}.json"),
    params:
        train=picked(TRAIN, *BAND_KEYS, "feature_dtype"),
    log:
        out("logs/features/{half}.log"),
    benchmark:
        out("benchmarks/features/{half}.tsv")
    threads: cpus("features_gather")
    resources:
        **sized("features_gather"),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/features.py"


rule train:
    input:
        features=out("features/{half}.npy"),
        info=out("features/{half}.json"),
        table=posed_half_table,  # import/{half}.csv, or the last refinement round's
        stack=out("import/stack.mrcs"),
        gmm=out("gmm/{half}/neutral.txt"),
        junk=expanded(out("junk/{half}.csv")),
        mask=train_mask,
        asu_mask=optional(config["asu_mask"]),
        choices=out("choices.yaml"),
    output:
        latent=train_run("latent.csv"),
        encoder=train_run("encoder.keras"),
        decoder=train_run("decoder.keras"),
        decoder_meta=train_run("decoder.json"),
        loss=train_run("loss.csv"),
        plot=report(
            train_run("loss.png"),
            caption="../report/train_loss.rst",
            category="Training",
            subcategory="{mode}_{half}",
        ),
        junk=train_run("junk.csv"),
    params:
        train=picked(TRAIN, *RUN_KEYS),
        seed=config["seed"],
        apix=config["apix"],
        symmetry=config["symmetry"],
    log:
        out("logs/train/{mode}_{half}.log"),
    benchmark:
        out("benchmarks/train/{mode}_{half}.tsv")
    threads: cpus("train")
    resources:
        **sized("train", gpu=True),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/train.py"
