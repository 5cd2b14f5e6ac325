"""Validation: how much better can a class map be than the consensus map? (docs/validation.md)

Simulates the motion-plus-composition system with the extra density's amplitude scaled by
each ``--extra-scale``, takes the TRUE compositions as classes (so classification errors
play no part) and reports, per composition:
- (a) where the class map's FSC against its true maps (mean over the states) crosses 0.5,
  and where the consensus map's does; and the mean FSC over the well-resolved shells
  (to half the consensus half maps' 0.5 shell), the check the tests assert;
- (b) the FSC between the class maps of the even and of the odd particles at the
  resolution where the consensus half maps reach 0.5, and the FSC that the two maps' own
  half maps predict there for one structure (gmmscape.reproducibility.expected_fsc), the
  check the verdict uses.

    .venv/bin/python bench/validate_class_maps.py [--extra-scale 1 4] [--per-state 200]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from gmmscape import phantoms
from gmmscape.fsc import fsc_table, resolution_at
from gmmscape.images import ImageSource, cropped_source
from gmmscape.importer import import_particles, load_meta, load_table
from gmmscape.projection import density
from gmmscape.reconstruct import reconstruct_with_halves
from gmmscape.reproducibility import expected_fsc, fsc_at
from gmmscape.simulate import simulate


def dataset(scale: float, args: argparse.Namespace, root: Path) -> tuple[Path, Path]:
    """Simulated and imported data set; returns (simulation folder, import folder)."""
    system = phantoms.scale_part(phantoms.build_system("composition"), phantoms.EXTRA, scale)
    sim, imp = root / f"sim_{scale:g}", root / f"import_{scale:g}"
    paths = simulate(
        system, sim, per_state=args.per_state, box=args.box, apix=args.apix, snr=args.snr, seed=1
    )
    import_particles(paths["particles"], imp, box=args.train_box)
    return sim, imp


def true_maps(sim: Path, box: int) -> dict[int, list[np.ndarray]]:
    """True maps of every state, by composition, at the reconstruction box."""
    models = {p.stem: np.load(p) for p in sorted((sim / "truth_gmm").glob("state_*.npy"))}
    return {c: [density(g, box) for n, g in models.items() if n.endswith(f"_c{c}")] for c in (0, 1)}


def mean_fsc(volume: np.ndarray, truths: list[np.ndarray], apix: float) -> pd.DataFrame:
    """FSC against each true map, averaged over the maps."""
    curves = [fsc_table(volume, t, apix) for t in truths]
    return curves[0].assign(fsc=np.mean([c["fsc"] for c in curves], axis=0))


def measure(sim: Path, imp: Path) -> list[dict]:
    """Rows of (a) and (b) per composition for one data set."""
    table = load_table(imp / "particles.csv")
    source: ImageSource = cropped_source(imp / "stack.mrcs", load_meta(imp / "meta.json"))
    truth = pd.read_csv(sim / "ground_truth.csv").set_index("index").loc[table["index"]]
    comp, subset = truth["composition"].to_numpy(), table["subset"].to_numpy()
    sets = [np.arange(len(table))]
    sets += [np.flatnonzero(comp == c) for c in (0, 1)]
    sets += [np.flatnonzero((comp == c) & (subset == h)) for c in (0, 1) for h in (1, 2)]
    maps = reconstruct_with_halves(table, source, sets)
    consensus, truths = maps[0], true_maps(sim, source.box)
    res = resolution_at(consensus.fsc, 0.5)
    well = slice(1, max(1, int(source.box * source.apix / res) // 2) + 1)
    rows = []
    for c in (0, 1):
        own = mean_fsc(maps[1 + c].full, truths[c], source.apix)
        cons = mean_fsc(consensus.full, truths[c], source.apix)
        even, odd = maps[3 + 2 * c], maps[4 + 2 * c]
        rows.append(
            {
                "composition": c,
                "class_0.5_A": resolution_at(own, 0.5),
                "consensus_0.5_A": resolution_at(cons, 0.5),
                "class_mean_fsc": own["fsc"].to_numpy()[well].mean(),
                "consensus_mean_fsc": cons["fsc"].to_numpy()[well].mean(),
                "halves_0.5_A": res,
                "even_odd_fsc": fsc_at(fsc_table(even.full, odd.full, source.apix), res),
                "expected_fsc": expected_fsc(fsc_at(even.fsc, res), fsc_at(odd.fsc, res)),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra-scale", type=float, nargs="+", default=[1.0, 4.0])
    parser.add_argument("--per-state", type=int, default=200)
    parser.add_argument("--box", type=int, default=64)
    parser.add_argument("--train-box", type=int, default=None)
    parser.add_argument("--apix", type=float, default=4.0)
    parser.add_argument("--snr", type=float, default=0.1)
    args = parser.parse_args()
    logging.getLogger("gmmscape").setLevel(logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for scale in args.extra_scale:
            for row in measure(*dataset(scale, args, Path(tmp))):
                rows.append({"extra_scale": scale, **row})
    pd.set_option("display.width", 200)
    print(pd.DataFrame(rows).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
