"""The pre-flight convention check on simulated data with each usual mistake planted.

    .venv/bin/python bench/validate_preflight.py [--box 64] [--apix 2.5] [--snr 0.1]

Simulates the composition system (20 states x --per-state particles), imports it, and
runs gmmscape.preflight.check_conventions on --particles of them as imported and with
each mistake planted in the imported table or stack: rotation matrices transposed,
shifts negated, contrast inverted, the stack phase-flipped twice (the raw images taken
as flipped), and the map mirrored (wrong hand). Prints a Markdown table of the mean FSC
of every reading with the map, the verdict and the wall time of each check.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--box", type=int, default=64)
    parser.add_argument("--apix", type=float, default=2.5)
    parser.add_argument("--snr", type=float, default=0.1)
    parser.add_argument("--per-state", type=int, default=100)
    parser.add_argument("--particles", type=int, default=2000)
    args = parser.parse_args()

    from gmmscape.images import cropped_source
    from gmmscape.importer import import_particles, load_table
    from gmmscape.io import read_map
    from gmmscape.io.mrc import MrcStack
    from gmmscape.preflight import HYPOTHESES, check_conventions, map_at_box
    from gmmscape.simulate import simulate
    from gmmscape.table import ROTATION_COLUMNS

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = simulate(
            "composition", root / "sim", per_state=args.per_state, box=args.box,
            apix=args.apix, snr=args.snr, seed=1,
        )  # fmt: skip
        imported = import_particles(paths["particles"], root / "import")
        table = load_table(imported.table)
        source = cropped_source(imported.stack, imported.meta)
        reference = map_at_box(read_map(paths["consensus"])[0], args.box)
        raw = MrcStack(paths["stack"])
        transposed = table.copy()
        R = table[ROTATION_COLUMNS].to_numpy().reshape(-1, 3, 3)
        transposed[ROTATION_COLUMNS] = R.transpose(0, 2, 1).reshape(-1, 9)
        negated = table.copy()
        negated[["shift_x", "shift_y"]] *= -1
        cases = {
            "none": (table, source, reference),
            "transposed rotations": (transposed, source, reference),
            "negated shifts": (negated, source, reference),
            "inverted contrast": (
                table, dataclasses.replace(source, read=lambda r: -source.read(r)), reference
            ),
            "CTF flipped twice": (
                table,
                dataclasses.replace(source, read=lambda r: raw.read(r["source_index"].to_numpy())),
                reference,
            ),
            "wrong hand": (table, source, np.roll(reference[::-1], 1, axis=0)),
        }  # fmt: skip
        names = [h.name for h in HYPOTHESES]
        print(f"box {args.box}, {args.apix} A/px, SNR {args.snr}, {args.particles} particles\n")
        print("| planted | " + " | ".join(h.label for h in HYPOTHESES) + " | verdict | s |")
        print("|" + " --- |" * (len(names) + 3))
        for planted, (t, s, ref) in cases.items():
            start = time.perf_counter()
            result = check_conventions(t, s, ref, meta=imported.meta, n_particles=args.particles)
            elapsed = time.perf_counter() - start
            scores = " | ".join(f"{result.scores[n]:+.2f}" for n in names)
            print(f"| {planted} | {scores} | {result.verdict} | {elapsed:.1f} |")
        lo, hi = result.resolution
        print(f"\nband {lo:.1f}-{hi:.1f} A")


if __name__ == "__main__":
    main()
