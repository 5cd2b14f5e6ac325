"""gmmscape vs cryoDRGN: both tools' recovery and training time on the realistic sets.

    nice -n 10 .venv/bin/python bench/bench_cryodrgn.py [--size full|ci]
        [--systems ...] [--data-root DIR] [--epochs N] [--gmmscape-out DIR]

cryoDRGN is installed into its own virtualenv (bench/out/cryodrgn-venv; torch 2.13.0,
the CPU build, first, so that cryodrgn's torch requirement is already met) and run with
the refinement's poses and CTF: ``parse_pose_star``, ``parse_ctf_star``, then
``train_vae --zdim 8 --enc-dim 256 --dec-dim 256`` with its defaults otherwise
(``--no-analysis``: its UMAP/volume report plays no part in the score). Its latent
(z.pkl) is scored with the metrics gmmscape.benchmark.score applies to gmmscape: the best
latent axis (z*, pc0, pc1) as |Spearman rho| with the true motion, and the ARI of a
2-means split of z with the true composition. The gmmscape side is read from a finished
bench_realistic.py run (default bench/out/realistic/default/<system>_<size>).
"""

from __future__ import annotations

import argparse
import pickle
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from gmmscape.benchmark import SYSTEMS, best_axis, dataset, kmeans2_ari, score
from gmmscape.embedding import fit_pca
from gmmscape.io.star import read_star

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
VENV = OUT / "cryodrgn-venv"
TORCH = "torch==2.13.0"  # the CPU build on this machine's disk; a bare "torch" pulls CUDA
EPOCH_LINE = re.compile(r"=====> Epoch: (\d+) .*Finished in (\d+):(\d+):([\d.]+)")


def cryodrgn() -> Path:
    """The cryodrgn command of its own virtualenv, made on first use."""
    command = VENV / "bin" / "cryodrgn"
    if not command.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(VENV / "bin" / "pip"), "install", "-q"]
        subprocess.run([*pip, TORCH], check=True)
        subprocess.run([*pip, "cryodrgn", TORCH], check=True)  # torch stays at the CPU build
    subprocess.run([str(command), "--help"], check=True, capture_output=True)
    return command


def run_cryodrgn(sim: Path, outdir: Path, epochs: int) -> tuple[np.ndarray, float]:
    """Train cryoDRGN at the set's poses and CTF (a finished run of as many epochs is
    reused); its latent means and seconds per epoch."""
    train = outdir / "train_vae"
    if len(epoch_seconds(train / "run.log")) != epochs or not (train / "z.pkl").is_file():
        train_vae(sim, outdir, epochs)
    with open(train / "z.pkl", "rb") as handle:
        z = np.asarray(pickle.load(handle))
    return z, float(np.mean(epoch_seconds(train / "run.log")))


def train_vae(sim: Path, outdir: Path, epochs: int) -> None:
    """parse_pose_star, parse_ctf_star and train_vae into outdir."""
    exe = str(cryodrgn())
    star = sim / "particles.star"
    records = read_star(star)
    optics = ["-D", str(int(records.box[0])), "--Apix", str(float(records.apix[0]))]
    ctf = records.ctf
    outdir.mkdir(parents=True, exist_ok=True)
    pose, ctf_pkl = outdir / "pose.pkl", outdir / "ctf.pkl"
    subprocess.run([exe, "parse_pose_star", str(star), "-o", str(pose), *optics], check=True)
    subprocess.run([exe, "parse_ctf_star", str(star), "-o", str(ctf_pkl), *optics,
                    "--kv", str(ctf["voltage"][0]), "--cs", str(ctf["cs"][0]),
                    "-w", str(ctf["amp_contrast"][0]), "--ps", str(ctf["phase_shift"][0])],
                   check=True)  # fmt: skip
    subprocess.run([exe, "train_vae", str(star), "--datadir", str(sim), "--poses", str(pose),
                    "--ctf", str(ctf_pkl), "--zdim", "8", "-n", str(epochs), "--enc-dim", "256",
                    "--dec-dim", "256", "--no-analysis", "-o", str(outdir / "train_vae")],
                   check=True)  # fmt: skip


