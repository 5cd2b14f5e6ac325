"""The demo data set, simulated when `particles: demo` (gmmscape.simulate)."""


rule simulate_demo:
    output:
        particles=out("demo/particles.star"),
        stack=out("demo/particles.mrcs"),
        consensus=out("demo/consensus.mrc"),
        mask=out("demo/mask.mrc"),
        moving_mask=out("demo/moving_mask.mrc"),
        ground_truth=out("demo/ground_truth.csv"),
        info=out("demo/simulation.json"),
        states=directory(out("demo/states")),
        truth_gmm=directory(out("demo/truth_gmm")),
    params:
        system=config["demo"]["system"],
        per_state=config["demo"]["per_state"],
        box=config["demo"]["box"],
        apix=config["demo"]["apix"],
        snr=config["demo"]["snr"],
        seed=config["seed"],
    log:
        out("logs/simulate_demo.log"),
    benchmark:
        out("benchmarks/simulate_demo.tsv")
    threads: cpus("simulate_demo")
    resources:
        **sized("simulate_demo"),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/simulate_demo.py"
