"""Configuration, input checks and input functions shared by every rule file.

Everything here runs when the workflow is parsed, so a bad config or a missing or
mismatched input stops the run with one message before any job starts.
"""

import functools
import os
import sys

import mrcfile
from jsonschema import ValidationError
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)  # this checkout's gmmscape first
from gmmscape import checks, phantoms, resources  # noqa: E402
from gmmscape.streaming import part_count  # noqa: E402
from gmmscape.choices import CHOICE_KEYS, LEVELS  # noqa: E402
from gmmscape.errors import InputError  # noqa: E402
from gmmscape.levels import level_counts  # noqa: E402
from gmmscape.table import ALL, HALF_NAMES, SUBSETS  # noqa: E402


def validate_config():
    """Validate the merged config and fill defaults; the error's first line names the key."""
    try:
        validate(config, "../schemas/config.schema.yaml")
    except WorkflowError as err:
        cause = err.__context__  # snakemake raises its error while handling jsonschema's
        if not isinstance(cause, ValidationError):
            raise
        key = ".".join(str(part) for part in cause.absolute_path)
        where = f"config key '{key}'" if key else "config"
        raise WorkflowError(f"{where}: {cause.message}") from None


def fail(message):
    """Stop the run before any job with one message naming the key or file."""
    raise WorkflowError(message)


def map_header(key, path):
    """Box (z, y, x) and voxel size of an MRC file from its header (the config's `apix`
    overrides the latter), or stop naming the config key."""
    if not os.path.isfile(path):
        fail(f"{key}: file not found: {path}")
    try:
        with mrcfile.open(path, header_only=True, permissive=True) as mrc:
            header, voxel = mrc.header, float(mrc.voxel_size.x)
    except (OSError, ValueError) as err:
        fail(f"{key}: not a readable MRC file: {path} ({err})")
    if config["apix"] is None and not voxel > 0:
        fail(f"{key}: the header of {path} gives voxel size {voxel:g} A (not set); set apix")
    return (int(header.nz), int(header.ny), int(header.nx)), config["apix"] or voxel


def checked(check, *args, **kwargs):
    """Call a gmmscape.checks function; its InputError stops the run with its one line."""
    try:
        return check(*args, **kwargs)
    except InputError as err:
        fail(str(err))


def check_inputs():
    """Check the config's combinations, the user's input files and their boxes, and the
    particles' content (the demo's inputs are made by a rule). The content checks read
    the files, so they run once, in the main process, not again in every cluster job."""
    checked(checks.check_config, config)
    if config["particles"] == "demo":
        for key in ("map", "mask", "half_maps"):
            if config[key] is not None:
                fail(f"{key}: leave empty when particles is 'demo' (the demo simulates its own)")
        return
    particles = config["particles"]
    if not particles.endswith((".star", ".lst", ".cs")):
        fail(
            "particles: expected a RELION .star, an EMAN2 .lst, a cryoSPARC .cs or 'demo', "
            f"got {particles}"
        )
    if not os.path.isfile(particles):
        fail(f"particles: file not found: {particles}")
    if config["particles_dir"] is not None and not os.path.isdir(config["particles_dir"]):
        fail(f"particles_dir: folder not found: {config['particles_dir']}")
    if config["map"] is None:
        fail("map: the consensus map (.mrc) is required when particles is a file")
    box, apix = map_header("map", config["map"])
    checked(checks.check_volume, "map", config["map"])
    others = {"mask": config["mask"]}
    others.update(zip(("half_maps[0]", "half_maps[1]"), config["half_maps"] or ()))
    for key, path in others.items():
        shape, voxel = map_header(key, path) if path is not None else (box, apix)
        if path is not None:
            checked(checks.check_volume, key, path, mask=key == "mask")
        if shape != box:
            fail(
                f"{key}: box {'x'.join(map(str, shape))} of {path} differs "
                f"from the map's box {'x'.join(map(str, box))} ({config['map']})"
            )
        if abs(voxel - apix) > 1e-3 * apix:
            fail(
                f"{key}: voxel size {voxel:.4g} A of {path} differs from the map's "
                f"{apix:.4g} A ({config['map']}); set apix if a header is wrong"
            )
    for key, path in (("train.mask", config["train"]["mask"]), ("asu_mask", config["asu_mask"])):
        if path is not None:
            checked(checks.check_volume, key, path, mask=True)
    if config["box"] is not None and config["box"] > box[-1]:
        fail(f"box: training box {config['box']} is larger than the map's box {box[-1]}")
    if workflow.is_main_process:
        checked(checks.check_particles, config)


