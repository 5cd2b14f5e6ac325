"""Per-item work split over jobs and gathered: which job does what, and the gathered
folder and table against those one job writes."""

from __future__ import annotations

import pandas as pd
import pytest

from gmmscape.scatter import gather, items_of, write_part_table


def test_every_item_is_done_by_exactly_one_job_and_the_jobs_stay_balanced():
    for count in (0, 1, 5, 17):
        for parts in (1, 2, 4, 7):
            done = [list(items_of(count, (p, parts))) for p in range(parts)]
            assert sorted(sum(done, [])) == list(range(count))
            sizes = [len(d) for d in done]
            assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="part 2 of 2"):
        items_of(3, (2, 2))


def test_gather_copies_folders_and_files_and_joins_tables_in_item_order(tmp_path):
    """Three items over two jobs (job 0: items 0 and 2) as trajectory folders: the gathered
    folder holds every item's files, the table lists the items as one job would."""
    names = ["pc0", "pc1", "region"]
    parts = []
    for p in range(2):
        folder = tmp_path / f"part_{p}"
        mine = items_of(3, (p, 2))
        for i in mine:
            (folder / names[i] / "gmm").mkdir(parents=True)
            (folder / names[i] / "gmm" / "point_000.txt").write_text(names[i])
        rows = pd.DataFrame(
            {"trajectory": [names[i] for i in mine], "moved": [i * 0.5 for i in mine]}
        )
        write_part_table(rows, mine, folder)
        parts.append(folder)
    table = gather(parts, tmp_path / "all")
    expected = pd.DataFrame({"trajectory": names, "moved": [0.0, 0.5, 1.0]})
    pd.testing.assert_frame_equal(table, expected)
    assert sorted(f.name for f in (tmp_path / "all").iterdir()) == sorted(names)
    for name in names:
        assert (tmp_path / "all" / name / "gmm" / "point_000.txt").read_text() == name
