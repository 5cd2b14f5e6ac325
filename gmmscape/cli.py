"""The ``gmmscape`` command: one sub-command per task, dispatched by name.

Each command is a pair of module-level functions, ``add_<name>(parser)`` declaring
its arguments and ``run_<name>(args)`` doing the work (its docstring's first line
is the command's help), registered in COMMANDS. Heavy imports (TensorFlow) happen
inside ``run_*`` so that ``--help`` stays fast. Bad input (InputError) is one line
on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from . import __version__
from .errors import InputError


def add_simulate(parser: argparse.ArgumentParser) -> None:
    from .phantoms import SYSTEMS

    parser.add_argument("--system", required=True, choices=sorted(SYSTEMS))
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--per-state", type=int, default=200, help="particles per state")
    parser.add_argument("--box", type=int, default=64, help="box size in pixels (even, >= 32)")
    parser.add_argument("--apix", type=float, default=4.0, help="pixel size in Angstrom")
    parser.add_argument(
        "--snr", type=float, default=0.1, help="signal/noise variance ratio; inf for no noise"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=128, help="particles per batch")


def run_simulate(args: argparse.Namespace) -> None:
    """Write a simulated particle data set with ground truth (paper Extended Data Fig. 5)."""
    from .simulate import simulate

    paths = simulate(
        args.system,
        args.out,
        per_state=args.per_state,
        box=args.box,
        apix=args.apix,
        snr=args.snr,
        seed=args.seed,
        chunk=args.chunk,
    )
    print(paths["particles"])


def add_where(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--configfile",
        action="append",
        metavar="FILE",
        help="workflow config file(s) as given to snakemake, later ones win (default: config.yaml)",
    )
    parser.add_argument(
        "--outdir-only", action="store_true", help="print only the results directory (scripts)"
    )


def run_where(args: argparse.Namespace) -> None:
    """Print where a workflow run's results and report are."""
    from pathlib import Path

    import yaml

    outdir = "results"  # the workflow's default (schemas/config.schema.yaml)
    for name in args.configfile or ["config.yaml"]:
        if not Path(name).is_file():
            raise InputError(f"--configfile: file not found: {name}")
        outdir = (yaml.safe_load(Path(name).read_text()) or {}).get("outdir", outdir)
    root = Path(outdir).resolve()
    if args.outdir_only:
        print(root)
        return
    print(f"results: {root}")
    patterns = (
        "gmm/*/neutral.pdb",
        "gmm/*/fsc.png",
        "landscape/*/latent.csv",
        "landscape/*/umap_scatter.png",
        "landscape/*/classes.csv",
        "reproducibility/*/verdict.txt",
    )
    for pattern in patterns:
        for path in sorted(root.glob(pattern)):
            print(f"  {path}")
    for path in sorted(root.glob("reproducibility/*/verdict.txt")):
        print(f"even/odd verdict ({path.parent.name}): {path.read_text().strip()}")
    report = root / "report.html"
    if report.is_file():
        print(f"report: {report}")
    else:
        print(f"report: not made yet; `snakemake --report {report}` writes it")


def add_decode(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="training run directory (train/{run})")
    parser.add_argument(
        "--latent",
        action="append",
        metavar="Z0,Z1,...",
        help="a latent point, comma-separated (repeatable; --latent=-1,0 for a leading minus)",
    )
    parser.add_argument("--latent-file", help="CSV of latent points with columns z0..z{d-1}")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--box", type=int, help="box of the MRC maps (default: the neutral GMM's map)"
    )
    parser.add_argument(
        "--apix", type=float, help="pixel size in Angstrom (default: the neutral GMM's map)"
    )


def run_decode(args: argparse.Namespace) -> None:
    """Decode latent points to GMMs, written as text, PDB and MRC density."""
    from .decode import load_decoder, parse_points, write_points

    decoder = load_decoder(args.run)
    points = parse_points(args.latent, args.latent_file, decoder.latent_dim)
    for path in write_points(decoder, points, args.out, box=args.box, apix=args.apix):
        print(path)


def add_import(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "particles", metavar="PARTICLES", help="RELION .star, EMAN2 .lst or cryoSPARC .cs"
    )
    parser.add_argument("--out", required=True, help="output directory (as {outdir}/import)")
    parser.add_argument("--map", help="consensus map (.mrc): checked against the particles' box")
    parser.add_argument("--box", type=int, help="training box (default: the particles' box)")
    parser.add_argument(
        "--apix", type=float, help="pixel size in Angstrom of the particles and the map"
    )
    parser.add_argument(
        "--phase-flipped",
        choices=["auto", "true", "false"],
        default="auto",
        help="images already phase-flipped? auto: as the input's flags say (default)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the even/odd split")
    parser.add_argument(
        "--check",
        action="store_true",
        help="then the pre-flight convention check against --map (preflight.json in --out)",
    )


