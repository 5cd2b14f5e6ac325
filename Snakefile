"""gmmscape: conformational and compositional landscapes of cryo-EM particles (e2gmm).

    snakemake --cores N [--configfile my.yaml] [--profile profiles/slurm]

config.yaml beside this file holds every default; a --configfile needs only the keys
it changes. See README.md for the stages and the outputs under `outdir`.
"""

import os

from snakemake.utils import min_version

min_version("8.10")


configfile: os.path.join(workflow.basedir, "config.yaml")


include: "rules/common.smk"
include: "rules/simulate.smk"
include: "rules/import.smk"
include: "rules/symmetry.smk"
include: "rules/gmm.smk"
include: "rules/refine.smk"
include: "rules/train.smk"
include: "rules/landscape.smk"
include: "rules/report.smk"


localrules:
    all,
    split_halves,


rule all:
    default_target: True
    input:
        final_outputs(),
        LANDSCAPE_OUTPUTS,
        REFINE_OUTPUTS,
        out("summary.html"),
