"""The HTML report (`snakemake --report report.html`): its front page, report/workflow.rst.

Every rule wraps what belongs in the report in report(path, caption=...) with a caption
under report/; this file only names the description shown first.
"""


report: "../report/workflow.rst"


# The answers on one page, first in the report: classes and populations of every mode's
# run on all particles, the even/odd verdict, the landscape picture, the derived settings.
SUMMARY_VIEW = LANDSCAPE_VIEWS[-1]  # UMAP when it is on


rule summary:
    input:
        choices=out("choices.yaml"),
        classes=[out(f"landscape/{m}_all/classes.csv") for m in config["train"]["modes"]],
        pictures=[
            out(f"landscape/{m}_all/{SUMMARY_VIEW}_scatter.png") for m in config["train"]["modes"]
        ],
        verdicts=[
            out(f"reproducibility/{m}/verdict.txt")
            for m in (config["train"]["modes"] if config["split"] else [])
        ],
    output:
        report(
            out("summary.html"),
            caption="../report/summary.rst",
            category="Answers",
            labels={"figure": "answers"},
        ),
    params:
        modes=config["train"]["modes"],
    log:
        out("logs/summary.log"),
    threads: cpus("summary")
    resources:
        **sized("summary"),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/summary.py"
