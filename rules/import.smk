"""Settings derived from the data, the import (RELION .star, EMAN2 .lst or cryoSPARC .cs,
chosen by the file), the pre-flight convention check and the even/odd split."""

# The pre-flight convention check (gmmscape.preflight) that the GMM and the training
# wait for; `preflight: false` skips it.
PREFLIGHT = out("import/preflight.json") if config["preflight"] else None


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
        particles_dir=config["particles_dir"],
        conventions=config["conventions"],
        measure_snr=config["train"]["frc_weights"] == "snr",
    log:
        out("logs/choose_settings.log"),
    benchmark:
        out("benchmarks/choose_settings.tsv")
    threads: cpus("choose_settings")
    resources:
        **sized("choose_settings"),
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
        particles_dir=config["particles_dir"],
        conventions=config["conventions"],
    log:
        out("logs/import_particles.log"),
    benchmark:
        out("benchmarks/import_particles.tsv")
    threads: cpus("import_particles")
    resources:
        **sized("import_particles"),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/import_particles.py"


rule split_halves:
    input:
        out("import/particles.csv"),
        preflight=optional(PREFLIGHT),
    output:
        all=out("import/all.csv"),
        even=out("import/even.csv"),
        odd=out("import/odd.csv"),
    log:
        out("logs/split_halves.log"),
    benchmark:
        out("benchmarks/split_halves.tsv")
    threads: cpus("split_halves")
    resources:
        **sized("split_halves"),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/split_halves.py"


rule preflight:
    input:
        table=out("import/particles.csv"),
        stack=out("import/stack.mrcs"),
        meta=out("import/meta.json"),
        map=MAP,
    output:
        json=out("import/preflight.json"),
        figure=report(
            out("import/preflight.png"),
            caption="../report/preflight.rst",
            category="Import",
            labels={"figure": "pre-flight convention check"},
        ),
    params:
        seed=config["seed"],
        apix=config["apix"],
    log:
        out("logs/preflight.log"),
    benchmark:
        out("benchmarks/preflight.tsv")
    threads: cpus("preflight")
    resources:
        **sized("preflight"),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/preflight.py"