def config_value(key):
    """The config's value of a dotted key such as 'gmm.target_n' (None: derive it)."""
    value = config
    for part in key.split("."):
        value = value[part]
    return value


def gmm_level_count():
    """Levels of the coarse-to-fine build: N doubles from start_n up to target_n.

    A derived start_n or target_n (gmmscape.choices) keeps LEVELS levels, so the count
    is known before the data are measured. The scripts take each level's N and
    resolution from gmmscape.levels.level_schedule.
    """
    gmm = config["gmm"]
    if gmm["start_n"] is None or gmm["target_n"] is None:
        return LEVELS
    if gmm["target_n"] < gmm["start_n"]:
        fail(
            f"gmm.target_n: expected at least gmm.start_n ({gmm['start_n']}), "
            f"got {gmm['target_n']}"
        )
    resolutions = (gmm["target_resolution"], gmm["start_resolution"])
    if None not in resolutions and resolutions[0] > resolutions[1]:
        fail(
            f"gmm.target_resolution: expected at most gmm.start_resolution "
            f"({gmm['start_resolution']} A), got {gmm['target_resolution']} A"
        )
    return len(level_counts(gmm["start_n"], gmm["target_n"]))


validate_config()
check_inputs()
N_LEVELS = gmm_level_count()
HALVES = list(HALF_NAMES) if config["split"] else [ALL]
ANY_HALF = "|".join(HALF_NAMES)  # a wildcard pattern of every half, configured or not
DEMO = config["particles"] == "demo"


def out(path):
    """A path under the configured output directory."""
    return os.path.join(config["outdir"], path)


PARTICLES = out("demo/particles.star") if DEMO else config["particles"]
MAP = out("demo/consensus.mrc") if DEMO else config["map"]
MASK = out("demo/mask.mrc") if DEMO else config["mask"]


wildcard_constraints:
    half="|".join(HALVES),
    level="|".join(str(k) for k in range(N_LEVELS)),
    part=r"\d+",


def train_run(path):
    """A file of one training run, train/{mode}_{half}/<path>."""
    return out(f"train/{{mode}}_{{half}}/{path}")


@functools.cache
def data_scale():
    """The data set's size for the resource requests, read once (gmmscape.resources)."""
    demo = config["demo"]
    particles = phantoms.build_system(demo["system"]).n_states * demo["per_state"]
    return resources.scale_from_config(config, demo_particles=particles)


@functools.cache
def slurm_node():
    """The largest SLURM node and time limit (None without SLURM): requests stay within it."""
    return resources.slurm_node()


def cpus(stage):
    """Threads of a stage's jobs, at most the largest node's CPUs."""
    return resources.threads(stage, slurm_node())


def sized(stage, gpu=False, parts=1):
    """mem_mb and runtime (minutes) of a stage's jobs from the data's size (each job one
    of `parts` of the particles), growing with each retry (profiles set `retries`), within
    the largest node (gmmscape.resources); and `gpu` for a GPU-capable stage when the
    config asks for GPUs."""

    def scale():
        return resources.share(data_scale(), parts)

    requests = dict(
        mem_mb=lambda wildcards, attempt: resources.mem_mb(stage, scale(), slurm_node(), attempt),
        runtime=lambda wildcards, attempt: resources.runtime(stage, scale(), slurm_node(), attempt),
    )
    return requests | ({"gpu": config["gpu"]} if gpu and config["gpu"] > 0 else {})


