"""Pose refinement rounds (`refine.rounds`, 0 = off): round k refines every particle's
pose against its own GMM decoded by the `refine.mode` run trained on round k-1's poses,
and the last round's poses feed the training runs and every later stage.

Round k of a half writes refine/round_{k}/{half}.csv (the table with the new poses),
refine/round_{k}/{half}/particles.star (the user's STAR, every row in input order) and
the changes (csv, histogram); the runs of the intermediate rounds live in
refine/round_{k}/train/. The last round's STAR is also refine/{half}/particles.star.

Needs from common.smk: config, out(), cpus(), sized(), fail(), HALVES, PARTICLES, ROUNDS,
REFINE_MODE, posed_table(), round_run(), train_mask().
Included before train.smk, whose features and train rules read posed_table().
"""

REFINE = config["refine"]
if ROUNDS and not PARTICLES.endswith(".star"):
    fail(f"refine.rounds: pose refinement writes RELION STAR files; particles is {PARTICLES}")
if REFINE_MODE not in ("amplitude", "position", "all", "rigid"):
    fail(f"refine.mode: expected a training mode, got {REFINE_MODE}")


REFINE_OUTPUTS = [out(f"refine/{half}/particles.star") for half in HALVES] if ROUNDS else []


wildcard_constraints:
    round=r"\d+",


rule refine_features:
    input:
        table=lambda wc: posed_table(wc.half, wc.round),
        stack=out("import/stack.mrcs"),
        gmm=out("gmm/{half}/neutral.txt"),
        choices=out("choices.yaml"),
        junk=out("junk/{half}.csv"),
    output:
        features=out("refine/round_{round}/features_{half}.npy"),
        info=out("refine/round_{round}/features_{half}.json"),
    params:
        train=picked(config["train"], *BAND_KEYS, "feature_dtype"),
    log:
        out("logs/refine_features/{round}_{half}.log"),
    benchmark:
        out("benchmarks/refine_features/{round}_{half}.tsv")
    threads: cpus("refine_features")
    resources:
        **sized("refine_features", gpu=True),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/refine_features.py"


rule refine_train:
    input:
        features=out("refine/round_{round}/features_{half}.npy"),
        info=out("refine/round_{round}/features_{half}.json"),
        table=lambda wc: posed_table(wc.half, wc.round),
        stack=out("import/stack.mrcs"),
        gmm=out("gmm/{half}/neutral.txt"),
        mask=lambda wc: train_mask(wc),
        asu_mask=optional(config["asu_mask"]),
        choices=out("choices.yaml"),
        junk=out("junk/{half}.csv"),
    output:
        latent=round_run("latent.csv"),
        encoder=round_run("encoder.keras"),
        decoder=round_run("decoder.keras"),
        decoder_meta=round_run("decoder.json"),
        loss=round_run("loss.csv"),
        plot=round_run("loss.png"),
        junk=round_run("junk.csv"),
    params:
        train=picked(config["train"], *RUN_KEYS),
        seed=config["seed"],
        apix=config["apix"],
        symmetry=config["symmetry"],
    log:
        out("logs/refine_train/{round}_{mode}_{half}.log"),
    benchmark:
        out("benchmarks/refine_train/{round}_{mode}_{half}.tsv")
    threads: cpus("refine_train")
    resources:
        **sized("refine_train", gpu=True),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/train.py"


rule refine_poses:
    input:
        latent=lambda wc: out(
            f"refine/round_{int(wc.round) - 1}/train/{REFINE_MODE}_{wc.half}/latent.csv"
        ),
        decoder=lambda wc: out(
            f"refine/round_{int(wc.round) - 1}/train/{REFINE_MODE}_{wc.half}/decoder.keras"
        ),
        table=lambda wc: posed_table(wc.half, int(wc.round) - 1),
        stack=out("import/stack.mrcs"),
        meta=out("import/meta.json"),
        particles=PARTICLES,
        choices=out("choices.yaml"),
    output:
        table=out("refine/round_{round}/{half}.csv"),
        star=out("refine/round_{round}/{half}/particles.star"),
        changes=out("refine/round_{round}/{half}/changes.csv"),
        plot=report(
            out("refine/round_{round}/{half}/changes.png"),
            caption="../report/refine_changes.rst",
            category="Pose refinement",
            subcategory="{half}",
            labels={"round": "{round}", "figure": "pose changes"},
        ),
    params:
        refine=REFINE,
        train=picked(config["train"], *BAND_KEYS),
    log:
        out("logs/refine_poses/{round}_{half}.log"),
    benchmark:
        out("benchmarks/refine_poses/{round}_{half}.tsv")
    threads: cpus("refine_poses")
    resources:
        **sized("refine_poses", gpu=True),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/refine_poses.py"


rule refine_final:
    input:
        out(f"refine/round_{ROUNDS}/{{half}}/particles.star"),
    output:
        out("refine/{half}/particles.star"),
    log:
        out("logs/refine_final/{half}.log"),
    threads: cpus("refine_final")
    resources:
        **sized("refine_final"),
    conda:
        "../envs/gmmscape.yaml"
    shell:
        "cp {input} {output} 2> {log}"
