"""Realistic benchmark: the pipeline, run as a user runs it (only particles, map, outdir),
on the protein-like sets of gmmscape.benchmark, scored against the truth and the oracle.

    .venv/bin/python bench/bench_realistic.py [--size full|ci] [--systems ...]
        [--set key=value ...] [--tag NAME]

--set adds config keys (dotted, YAML values) for one-change-at-a-time experiments;
results go to bench/out/realistic/<tag>/<system>/ and one line per system is printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import yaml

from gmmscape.benchmark import SYSTEMS, dataset, oracle_score, score

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "realistic"


def nested(pairs: list[str]) -> dict:
    """{'a.b': v} pairs -> nested config dict."""
    config: dict = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return config


def run_pipeline(sim: Path, outdir: Path, extra: dict, cores: int) -> float:
    config = {"particles": str(sim / "particles.star"), "map": str(sim / "consensus.mrc")}
    config |= {"outdir": str(outdir), **extra}
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    t0 = time.perf_counter()
    command = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile", str(path)]
    subprocess.run(command, cwd=ROOT, check=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="full", choices=("full", "ci"))
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--set", nargs="*", default=[], help="config overrides key=value")
    parser.add_argument("--tag", default="default")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for system in args.systems:
        sim = dataset(system, OUT / "data", args.size)
        outdir = OUT / args.tag / f"{system}_{args.size}"
        seconds = run_pipeline(sim, outdir, nested(args.set), args.cores)
        runs = sorted((outdir / "landscape").glob("*_all"))
        for run in runs:
            result = {"system": system, "run": run.name, "seconds": round(seconds)}
            result |= score(run, sim)
            result["oracle"] = oracle_score(sim)
            choices = yaml.safe_load((outdir / "choices.yaml").read_text())["settings"]
            result["oracle_in_band"] = oracle_score(sim, choices["train.res_hi"]["value"])
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