def picked(section, *keys):
    """Only the keys of a config section that a job reads: snakemake reruns a job when its
    params change, so a job must not see the keys of other stages."""
    return {key: section[key] for key in keys}


# Keys of the `train:` section by what reads them: the loss band (features, junk,
# refinement) and the settings of one training run (not `modes`, `mask` or the scatter).
BAND_KEYS = ("res_lo", "res_hi", "frc_weights")
RUN_KEYS = tuple(
    k for k in config["train"] if k not in ("modes", "mask", "features_per_job", "feature_dtype")
)


def optional(path):
    """An input that may be absent: no file ([]) when the config leaves it empty."""
    return path or []


def gmm_map(wildcards):
    """The map a half's GMM is fitted to: its half map when given, else the consensus map."""
    if wildcards.half != ALL and config["half_maps"]:
        return config["half_maps"][list(SUBSETS).index(wildcards.half)]
    return MAP


def gmm_seed(wildcards):
    """A seed per half, so the even and odd GMMs are not copies of each other."""
    return config["seed"] + HALF_NAMES.index(wildcards.half)


def previous_level(wildcards):
    """Level k starts from level k-1's model, so a resumed build skips finished levels."""
    level = int(wildcards.level)
    return out(f"gmm/{wildcards.half}/level_{level - 1}.txt") if level else []


def level_files(wildcards):
    """Every level's model of one half, coarse to fine."""
    return [out(f"gmm/{wildcards.half}/level_{k}.txt") for k in range(N_LEVELS)]


def final_outputs():
    """The default target: split tables and, per half, the neutral GMM and its FSC."""
    tables = [out("choices.yaml")] + [out(f"import/{half}.csv") for half in HALF_NAMES]
    gmm = [
        out(f"gmm/{half}/{name}")
        for half in HALVES
        for name in ("neutral.txt", "neutral.pdb", "neutral.mrc", "fsc.csv", "fsc.png")
    ]
    return tables + gmm


# Rigid mode's mask (rules/train.smk) and the tables of pose refinement's rounds
# (rules/refine.smk), which the training and landscape rules read.
ROUNDS = config["refine"]["rounds"]
REFINE_MODE = config["refine"]["mode"] or config["train"]["modes"][0]


def train_mask(wildcards):
    """train.mask; a rigid run on the demo without one moves the demo's domain."""
    if config["train"]["mask"] is None and wildcards.mode == "rigid" and DEMO:
        return out("demo/moving_mask.mrc")
    return optional(config["train"]["mask"])


# Symmetry expansion (rules/symmetry.smk): training and landscape read the tables of copies.
SYMMETRIC = config["symmetry"].upper() != "C1"


def expanded(path):
    """A per-particle table under outdir, or its copy with one row per symmetry copy."""
    return (
        out(os.path.join("symmetry", os.path.relpath(path, config["outdir"])))
        if SYMMETRIC
        else path
    )


def posed_table(half, k=ROUNDS):
    """The table of a half with the poses of round k (0: the import's, symmetry-expanded)."""
    return (
        expanded(out(f"import/{half}.csv")) if int(k) == 0 else out(f"refine/round_{k}/{half}.csv")
    )


def posed_half_table(wildcards):
    """The half's table with the last round's poses (the import's when rounds is 0)."""
    return posed_table(wildcards.half)


def posed_run_table(wildcards):
    """The table a landscape run reconstructs from: its half with the last round's poses."""
    if not ROUNDS:
        return expanded(out("import/particles.csv"))
    return posed_table(wildcards.run.rsplit("_", 1)[1])


def round_run(path):
    """A file of the run an intermediate round trains on its poses."""
    return out(f"refine/round_{{round}}/train/{{mode}}_{{half}}/{path}")
