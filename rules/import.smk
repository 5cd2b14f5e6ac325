"""Settings derived from the data, the import (RELION .star or EMAN2 .lst, chosen by
the file) and the even/odd split."""


rule choose_settings:
    input:
        particles=PARTICLES,
        map=MAP,
        mask=optional(MASK),
    output:
        out("choices.yaml"),
    params:
        settings={key: config_value(key) for key in CHOICE_KEYS},
        apix=config["apix"],
        seed=config["seed"],
        phase_flipped=config["phase_flipped"],
    log:
        out("logs/choose_settings.log"),
    benchmark:
        out("benchmarks/choose_settings.tsv")
    threads: 2
    resources:
        mem_mb=4000,
        runtime=runtime(60),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/choose_settings.py"


rule import_particles:
    input:
        particles=PARTICLES,
        map=MAP,
        choices=out("choices.yaml"),
    output:
        table=out("import/particles.csv"),
        stack=out("import/stack.mrcs"),
        meta=out("import/meta.json"),
        junk=out("import/junk.csv"),
    params:
        apix=config["apix"],
        seed=config["seed"],
        phase_flipped=config["phase_flipped"],
        split=config["split"],
    log:
        out("logs/import_particles.log"),
    benchmark:
        out("benchmarks/import_particles.tsv")
    threads: 2
    resources:
        mem_mb=4000,
        runtime=runtime(60),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/import_particles.py"


rule split_halves:
    input:
        out("import/particles.csv"),
    output:
        all=out("import/all.csv"),
        even=out("import/even.csv"),
        odd=out("import/odd.csv"),
    log:
        out("logs/split_halves.log"),
    benchmark:
        out("benchmarks/split_halves.tsv")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=runtime(10),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/split_halves.py"
