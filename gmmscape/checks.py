"""Checks of the inputs and of config combinations that can run before any job.

The workflow calls these while it is parsed (rules/common.smk), so a bad input stops
the run within seconds with one line naming the key or file and what was expected,
instead of a job failing hours later or a run finishing on garbage. Each function
raises InputError; none imports TensorFlow.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import mrcfile
import numpy as np

from .errors import InputError
from .importer import check_halves, even_odd
from .io import ParticleRecords, open_stack, read_lst, read_star
from .table import subset_counts

# Fewest particles per training run that PCA, UMAP and the classes work with.
MIN_PARTICLES = 10
MASK_THRESHOLD = 0.5  # masks.drop_outside keeps Gaussians where the mask exceeds this
SAMPLED_IMAGES = 16  # images read at parse time to catch an all-zero or constant stack


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def check_volume(key: str, path: str | os.PathLike, *, mask: bool = False) -> tuple[int, int, int]:
    """Box (z, y, x) of a 3D map or mask after checking its header and voxels: a cube
    of finite values, with positive density (a map) or a region above the threshold
    (a mask)."""
    if not os.path.isfile(path):
        raise InputError(f"{key}: file not found: {path}")
    try:
        with mrcfile.mmap(path, mode="r", permissive=True) as mrc:
            data = mrc.data
            if data is None:
                raise ValueError("no data block")
            shape = tuple(int(n) for n in data.shape)
            if len(shape) == 2 or shape[0] == 1:
                raise InputError(
                    f"{key}: {path} is a 2D image of {_shape_text(shape[-2:])} pixels, "
                    "expected a 3D map"
                )
            if len(shape) != 3 or len(set(shape)) != 1:
                raise InputError(
                    f"{key}: {path} is {_shape_text(shape)} voxels, expected a cubic 3D map"
                )
            _check_voxels(key, path, np.asarray(data, dtype=np.float32), mask)
    except (OSError, ValueError) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"{key}: not a readable MRC file: {path} ({err})") from None
    return shape


def _check_voxels(key: str, path: str | os.PathLike, data: np.ndarray, mask: bool) -> None:
    bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise InputError(
            f"{key}: {path} has {bad} non-finite voxels (NaN or infinity), expected finite values"
        )
    if not data.any():
        what = "a mask with a region of 1" if mask else "a density map"
        raise InputError(f"{key}: {path} is all zero, expected {what}")
    if mask and data.max() <= MASK_THRESHOLD:
        raise InputError(
            f"{key}: {path} has no voxel above {MASK_THRESHOLD} (max {data.max():.3g}), "
            "expected 1 inside the region to keep"
        )
    if not mask and data.max() <= 0:
        raise InputError(
            f"{key}: {path} has no positive voxel (max {data.max():.3g}), expected density "
            "above 0 (inverted contrast?)"
        )
    if not mask and data.min() == data.max():
        raise InputError(f"{key}: {path} is constant ({data.max():.3g}), expected a density map")


def check_star_columns(path: str | os.PathLike) -> None:
    """Every column of every STAR table named once (a repeated name is read as garbage)."""
    block, seen = None, dict[str, int]()
    with open(path, errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            word = line.strip().split(maxsplit=1)[0] if line.strip() else ""
            if word.startswith("data_"):
                block, seen = word, {}
            elif word.startswith("_"):
                if word in seen:
                    raise InputError(
                        f"particles: {path} {block or 'table'}: column {word} appears twice "
                        f"(lines {seen[word]} and {number}); expected each column once"
                    )
                seen[word] = number


def read_records(path: str | os.PathLike, apix: float | None) -> ParticleRecords:
    """The particles of a STAR or .lst file, as the import will read them."""
    if str(path).endswith(".star"):
        check_star_columns(path)
        return read_star(path, apix=apix)
    return read_lst(path, apix=apix)


def check_records(path: str | os.PathLike, records: ParticleRecords) -> None:
    """Pixel sizes, poses and images of the particles themselves."""
    apix = np.asarray(records.apix, dtype=float)
    bad = np.flatnonzero(~(apix > 0))
    if bad.size:
        i = int(bad[0])
        raise InputError(
            f"particles: {path} row {i} (0-based, optics group {records.optics_group[i]}): "
            f"pixel size {apix[i]:g} A, expected > 0 (fix the file or set apix)"
        )
    rotations = np.asarray(records.rotations)
    if len(rotations) > 1 and np.abs(rotations - rotations[0]).max() < 1e-6:
        raise InputError(
            f"particles: all {len(rotations)} particles of {path} have the same orientation; "
            "expected the poses of a consensus refinement"
        )
    _check_sampled_images(path, records)


def _check_sampled_images(path: str | os.PathLike, records: ParticleRecords) -> None:
    """An all-zero or constant stack, from a few images spread over the data set."""
    n = len(records.source)
    rows = np.unique(np.linspace(0, n - 1, min(n, SAMPLED_IMAGES)).astype(int))
    by_source: dict[str, list[int]] = {}
    for row in rows:
        by_source.setdefault(records.source[row], []).append(int(records.source_index[row]))
    values = []
    for source, indices in by_source.items():
        images = open_stack(source).read(np.array(indices))
        values += [(float(np.nanmin(im)), float(np.nanmax(im))) for im in images]
    if all(lo == hi for lo, hi in values):
        pixel = Counter(lo for lo, _ in values).most_common(1)[0][0]
        raise InputError(
            f"particles: the {len(values)} images sampled from {path} (rows {rows[0]} to "
            f"{rows[-1]}) are constant (e.g. every pixel {pixel:g}); expected particle images"
        )


def run_sizes(path: Path, records: ParticleRecords, split: bool, seed: int) -> dict[str, int]:
    """Particles per training half: all, and even/odd (as the import splits them; with
    `split`, an empty half is an error)."""
    subset = even_odd(records.subset, seed)
    sizes = {"all": len(subset)}
    if split:
        check_halves(subset, split, path)
        sizes |= subset_counts(subset)
    return sizes


def check_sizes(path: str | os.PathLike, sizes: dict[str, int], config: dict) -> None:
    """Enough particles in every run for the latent space, PCA/UMAP and the classes."""
    latent_dim = config["train"]["latent_dim"]
    needed = max(MIN_PARTICLES, latent_dim + 1)
    cluster = config["landscape"]["cluster"]
    for half, count in sizes.items():
        if count < needed:
            raise InputError(
                f"particles: the {half} run of {path} has {count} particles, expected at "
                f"least {needed} (for train.latent_dim {latent_dim}, PCA, UMAP and the classes)"
            )
        if cluster["method"] in ("kmeans", "gmm", "spectral") and cluster["n_clusters"] > count:
            raise InputError(
                f"landscape.cluster.n_clusters: {cluster['n_clusters']} classes asked for, "
                f"but the {half} run of {path} has {count} particles"
            )


def check_config(config: dict) -> None:
    """Combinations of keys that the schema alone cannot reject."""
    landscape = config["landscape"]
    cluster = landscape["cluster"]
    if cluster["method"] != "auto" and cluster["space"] == "umap" and not landscape["umap"]:
        raise InputError(
            "landscape.cluster.space: 'umap' needs landscape.umap: true; "
            "expected umap: true or space latent or pca"
        )


def check_particles(config: dict) -> None:
    """Everything about a user's particle file that the jobs would otherwise find late."""
    path = Path(config["particles"])
    records = read_records(path, config["apix"])
    check_records(path, records)
    check_sizes(path, run_sizes(path, records, config["split"], config["seed"]), config)
