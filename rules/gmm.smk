"""The neutral GMM, coarse to fine, per half (all; even and odd with `split: true`).

Every doubling level is its own output, so an interrupted build resumes from the
last finished level.
"""


rule gmm_level:
    input:
        map=gmm_map,
        mask=optional(MASK),
        previous=previous_level,
        choices=out("choices.yaml"),
        preflight=optional(PREFLIGHT),
    output:
        out("gmm/{half}/level_{level}.txt"),
    params:
        gmm=config["gmm"],
        seed=gmm_seed,
        apix=config["apix"],
    log:
        out("logs/gmm_level/{half}_level_{level}.log"),
    benchmark:
        out("benchmarks/gmm_level/{half}_level_{level}.tsv")
    threads: cpus("gmm_level")
    resources:
        **sized("gmm_level", gpu=True),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/gmm_level.py"


rule gmm_neutral:
    input:
        lambda wildcards: level_files(wildcards)[-1],
    output:
        text=out("gmm/{half}/neutral.txt"),
        pdb=out("gmm/{half}/neutral.pdb"),
        density=out("gmm/{half}/neutral.mrc"),
    log:
        out("logs/gmm_neutral/{half}.log"),
    benchmark:
        out("benchmarks/gmm_neutral/{half}.tsv")
    threads: cpus("gmm_neutral")
    resources:
        **sized("gmm_neutral"),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/gmm_neutral.py"


rule gmm_evaluate:
    input:
        models=level_files,
        map=gmm_map,
        choices=out("choices.yaml"),
    output:
        table=out("gmm/{half}/fsc.csv"),
        plot=report(
            out("gmm/{half}/fsc.png"),
            caption="../report/gmm_fsc.rst",
            category="Neutral GMM",
            subcategory="{half}",
        ),
    params:
        gmm=config["gmm"],
        apix=config["apix"],
    log:
        out("logs/gmm_evaluate/{half}.log"),
    benchmark:
        out("benchmarks/gmm_evaluate/{half}.tsv")
    threads: cpus("gmm_evaluate")
    resources:
        **sized("gmm_evaluate"),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/gmm_evaluate.py"
