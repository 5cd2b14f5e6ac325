"""Benchmark: import + phase flip + Fourier crop of 20,000 box-256 particles to box 128.

Peak memory (ru_maxrss of the process that runs the import) must stay under 1 GB: the
import streams the stack in bounded steps instead of loading it.

    .venv/bin/pytest -q -s -m bench bench/bench_import.py
    .venv/bin/python bench/bench_import.py   (the same, without pytest)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gmmscape.geometry import matrix_to_relion, random_rotations
from gmmscape.io import write_stack, write_star

N, BOX, CROP, APIX = 20_000, 256, 128, 1.0
LIMIT_MB = 1024

_CHILD = """
import json, resource, sys, time
from gmmscape.importer import import_particles
start = time.perf_counter()
import_particles(sys.argv[1], sys.argv[2], box=int(sys.argv[3]))
seconds = time.perf_counter() - start
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
print(json.dumps({"seconds": seconds, "peak_mb": peak_mb}))
"""


def make_input(folder: Path, n: int, box: int, chunk: int = 500) -> Path:
    """A noise stack written in chunks (never whole in memory) and a RELION 3.1 STAR file."""
    rng = np.random.default_rng(0)
    chunks = (
        rng.standard_normal((min(chunk, n - i), box, box), dtype=np.float32)
        for i in range(0, n, chunk)
    )
    write_stack(folder / "particles.mrcs", n, box, APIX, chunks)
    angles = matrix_to_relion(random_rotations(n, rng))
    defocus = rng.uniform(8000, 25000, n)
    particles = pd.DataFrame(
        {
            "rlnImageName": [f"{i + 1:06d}@particles.mrcs" for i in range(n)],
            "rlnAngleRot": angles[:, 0],
            "rlnAngleTilt": angles[:, 1],
            "rlnAnglePsi": angles[:, 2],
            "rlnOriginXAngst": rng.uniform(-5, 5, n),
            "rlnOriginYAngst": rng.uniform(-5, 5, n),
            "rlnDefocusU": defocus,
            "rlnDefocusV": defocus - 300.0,
            "rlnDefocusAngle": rng.uniform(-180, 180, n),
            "rlnOpticsGroup": 1,
        }
    )
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": [1],
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnVoltage": [300.0],
            "rlnSphericalAberration": [2.7],
            "rlnAmplitudeContrast": [0.1],
            "rlnImagePixelSize": [APIX],
            "rlnImageSize": [box],
            "rlnImageDimensionality": [2],
        }
    )
    write_star(folder / "particles.star", optics, particles)
    return folder / "particles.star"


def run(folder: Path, n: int = N, box: int = BOX, crop: int = CROP) -> dict:
    """Build the input, import it in a fresh process, return timings and that process's peak RSS."""
    start = time.perf_counter()
    star = make_input(folder, n, box)
    generate = time.perf_counter() - start
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(star), str(folder / "import"), str(crop)],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    input_gb = (folder / "particles.mrcs").stat().st_size / 1e9
    output_gb = (folder / "import" / "stack.mrcs").stat().st_size / 1e9
    result |= {"n": n, "box": box, "crop": crop, "input_gb": input_gb, "output_gb": output_gb}
    return result | {"generate_seconds": generate, "particles_per_s": n / result["seconds"]}


@pytest.mark.bench
def test_import_peak_memory_under_1gb():
    folder = Path(tempfile.mkdtemp(prefix="gmmscape-bench-import-"))
    try:
        result = run(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print("\n" + json.dumps(result, indent=1))
    assert result["peak_mb"] < LIMIT_MB


if __name__ == "__main__":
    test_import_peak_memory_under_1gb()
