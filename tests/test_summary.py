"""The answers page: classes, verdict, picture and settings of a run on one page."""

from __future__ import annotations

import base64
import re

import pandas as pd
import yaml

from gmmscape.summary import RunAnswers, Summary, write_summary

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def run_folder(root, name, rows, verdict=None):
    land = root / "landscape" / name
    (land / "classes").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(land / "classes.csv", index=False)
    (land / "umap_scatter.png").write_bytes(PNG)
    path = None
    if verdict:
        path = root / "reproducibility" / name.split("_")[0] / "verdict.txt"
        path.parent.mkdir(parents=True)
        path.write_text(verdict + "\n")
    return RunAnswers(name, land / "classes.csv", land / "umap_scatter.png", path)


def test_page_holds_the_answers_with_links_relative_to_itself(tmp_path):
    rows = {
        "cluster": [0, 1],
        "particles": [3000, 1000],
        "map": ["class_00.mrc", "class_01.mrc"],
        "percent": [75.0, 25.0],
    }
    runs = [
        run_folder(tmp_path, "all_all", rows, "Reproducible: both halves have 2 classes."),
        run_folder(tmp_path, "amplitude_all", {k: v[:1] for k, v in rows.items()}),
    ]
    choices = tmp_path / "choices.yaml"
    settings = {"train.res_hi": {"value": 8.0, "reason": "half maps' FSC"}}
    choices.write_text(yaml.safe_dump({"settings": settings}))
    page = tmp_path / "summary.html"
    write_summary(Summary(runs, choices), page)
    text = page.read_text()
    assert "all_all: 2 classes" in text and "amplitude_all: 1 class<" in text
    assert "3,000" in text and "75.0%" in text and "25.0%" in text
    assert 'href="landscape/all_all/classes/class_01.mrc"' in text
    assert "Reproducible: both halves have 2 classes." in text
    assert "not run (<code>split: false</code>)" in text
    assert len(re.findall(r'src="data:image/png;base64,', text)) == 2
    assert "train.res_hi" in text and "half maps&#x27; FSC" in text
    assert not list(tmp_path.glob(".summary.html.*"))  # written atomically
