"""Validation: junk particles found at the demo's size (docs/validation.md).

Simulates the demo data set (the motion-plus-composition system, 20 states x
``--per-state``, box 64 at 4 A/pixel, SNR 0.1), imports it at the demo's training box,
replaces 5 % of the images by junk of four kinds (gmmscape.junk.add_simulated_junk)
and prints, per ``junk.threshold``, the fraction of junk flagged (all and per kind)
and of good particles flagged, with the FRC band of the demo's training.

    .venv/bin/python bench/validate_junk.py [--per-state 200] [--thresholds 3 4 5]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import yaml

from gmmscape import phantoms
from gmmscape.importer import import_particles
from gmmscape.junk import add_simulated_junk, find_junk, flag_junk, junk_recovery
from gmmscape.simulate import simulate
from gmmscape.streaming import load_particles

CONFIG = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-state", type=int, default=CONFIG["demo"]["per_state"])
    parser.add_argument("--thresholds", type=float, nargs="+", default=[3.0, 3.5, 4.0, 5.0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    demo = CONFIG["demo"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = simulate(
            phantoms.build_system(demo["system"]),
            root / "sim",
            per_state=args.per_state,
            box=demo["box"],
            apix=demo["apix"],
            snr=demo["snr"],
            seed=args.seed,
        )
        import_particles(paths["particles"], root / "import", box=CONFIG["box"])
        kinds = add_simulated_junk(root / "import/stack.mrcs", 0.05, args.seed)
        particles = load_particles(root / "import/particles.csv", root / "import/stack.mrcs")
        neutral = phantoms.build_system(demo["system"]).models.mean(axis=0)
        band = {k: CONFIG["train"][k] for k in ("res_lo", "res_hi")}
        start = time.perf_counter()
        table = find_junk(neutral, particles, root / "junk.csv", **band)
        seconds = time.perf_counter() - start
    print(f"{particles.n} particles ({len(kinds)} junk), box {particles.box}, {seconds:.1f} s")
    print("threshold  junk   noise  inverted  zero   blob   good")
    for threshold in args.thresholds:
        table["reason"] = flag_junk(table, threshold)
        s = junk_recovery(table, kinds)
        print(
            f"{threshold:9.1f}  {s['junk']:.3f}  {s['noise']:.3f}  {s['inverted']:.3f}     "
            f"{s['zero']:.3f}  {s['blob']:.3f}  {s['good']:.4f}"
        )


if __name__ == "__main__":
    main()
