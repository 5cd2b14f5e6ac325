"""Benchmark: the explorer page of a 100,000-particle run with N = 2048 Gaussians.

A synthetic run stands in for a trained one: 4D latents (four clusters), a stand-in UMAP
view, and an untrained decoder of the default architecture (3 x 512, same cost as a
trained one) over a random N-Gaussian neutral model, for each training mode (the page
carries only the outputs a mode frees). Reported per mode: the page's size, the time to
write it, the time to first paint in headless chromium (navigation start to the end of
the first full draw of landscape and model, as the page measures it), the time of one
decode update (decode + 3D draw) and of one landscape redraw.

    .venv/bin/python bench/bench_explorer.py [--n 100000] [--gaussians 2048]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from gmmscape.decode import Decoder
from gmmscape.explorer import ExplorerInputs, write_explorer
from gmmscape.networks import GmmSpace, build_decoder

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def synthetic_inputs(n: int, rng: np.random.Generator) -> ExplorerInputs:
    label = rng.integers(0, 4, n)
    z = 2.5 * np.eye(4)[label] + 0.3 * rng.standard_normal((n, 4))
    frame = pd.DataFrame(z, columns=[f"z{k}" for k in range(4)])
    frame.insert(0, "index", np.arange(n))
    frame["umap0"], frame["umap1"] = np.tanh(z[:, 0]) * 5 + z[:, 1], np.sin(z[:, 2]) + z[:, 3]
    frame["cluster"] = label
    line = np.linspace(-1, 1, 7)[:, None] * np.array([[1.0, 0.5, 0.0, 0.0]])
    return ExplorerInputs(run="bench", landscape=frame, trajectories={"pc1": line})


def synthetic_decoder(n_gaussians: int, mode: str, rng: np.random.Generator) -> Decoder:
    neutral = np.column_stack(
        [rng.uniform(-0.3, 0.3, (n_gaussians, 3)), rng.uniform(0.5, 1, n_gaussians),
         np.full(n_gaussians, 0.02)]
    )  # fmt: skip
    space = GmmSpace.build(neutral, mode)
    return Decoder(build_decoder(space, 4), space, 4, 128, 2.0, mode)


def measure(path: Path) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(path.as_uri())
        page.wait_for_function("window.explorer && explorer.stats().firstPaintMs !== null")
        first = page.evaluate("explorer.stats().firstPaintMs")
        page.evaluate("explorer.benchDecode(10)")  # JIT warm-up
        decode = page.evaluate("explorer.benchDecode(50)")
        redraw = []
        for k in range(5):
            page.select_option("#colour", "z:1" if k % 2 else "class")
            redraw.append(page.evaluate("explorer.stats().drawMs"))
        browser.close()
    return {"first_paint_ms": first, "decode_ms": decode, "redraw_ms": float(np.median(redraw))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--gaussians", type=int, default=2048)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    inputs = synthetic_inputs(args.n, rng)
    print("| mode | page size | write | first paint | decode update | landscape redraw |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as folder:
        for mode in ("all", "position", "amplitude"):
            decoder = synthetic_decoder(args.gaussians, mode, rng)
            path = Path(folder) / f"{mode}.html"
            start = time.perf_counter()
            write_explorer(path, inputs, decoder)
            write = time.perf_counter() - start
            m = measure(path)
            print(
                f"| {mode} | {path.stat().st_size / 1e6:.1f} MB | {write:.1f} s "
                f"| {m['first_paint_ms'] / 1000:.2f} s | {m['decode_ms']:.1f} ms "
                f"| {m['redraw_ms']:.0f} ms |"
            )


if __name__ == "__main__":
    main()