def epoch_seconds(log: Path) -> list[float]:
    """Training time of each epoch, from the 'Finished in' lines of cryoDRGN's log."""
    text = log.read_text() if log.is_file() else ""
    return [
        timedelta(hours=int(h), minutes=int(m), seconds=float(s)).total_seconds()
        for _, h, m, s in EPOCH_LINE.findall(text)
    ]


def recovery(z: np.ndarray, sim: Path) -> dict[str, float | str]:
    """cryoDRGN's latent scored as gmmscape.benchmark.score scores gmmscape's."""
    truth = pd.read_csv(sim / "ground_truth.csv").sort_values("index")
    latent = pd.DataFrame(z, columns=[f"z{i}" for i in range(z.shape[1])])
    latent[["pc0", "pc1"]] = fit_pca(z).transform(z)[:, :2]
    axis, rho = best_axis(latent, truth["coordinate"].to_numpy())
    result: dict[str, float | str] = {"best_axis": axis, "rho": rho}
    if truth["composition"].nunique() > 1:
        result["kmeans2_ari"] = kmeans2_ari(z, truth["composition"].to_numpy())
    return result


def gmmscape_side(run: Path, sim: Path) -> dict[str, float | str]:
    """gmmscape's own score and seconds per epoch from a finished pipeline run."""
    result = score(run / "landscape" / "all_all", sim)
    result["seconds_per_epoch"] = float(
        pd.read_csv(run / "train" / "all_all" / "loss.csv")["seconds"].mean()
    )
    return result


def table(system: str, ours: dict, peer: dict) -> str:
    """Both tools side by side, one row per measure."""
    rows = [("best axis", ours["best_axis"], peer["best_axis"], "")]
    rows.append(("best-axis |rho|", f"{ours['rho']:.3f}", f"{peer['rho']:.3f}", ""))
    if "kmeans2_ari" in peer:
        ari = (f"{ours['kmeans2_ari']:.3f}", f"{peer['kmeans2_ari']:.3f}")
        rows.append(("2-means ARI", *ari, ""))
        rows.append(("classes ARI", f"{ours['class_ari']:.3f}", "-", ""))
    a, b = ours["seconds_per_epoch"], peer["seconds_per_epoch"]
    rows.append(("s / epoch", f"{a:.1f}", f"{b:.1f}", f"cryoDRGN / gmmscape = {b / a:.1f}x"))
    lines = [f"{system}", f"  {'':18}{'gmmscape':>10}{'cryoDRGN':>10}"]
    lines += [f"  {r[0]:18}{r[1]:>10}{r[2]:>10}  {r[3]}" for r in rows]
    return "\n".join(lines)


def simulated(system: str, root: Path, size: str) -> Path:
    """An already-made set as it is (no oracle needed here), else gmmscape.benchmark's."""
    folder = root / f"{system}_{size}_7"
    return folder if (folder / "ground_truth.csv").is_file() else dataset(system, root, size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="full", choices=("full", "ci"))
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--data-root", type=Path, default=OUT / "realistic" / "data")
    parser.add_argument("--epochs", type=int, default=20, help="cryoDRGN epochs (its default)")
    parser.add_argument("--gmmscape-out", type=Path, help="finished gmmscape run (one system)")
    args = parser.parse_args()
    for system in args.systems:
        sim = simulated(system, args.data_root, args.size)
        run = args.gmmscape_out or OUT / "realistic" / "default" / f"{system}_{args.size}"
        z, seconds = run_cryodrgn(sim, OUT / "cryodrgn" / f"{system}_{args.size}", args.epochs)
        peer = recovery(z, sim) | {"seconds_per_epoch": seconds}
        print(f"cryoDRGN {system}: {peer}", flush=True)
        if not (run / "landscape" / "all_all" / "latent.csv").is_file():
            sys.exit(f"{run}: no finished gmmscape run (run bench/bench_realistic.py first)")
        ours = gmmscape_side(run, sim)
        print(table(system, ours, peer), flush=True)


if __name__ == "__main__":
    main()
