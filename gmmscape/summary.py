"""The answers of a run on one page: {outdir}/summary.html, the report's first section.

A user opens a run to learn how many classes the particles fall into and how many are
in each, whether the even and odd halves agree, what the landscape looks like and which
settings the data chose; the rest of the report and the result folders hold the detail.
The page is self-contained (pictures inline) and links the class maps relative to
itself, so it can be copied or opened from the results folder.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from .io.common import atomic_output


@dataclass(frozen=True)
class RunAnswers:
    """What the page shows of one training run (mode on all particles)."""

    name: str  # e.g. all_all
    classes: Path  # landscape/{run}/classes.csv
    picture: Path  # landscape/{run}/{view}_scatter.png
    verdict: Path | None = None  # reproducibility/{mode}/verdict.txt (split runs)


@dataclass(frozen=True)
class Summary:
    runs: list[RunAnswers]
    choices: Path  # choices.yaml
    extra: dict[str, str] = field(default_factory=dict)  # further lines: label -> text


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def _classes_table(path: Path, page_dir: Path) -> str:
    table = pd.read_csv(path)
    rows = []
    for _, row in table.iterrows():
        cells = [f"<td>{html.escape(str(row['cluster']))}</td>"]
        cells.append(f"<td>{int(row['particles']):,}</td>" if "particles" in row else "<td></td>")
        cells.append(f"<td>{float(row['percent']):.1f}%</td>" if "percent" in row else "<td></td>")
        link = ""
        if isinstance(row.get("map"), str) and row["map"]:
            target = path.with_suffix("") / row["map"]  # classes.csv names files in classes/
            href = os.path.relpath(target, page_dir)
            link = f'<a href="{html.escape(href)}">{html.escape(target.name)}</a>'
        cells.append(f"<td>{link}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = "<tr><th>class</th><th>particles</th><th>share</th><th>map</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _settings_table(path: Path) -> str:
    doc = yaml.safe_load(path.read_text()) or {}
    rows = [
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v['value']))}</td>"
        f"<td>{html.escape(str(v['reason']))}</td></tr>"
        for k, v in (doc.get("settings") or {}).items()
    ]
    head = "<tr><th>setting</th><th>value</th><th>why</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _run_section(run: RunAnswers, page_dir: Path) -> str:
    n = len(pd.read_csv(run.classes))
    parts = [f"<h2>{html.escape(run.name)}: {n} class{'es' if n != 1 else ''}</h2>"]
    if run.verdict is not None:
        text = run.verdict.read_text().strip()
        good = text.lower().startswith("reproducible")
        parts.append(
            f'<p class="{"good" if good else "bad"}"><b>Even/odd:</b> {html.escape(text)}</p>'
        )
    else:
        parts.append("<p><b>Even/odd:</b> not run (<code>split: false</code>).</p>")
    parts.append('<div class="row">' + _classes_table(run.classes, page_dir))
    parts.append(_image(run.picture) + "</div>")
    return "\n".join(parts)


STYLE = """
body { font-family: sans-serif; max-width: 70em; margin: 1em auto; }
table { border-collapse: collapse; margin: 0.5em 1em 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
.row { display: flex; flex-wrap: wrap; align-items: flex-start; }
img { max-width: 32em; }
.good { color: #165a16; } .bad { color: #8a1c1c; }
"""


def render(summary: Summary, page: Path) -> str:
    """The page's HTML, with links relative to where it is written."""
    page_dir = page.parent.resolve()
    body = [_run_section(run, page_dir) for run in summary.runs]
    extra = "".join(
        f"<p><b>{html.escape(k)}:</b> {html.escape(v)}</p>" for k, v in summary.extra.items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>gmmscape: answers</title>"
        f"<style>{STYLE}</style></head><body><h1>Answers</h1>{extra}"
        + "\n".join(body)
        + "<h2>Settings chosen from the data</h2>"
        + _settings_table(summary.choices)
        + "</body></html>\n"
    )


def write_summary(summary: Summary, page: str | os.PathLike) -> None:
    page = Path(page)
    text = render(summary, page)
    with atomic_output(page) as tmp:
        tmp.write_text(text)