def run_import(args: argparse.Namespace) -> None:
    """Import particles alone (table, junk list, flipped and cropped stack) and summarise."""
    from .importer import import_particles, summary

    if args.check and not args.map:
        raise InputError("--check: needs the consensus map (--map)")
    choices: dict[str, str | bool] = {"auto": "auto", "true": True, "false": False}
    flipped = choices[args.phase_flipped]
    result = import_particles(
        args.particles,
        args.out,
        map_path=args.map,
        box=args.box,
        apix=args.apix,
        seed=args.seed,
        phase_flipped=flipped,
    )
    print(summary(result.meta))
    print(f"wrote {result.table}, {result.stack}, {result.junk}")
    if args.check:
        from pathlib import Path

        from .io.mrc import read_volume
        from .preflight import run_check

        json_path = Path(args.out) / "preflight.json"
        run_check(args.out, read_volume(args.map), json_path, seed=args.seed)
        print(f"wrote {json_path}, {json_path.with_suffix('.png')}")


def add_subset(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--particles", required=True, help="the particle file the run imported (.star or .lst)"
    )
    parser.add_argument("--meta", required=True, help="the run's import/meta.json")
    parser.add_argument(
        "--indices", required=True, help="index file: one 0-based particle row per line"
    )
    parser.add_argument("--out", required=True, help="output file (.star, or .lst for EMAN2)")


def run_subset(args: argparse.Namespace) -> None:
    """Write the particles of an index file (saved by the explorer page) in their own format."""
    from pathlib import Path

    from .explorer import read_indices
    from .importer import load_meta
    from .subsets import write_subset

    for flag, path in (("--particles", args.particles), ("--meta", args.meta)):
        if not Path(path).is_file():
            raise InputError(f"{flag}: file not found: {path}")
    rows = read_indices(args.indices)
    path = write_subset(args.particles, rows, args.out, load_meta(args.meta))
    print(f"{path}: {len(rows)} particles")


def add_reconstruct(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="training run directory (train/{run})")
    parser.add_argument(
        "--at",
        action="append",
        default=[],
        metavar="PC0=..,PC1=..",
        help="a point by its PCA scores (as latent.csv's pc0, pc1) or zK=..; repeatable",
    )
    parser.add_argument(
        "--latent",
        action="append",
        default=[],
        metavar="Z0,Z1,...",
        help="a point by all its latent coordinates (repeatable; --latent=-1,0 for a minus)",
    )
    parser.add_argument(
        "--particles", type=int, default=2000, help="nearest particles reconstructed per point"
    )
    parser.add_argument(
        "--import", dest="import_dir", help="the import's directory (default: RUN/../../import)"
    )
    parser.add_argument("--mask", help="mask (.mrc) multiplying the half maps before the FSC")
    parser.add_argument("--wiener", type=float, default=1e-3, help="Wiener constant")
    parser.add_argument(
        "--scale", choices=("crop", "original"), default="crop", help="images to reconstruct from"
    )
    parser.add_argument("--out", required=True, help="output directory")


def run_reconstruct(args: argparse.Namespace) -> None:
    """Decode latent points and reconstruct the particles nearest each, with half maps."""
    from pathlib import Path

    from .points import reconstruct_at

    if args.particles < 1:
        raise InputError(f"--particles: expected at least 1, got {args.particles}")
    run = Path(args.run)
    summary = reconstruct_at(
        args.at + args.latent,
        run,
        run / "latent.csv",
        args.import_dir or run.parent.parent / "import",
        args.out,
        count=args.particles,
        mask=args.mask,
        wiener=args.wiener,
        scale=args.scale,
    )
    print(summary.to_string(index=False))


def add_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--configfile",
        nargs="+",
        action="extend",
        default=[],
        metavar="FILE",
        help="workflow config file(s), later ones win (default: the workflow's config.yaml); "
        "every other argument goes to snakemake (targets, --cores, --profile, -n, --unlock)",
    )


def run_run(args: argparse.Namespace) -> int:
    """Run the workflow (snakemake): one-line errors, reruns after a kill just work."""
    from .runner import run_workflow

    return run_workflow(args.configfile, args.passthrough)


Command = tuple[
    Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int | None]
]
COMMANDS: dict[str, Command] = {
    "simulate": (add_simulate, run_simulate),
    "where": (add_where, run_where),
    "decode": (add_decode, run_decode),
    "import": (add_import, run_import),
    "subset": (add_subset, run_subset),
    "reconstruct": (add_reconstruct, run_reconstruct),
    "run": (add_run, run_run),
}

PASSTHROUGH = {"run"}  # commands whose unknown arguments go on to another program


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gmmscape", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add, run) in COMMANDS.items():
        summary = (run.__doc__ or name).splitlines()[0]
        add(sub.add_parser(name, help=summary, description=summary))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args, passthrough = parser.parse_known_args(argv)
    if passthrough and args.command not in PASSTHROUGH:
        parser.error(f"unrecognized arguments: {' '.join(passthrough)}")
    args.passthrough = passthrough
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return COMMANDS[args.command][1](args) or 0
    except InputError as err:
        print(f"gmmscape {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
