"""``gmmscape run``: the workflow through snakemake, with every failure as one line.

Snakemake shows a missing config file or a YAML syntax error as a traceback, a failed
job as a block of its own internals, and a stack of workflow frames after each of the
workflow's own one-line messages. The wrapper checks the config files first (file and
line of a syntax error), passes snakemake's progress through with Python tracebacks
and frames left out (they stay in the job logs and .snakemake/log/), and ends a failed
run with one line per failed job naming the job, its input and its log. It also adds
``--rerun-incomplete``, so the same command continues a killed run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import yaml

from .errors import InputError

WORKFLOW = Path(__file__).resolve().parents[1] / "Snakefile"  # this checkout's workflow
_NOISE = re.compile(
    r'^\s+File ".*", line \d+|^(WorkflowError|CalledProcessError) in file ".*", line \d+:$'
    r"|^RuleException:$|^Command 'set -euo pipefail;"
)
_CORES = ("--cores", "-c", "--jobs", "-j", "--profile", "--dry-run", "--dryrun", "-n", "--unlock")


def check_configfile(path: str) -> None:
    """A config file must exist and be a YAML mapping; a syntax error names file and line."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"--configfile: file not found: {path}")
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise InputError(f"{path}{where}: YAML syntax error: {err.problem or err}") from None
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not a YAML file ({err})") from None
    if data is not None and not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of config keys, got a {type(data).__name__}")


def snakemake_command(configfiles: list[str], args: list[str]) -> list[str]:
    """The snakemake command line: this checkout's Snakefile unless the directory or the
    arguments name one, all cores unless told, and reruns of what a kill left incomplete."""
    beside = Path(sys.executable).with_name("snakemake")
    command = [str(beside) if beside.is_file() else shutil.which("snakemake") or "snakemake"]
    named = any(a in ("-s", "--snakefile") or a.startswith("--snakefile=") for a in args)
    if not named and not Path("Snakefile").is_file() and WORKFLOW.is_file():
        command += ["--snakefile", str(WORKFLOW)]
    if not any(a.split("=")[0] in _CORES or re.fullmatch(r"-[cj]\d+", a) for a in args):
        command += ["--cores", "all"]
    command += ["--rerun-incomplete", *args]
    return command + (["--configfile", *configfiles] if configfiles else [])


def shown(lines: Iterable[str]) -> Iterator[str]:
    """Snakemake's output without Python tracebacks and workflow frames."""
    in_traceback = False
    for line in lines:
        if line.startswith("Traceback (most recent call last):"):
            in_traceback = True
            continue
        if in_traceback:
            in_traceback = line[:1].isspace() or not line.strip()
            continue  # the frames, then the exception line that ends them
        if not _NOISE.match(line):
            yield line


def _blocks(output: str, heading: str) -> Iterator[tuple[str, dict[str, str]]]:
    """(rule, {field: value}) of each block of snakemake's output opened by `heading`
    ("rule NAME:" when a job starts, "Error in rule NAME:" when it fails)."""
    for block in re.split(rf"^{heading}", output, flags=re.M)[1:]:
        name, _, rest = block.partition(":")
        fields = {}
        for line in rest.splitlines()[1:]:
            match = re.match(r"^\s+(\w[\w-]*): (.*)$", line)
            if not match:
                break
            fields[match.group(1)] = match.group(2)
        yield name.strip(), fields


def failed_jobs(output: str) -> list[dict[str, str]]:
    """Rule, wildcards, input and log of each failed job in snakemake's output."""
    wildcards = {
        fields.get("jobid"): fields.get("wildcards", "")
        for _, fields in _blocks(output, r"(?:local)?rule ")
    }
    jobs = []
    for rule, fields in _blocks(output, "Error in rule "):
        log = fields.get("log", "").replace(" (check log file(s) for error details)", "")
        jobs.append(
            {
                "rule": rule,
                "wildcards": wildcards.get(fields.get("jobid"), ""),
                "input": fields.get("input", "none"),
                "log": log,
            }
        )
    return jobs


def summary(output: str, code: int, configfiles: list[str]) -> list[str]:
    """The closing line(s) of a failed run."""
    if code == 0:
        return []
    lines = []
    for job in failed_jobs(output):
        wildcards = f" ({job['wildcards']})" if job["wildcards"] else ""
        log = job["log"] or "none (see .snakemake/log/)"
        lines.append(
            f"gmmscape run: job {job['rule']}{wildcards} failed; input: {job['input']}; log: {log}"
        )
    if "Directory cannot be locked" in output:
        again = " ".join(["--configfile", *configfiles]) if configfiles else ""
        lines.append(
            "gmmscape run: this directory is locked by a snakemake that is running here or "
            f"was killed; if none is running, `gmmscape run --unlock {again}`".rstrip()
            + " frees it"
        )
    if not lines:
        match = re.search(r"^Complete log\(s\): (.*)$", output, re.M)
        where = match.group(1) if match else ".snakemake/log/"
        lines.append(f"gmmscape run: snakemake stopped (exit {code}); see above and {where}")
    return lines


def run_workflow(configfiles: list[str], args: list[str]) -> int:
    """Run snakemake, echoing its output without tracebacks; returns its exit code."""
    for path in configfiles:
        check_configfile(path)
    command = snakemake_command(configfiles, args)
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    seen: list[str] = []

    def lines() -> Iterator[str]:
        for line in process.stdout or ():  # a pipe: stdout=PIPE
            seen.append(line)
            yield line

    try:
        for line in shown(lines()):
            sys.stderr.write(line)
        code = process.wait()
    except KeyboardInterrupt:  # snakemake got the same signal and stops its jobs
        code = process.wait()
    for line in summary("".join(seen), code, configfiles):
        print(line, file=sys.stderr)
    return code
