"""The `gmmscape` command itself: its version, from the one place it is written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import gmmscape
from gmmscape import cli

REPO = Path(__file__).resolve().parents[1]


def test_version_prints_the_package_version_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"gmmscape {gmmscape.__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", gmmscape.__version__)


def test_pyproject_reads_the_version_from_the_package():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"]
    assert "version" in pyproject["project"]["dynamic"]
    attr = pyproject["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "gmmscape.__version__"
