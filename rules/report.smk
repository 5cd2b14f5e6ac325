"""The HTML report (`snakemake --report report.html`): its front page, report/workflow.rst.

Every rule wraps what belongs in the report in report(path, caption=...) with a caption
under report/; this file only names the description shown first.
"""


report: "../report/workflow.rst"
