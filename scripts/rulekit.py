"""What every rule script does around its library call; import it before gmmscape.

Importing it
- puts the checkout that holds this workflow first on sys.path, so a job runs the
  library of its own workflow, also in the conda environment of envs/gmmscape.yaml
  (which holds only the dependencies);
- sends the script's output (print, logging, C libraries) to the rule's log file,
  before TensorFlow is imported, so that its start-up messages land there too, and the
  library's INFO lines (gmmscape.*: training epochs, passes over the particles) also to
  the terminal.

`run(main)` first deletes the hidden temporary files a killed run of the same job left
beside its outputs (gmmscape.io.common.atomic_output), then calls main(snakemake,
progress): progress lines go to the log and to the terminal, a gmmscape.errors.InputError
ends the job with its one-line message instead of a traceback, and any other exception
with one line naming the job, its input and its log (the traceback goes to the log).
"""

from __future__ import annotations

import io
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SNAKEMAKE: Any = sys.modules["__main__"].snakemake  # set by snakemake's script preamble
_TERMINAL = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
_LOG = open(SNAKEMAKE.log[0], "w")  # open for the whole job
for _stream in (sys.stdout, sys.stderr):
    _stream.flush()
    os.dup2(_LOG.fileno(), _stream.fileno())
    if isinstance(_stream, io.TextIOWrapper):  # as Python's own sys.stdout and sys.stderr
        _stream.reconfigure(line_buffering=True)
logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
# the library's progress (per-epoch training lines, feature and GMM passes) on the terminal too
_ON_TERMINAL = logging.StreamHandler(_TERMINAL)
_ON_TERMINAL.addFilter(lambda record: record.name.startswith("gmmscape"))
logging.getLogger().addHandler(_ON_TERMINAL)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gmmscape.errors import InputError  # noqa: E402
from gmmscape.io.mrc import read_map  # noqa: E402
from gmmscape.levels import level_schedule  # noqa: E402

Progress = Callable[[str], None]


def progress(message: str) -> None:
    """One progress line, in the log and on the terminal."""
    print(message, file=sys.stderr)
    print(message, file=_TERMINAL)


def remove_orphans(outputs: list[str]) -> None:
    """Hidden temporary files (.{name}.*.tmp) of this job's outputs left by a killed run."""
    for output in outputs:
        path = Path(output)
        for orphan in path.parent.glob(f".{path.name}.*.tmp"):
            progress(f"removing {orphan}, left by an interrupted run")
            orphan.unlink(missing_ok=True)


def run(main: Callable[[Any, Progress], None]) -> None:
    """Call main(snakemake, progress); an InputError becomes its message and exit code 1,
    any other exception one line on the terminal and its traceback in the log."""
    remove_orphans(list(SNAKEMAKE.output))
    job = os.environ.get("SLURM_JOB_ID")
    where = f", SLURM_JOB_ID={job}" if job else ""
    print(f"rule {SNAKEMAKE.rule} on {os.uname().nodename}{where}", file=sys.stderr)
    try:
        if int(getattr(SNAKEMAKE.resources, "gpu", 0) or 0) > 0:
            from gmmscape.device import check_gpus, describe

            check_gpus(int(SNAKEMAKE.resources.gpu))
            progress(describe())
        main(SNAKEMAKE, progress)
        if "tensorflow" in sys.modules:
            from gmmscape.device import describe

            print(describe(), file=sys.stderr)
    except InputError as err:
        progress(f"error in rule {SNAKEMAKE.rule}: {err}")
        sys.exit(1)
    except Exception as err:
        traceback.print_exc()
        inputs = ", ".join(SNAKEMAKE.input) or "none"
        message = f"{type(err).__name__}: {err}".splitlines()[0]
        progress(
            f"error in rule {SNAKEMAKE.rule}: unexpected {message} (input: {inputs}); "
            f"traceback in {SNAKEMAKE.log[0]}"
        )
        sys.exit(1)


def load_map(path: str, apix: float | None) -> tuple[np.ndarray, float]:
    """A map and its pixel size: the config's `apix` override when set, else the header's."""
    return read_map(path, apix)


def gmm_schedule(gmm: dict) -> list[tuple[int, float]]:
    """(Gaussians, resolution) of every level for the config's `gmm` section."""
    return level_schedule(
        gmm["start_n"], gmm["target_n"], gmm["start_resolution"], gmm["target_resolution"]
    )


def choices(smk: Any) -> dict:
    """The run's settings derived from the data or set in the config (choices.yaml)."""
    from gmmscape.choices import load_choices

    return load_choices(smk.input.choices)


def with_choices(smk: Any, section: str, values: dict) -> dict:
    """A config section with its derivable keys replaced by the run's choices."""
    prefix = f"{section}."
    chosen = {k[len(prefix) :]: v for k, v in choices(smk).items() if k.startswith(prefix)}
    return {**values, **chosen}
