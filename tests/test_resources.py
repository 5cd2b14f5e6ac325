"""Resource requests from the data's size, the cluster's limits and the particle count."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import starfile

from gmmscape import resources
from gmmscape.resources import Node, Scale


def scale(particles: int, box: int = 128, gaussians: int = 2048, epochs: int = 20) -> Scale:
    return Scale(particles, box, box, gaussians, epochs)


def test_per_particle_cost_passes_through_the_measured_rates():
    """c0 + c1 N b^2 gives back the benchmark's two feature rates (docs/benchmarks.md)."""
    c0, c1 = resources.FEATURES
    assert 1 / (c0 + c1 * 512 * 64**2) == pytest.approx(511.0)
    assert 1 / (c0 + c1 * 2048 * 128**2) == pytest.approx(182.0)


def test_streaming_stages_ask_for_time_in_proportion_to_particles_and_flat_memory():
    small, large = scale(100_000), scale(1_000_000)
    for stage in ("features", "train", "refine_poses"):
        t_small, t_large = (resources.runtime(stage, s, None) for s in (small, large))
        assert 8.5 < t_large / t_small <= 10, stage  # less the fixed start-up
        assert resources.mem_mb(stage, small, None) == resources.mem_mb(stage, large, None)
    # 1,000,000 particles x 20 epochs at 125 particles/s, then the scoring against 32
    # candidates (4 epochs' worth at 1/8 of a visit each), with the safety factor; a refit
    # cycle adds one epoch of the decoder and the scoring again
    expected = 3 * (300 + 1_000_000 * (20 + 32 / 8) / 125.0) / 60
    assert resources.runtime("train", large, None) == pytest.approx(expected, rel=0.01)
    refit = dataclasses.replace(large, refit=1)
    expected = 3 * (300 + 1_000_000 * (20 + 2 * 32 / 8 + 1) / 125.0) / 60
    assert resources.runtime("train", refit, None) == pytest.approx(expected, rel=0.01)


def test_requests_grow_with_each_attempt():
    s = scale(10_000)
    assert resources.runtime("train", s, None, 2) == 2 * resources.runtime("train", s, None, 1)
    assert resources.mem_mb("train", s, None, 2) > resources.mem_mb("train", s, None, 1)


def test_requests_stay_within_the_largest_node_and_time_limit():
    node = Node(cpus=2, mem_mb=1500, minutes=60)
    s = scale(1_000_000)
    assert resources.threads("gmm_level", node) == 2
    assert resources.threads("gmm_level", None) == resources.STAGES["gmm_level"].threads == 4
    assert resources.mem_mb("train", s, node) == 1500
    assert resources.runtime("train", s, node) == 60
    assert resources.runtime("train", s, None) > 60


@pytest.mark.parametrize(
    ("text", "node"),
    [
        ("2 20000 infinite\n", Node(2, 20000, None)),
        ("4 64000 2-00:00:00\n48+ 192000 12:00:00\n", Node(48, 192000, 2880)),
        ("8 1000 30:00\n", Node(8, 1000, 30)),
        ("", None),
    ],
)
def test_sinfo_output_gives_the_largest_node(text, node):
    assert resources.parse_sinfo(text) == node


def test_particle_files_are_counted_without_parsing(tmp_path):
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnImagePixelSize": [1.0]})
    particles = pd.DataFrame(
        {"rlnImageName": [f"{k + 1}@s.mrcs" for k in range(7)], "rlnOpticsGroup": [1] * 7}
    )
    starfile.write({"optics": optics, "particles": particles}, tmp_path / "p.star")
    starfile.write(particles, tmp_path / "p30.star")  # RELION 3.0: one block
    np.save(tmp_path / "p.npy", np.zeros(5, dtype=[("uid", "<u8")]))
    (tmp_path / "p.npy").rename(tmp_path / "p.cs")
    (tmp_path / "p.lst").write_text("#LST\n0\ts.hdf\n1\ts.hdf\n")
    assert resources.count_particles(tmp_path / "p.star") == 7
    assert resources.count_particles(tmp_path / "p30.star") == 7
    assert resources.count_particles(tmp_path / "p.cs") == 5
    assert resources.count_particles(tmp_path / "p.lst") == 2
    assert resources.count_particles(tmp_path / "missing.star") is None
