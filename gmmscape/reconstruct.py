"""3D reconstruction by direct Fourier inversion, with CTF weighting, streamed from disk.

Each particle's 2D transform is the central slice of the map's 3D transform
(docs/conventions.md: a map point c lands at R[:2] @ c + t in the image), so the
image frequency k = (kx, ky) samples the map at K = R^T (kx, ky, 0) =
kx * R[0] + ky * R[1], after undoing the shift: F0(k) = F(k) exp(+2 pi i k.t / b).

A recorded image is X = CTF * P + noise. Per Fourier voxel the least-squares
(Wiener-regularised) estimate of the map's transform is

    V(K) = sum_i CTF_i X_i / (sum_i CTF_i^2 + lambda),

sums over the samples that land on the voxel. The import's stack is phase-flipped,
Y = sign(CTF) X, so CTF X = |CTF| Y: flipped images are weighted by |CTF|, raw
images by CTF, CTF-premultiplied images (CTF X already) by 1, and the normaliser is
CTF^2 in every case, as in RELION. Particles without a CTF take CTF = 1. lambda = wiener * the mean
of the normaliser inside the Nyquist sphere: a small constant that keeps sparsely
sampled voxels from blowing up, relative so it does not depend on the data's size.

Samples are spread to the 8 neighbouring voxels with trilinear weights (or to the
nearest voxel); numerator and normaliser get the same weights, so their ratio is a
local average of the data. That damps the map a little towards the box edge, but a
sinc^2 gridding correction made the FSC against the true map worse in tests (lowest
FSC to 2/3 Nyquist 0.94 instead of 0.98), so none is applied. Sums live on the
half-space rfftn grid (kz, ky, kx >= 0): a sample with Kx < 0 is stored as its
Friedel mate (-K, conjugate), and a sample with Kx < 1 also as its mate, so the
kx = 0 plane receives both members of every Hermitian pair. Each image contributes
the Hermitian-unique half of its rfft2 grid (kx > 0, or kx = 0 and ky >= 0) inside
radius b/2 - 1.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from .ctf import CTFParams, ctf_2d
from .errors import InputError
from .fourier import check_box, to_fourier
from .fsc import fsc_table, resolution_at, shell_weights
from .images import ImageSource, cropped_source, original_source
from .io.common import CTF_STATES
from .io.mrc import write_map
from .scatter import items_of
from .table import EVEN, ODD, ROTATION_COLUMNS, alternating_subsets

INTERPOLATIONS = ("trilinear", "nearest")
# what the images hold (io.common.CTF_STATES) -> the weight of their samples, from the CTF
_DATA_WEIGHT: dict[str, Callable[[np.ndarray], np.ndarray]] = dict(
    zip(CTF_STATES, (lambda c: c, np.abs, np.ones_like), strict=True)
)
_SAMPLES_PER_STEP = 1 << 17  # slice samples scattered at once (x8 corners): bounds memory


@cache
def _slice_points(box: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kx, ky, flat rfft2 index) of the Hermitian-unique image frequencies inside b/2 - 1."""
    half = box // 2
    ky = np.fft.fftfreq(box, 1.0 / box)[:, None]
    kx = np.arange(half + 1, dtype=np.float64)[None, :]
    keep = (np.hypot(kx, ky) <= half - 1) & ((kx > 0) | (ky >= 0))
    flat = np.flatnonzero(keep)
    kx_all, ky_all = np.broadcast_arrays(kx, ky)
    return kx_all.ravel()[flat], ky_all.ravel()[flat], flat


@dataclass
class FourierVolume:
    """Running CTF-weighted sums of one reconstruction on the rfftn grid of a box."""

    box: int
    numerator: np.ndarray  # complex128 (b, b, b//2+1): sum of CTF * image samples
    normaliser: np.ndarray  # float64 (b, b, b//2+1): sum of CTF^2
    count: int = 0  # particles inserted

    @classmethod
    def empty(cls, box: int) -> FourierVolume:
        box = check_box(box)
        shape = (box, box, box // 2 + 1)
        return cls(box, np.zeros(shape, np.complex128), np.zeros(shape, np.float64))

    def __add__(self, other: FourierVolume) -> FourierVolume:
        """Sums of two disjoint particle sets, e.g. the two half maps into the full map."""
        if other.box != self.box:
            raise ValueError(f"cannot add reconstructions of boxes {self.box} and {other.box}")
        return FourierVolume(
            self.box,
            self.numerator + other.numerator,
            self.normaliser + other.normaliser,
            self.count + other.count,
        )

    def add(self, samples: SliceSamples, select: np.ndarray, interpolation: str) -> None:
        """Insert the particles `select` (positions in the batch) of a batch of slices."""
        if len(select) == 0:
            return
        key, value, weight = samples.take(select)
        for start in range(0, len(weight), _SAMPLES_PER_STEP):
            part = slice(start, start + _SAMPLES_PER_STEP)
            flat, spread = _neighbours(key[part], self.box, interpolation)
            shape, n = self.normaliser.shape, self.normaliser.size
            data = (spread * value[part, None]).ravel()
            re = np.bincount(flat, data.real, minlength=n)
            im = np.bincount(flat, data.imag, minlength=n)
            self.numerator += (re + 1j * im).reshape(shape)
            norm = (spread * weight[part, None]).ravel()
            self.normaliser += np.bincount(flat, norm, minlength=n).reshape(shape)
        self.count += len(select)

    def volume(self, wiener: float = 1e-3) -> np.ndarray:
        """The map [z, y, x] float32: numerator / (normaliser + lambda), back to real space."""
        if self.count == 0:
            raise InputError("reconstruction: no particles were inserted")
        inside = shell_weights(self.box)[0] <= self.box // 2 - 1  # the inserted sphere
        lam = wiener * float(self.normaliser[inside].mean())
        ft = self.numerator / (self.normaliser + lam)
        ft[~inside] = 0.0
        vol = np.fft.fftshift(np.fft.irfftn(ft, s=(self.box,) * 3))
        return vol.astype(np.float32)


def _neighbours(key: np.ndarray, box: int, interpolation: str) -> tuple[np.ndarray, np.ndarray]:
    """Flat rfftn indices (m*c,) and weights (m, c) of the voxels a sample at K (m, 3) feeds
    (c = 8 trilinear corners or 1 nearest voxel), built axis by axis.

    K = (Kx, Ky, Kz) with Kx > -1; corners with kx < 0 are dropped (weight 0, index 0):
    they are the Friedel copies of kx > 0 voxels, which the sample's mate already feeds.
    """
    width = box // 2 + 1
    if interpolation == "nearest":
        base = np.rint(key).astype(np.int64)
        index = [base[:, a : a + 1] for a in range(3)]
        weight = [np.ones((len(key), 1))] * 3
    else:
        floor = np.floor(key)
        frac = key - floor
        base = floor.astype(np.int64)
        index = [base[:, a : a + 1] + np.array([0, 1]) for a in range(3)]
        weight = [np.stack([1.0 - frac[:, a], frac[:, a]], -1) for a in range(3)]
    (ix, iy, iz), (wx, wy, wz) = index, weight
    wx = np.where(ix >= 0, wx, 0.0)
    ix = np.maximum(ix, 0)
    flat = ((iz % box)[:, :, None, None] * box + (iy % box)[:, None, :, None]) * width
    flat = flat + ix[:, None, None, :]
    spread = wz[:, :, None, None] * wy[:, None, :, None] * wx[:, None, None, :]
    m = len(key)
    return flat.reshape(-1), spread.reshape(m, -1)


@dataclass(frozen=True)
class SliceSamples:
    """A batch of particles as samples of 3D Fourier space: positions, data, CTF^2.

    Arrays are (B, P) per particle and slice point; ``take`` flattens the chosen
    particles' samples, folding Kx < 0 onto the mate and duplicating Kx < 1.
    """

    key: np.ndarray  # (B, P, 3) float64 K = (Kx, Ky, Kz) in Fourier voxels
    value: np.ndarray  # (B, P) complex128: data weight * F0
    weight: np.ndarray  # (B, P) float64: CTF^2

    @classmethod
    def from_images(
        cls,
        images: np.ndarray,
        rot: np.ndarray,
        shift: np.ndarray,
        ctf: np.ndarray,
        images_ctf: str,
    ) -> SliceSamples:
        """images (B, b, b), rot (B, 3, 3), shift (B, 2) pixels, ctf (B, b, b//2+1);
        images_ctf: what the images hold (raw, flipped or premultiplied)."""
        box = images.shape[-1]
        kx, ky, flat = _slice_points(box)
        batch = len(images)
        ft = to_fourier(np.asarray(images, np.float64)).reshape(batch, -1)[:, flat]
        c = np.asarray(ctf, np.float64).reshape(batch, -1)[:, flat]
        phase = (2.0 * np.pi / box) * (kx * shift[:, :1] + ky * shift[:, 1:])
        value = _DATA_WEIGHT[images_ctf](c) * ft * np.exp(1j * phase)
        rot = np.asarray(rot, np.float64)
        key = kx[None, :, None] * rot[:, None, 0, :] + ky[None, :, None] * rot[:, None, 1, :]
        return cls(key, value, c * c)

    def take(self, select: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        key = self.key[select].reshape(-1, 3)
        value = self.value[select].ravel()
        weight = self.weight[select].ravel()
        mirror = key[:, 0] < 0
        key = np.where(mirror[:, None], -key, key)
        value = np.where(mirror, value.conj(), value)
        mate = key[:, 0] < 1.0
        return (
            np.concatenate([key, -key[mate]]),
            np.concatenate([value, value[mate].conj()]),
            np.concatenate([weight, weight[mate]]),
        )


def reconstruct_sets(
    table: pd.DataFrame,
    source: ImageSource,
    sets: Sequence[np.ndarray],
    *,
    chunk: int = 256,
    interpolation: str = "trilinear",
    progress: Callable[[str], None] | None = None,
) -> list[FourierVolume]:
    """One reconstruction per set of table rows (positions), in a single pass over the images.

    Sets may overlap (e.g. the particles nearest neighbouring trajectory points): each
    image is read and transformed once, then inserted into every set that holds it.
    """
    if interpolation not in INTERPOLATIONS:
        raise InputError(f"interpolation: expected one of {INTERPOLATIONS}, got {interpolation!r}")
    sets = [np.asarray(s, dtype=np.int64) for s in sets]
    volumes = [FourierVolume.empty(source.box) for _ in sets]
    members = np.zeros((len(table), len(sets)), dtype=bool)
    for k, rows in enumerate(sets):
        members[rows, k] = True
    needed = np.flatnonzero(members.any(axis=1))
    order_key = table["stack_index"] if "stack_index" in table else np.arange(len(table))
    needed = needed[np.argsort(np.asarray(order_key)[needed], kind="stable")]
    for start in range(0, len(needed), chunk):
        rows = needed[start : start + chunk]
        part = table.iloc[rows]
        ctf = ctf_2d(CTFParams.from_table(part), source.box, source.apix)
        samples = SliceSamples.from_images(
            source.read(part),
            part[ROTATION_COLUMNS].to_numpy(np.float64).reshape(-1, 3, 3),
            source.shifts(part),
            np.nan_to_num(ctf, nan=1.0),  # no CTF known: the images as they are
            source.images_ctf,
        )
        for k, volume in enumerate(volumes):
            volume.add(samples, np.flatnonzero(members[rows, k]), interpolation)
        if progress is not None:
            progress(f"reconstruction: {min(start + chunk, len(needed))}/{len(needed)} particles")
    return volumes


def half_labels(subset: np.ndarray) -> np.ndarray:
    """Half (1 or 2) of each particle of a set for its half maps: the even/odd ``subset``
    when both occur in the set, else alternating rows (so a class of a run on one half of
    the data still gets two half maps)."""
    subset = np.asarray(subset)
    if np.isin(EVEN, subset) and np.isin(ODD, subset):
        return subset
    return alternating_subsets(len(subset))


@dataclass(frozen=True)
class HalfMapResult:
    """A map from a particle set, its two half maps and their FSC."""

    full: np.ndarray
    half1: np.ndarray
    half2: np.ndarray
    fsc: pd.DataFrame  # shell, resolution, fsc (gmmscape.fsc.fsc_table)
    n_particles: int

    def resolution(self, threshold: float = 0.143) -> float:
        return resolution_at(self.fsc, threshold)


def reconstruct_with_halves(
    table: pd.DataFrame,
    source: ImageSource,
    sets: Sequence[np.ndarray],
    *,
    wiener: float = 1e-3,
    mask: np.ndarray | None = None,
    chunk: int = 256,
    interpolation: str = "trilinear",
    progress: Callable[[str], None] | None = None,
) -> list[HalfMapResult]:
    """Full map, half maps (halves from ``half_labels`` of each set) and FSC per set.

    The optional soft ``mask`` multiplies both half maps before the FSC only.
    """
    subset = table["subset"].to_numpy()
    split = [rows[half_labels(subset[rows]) == h] for rows in sets for h in (EVEN, ODD)]
    volumes = reconstruct_sets(
        table, source, split, chunk=chunk, interpolation=interpolation, progress=progress
    )
    results = []
    for k in range(len(sets)):
        first, second = volumes[2 * k], volumes[2 * k + 1]
        if first.count == 0 or second.count == 0:
            raise InputError(f"particle set {k}: a half map needs particles in both halves")
        h1, h2 = first.volume(wiener), second.volume(wiener)
        w = 1.0 if mask is None else mask
        results.append(
            HalfMapResult(
                full=(first + second).volume(wiener),
                half1=h1,
                half2=h2,
                fsc=fsc_table(h1 * w, h2 * w, source.apix),
                n_particles=first.count + second.count,
            )
        )
    return results


def reconstruction_source(
    table: pd.DataFrame, import_dir: str | os.PathLike, meta: dict, scale: str = "crop"
) -> ImageSource:
    """The image source named by the config: ``crop`` (training box) or ``original``."""
    if scale == "crop":
        return cropped_source(Path(import_dir) / "stack.mrcs", meta)
    if scale == "original":
        stated = "flipped" if meta.get("source_flipped") else "raw"  # older meta.json
        return original_source(table, images_ctf=meta.get("source_ctf", stated))
    raise InputError(f"landscape.reconstruct.scale: expected 'crop' or 'original', got {scale!r}")


def table_rows(
    table: pd.DataFrame, index: np.ndarray, copy: np.ndarray | None = None
) -> np.ndarray:
    """Positions in the import table of the particles with original row numbers ``index``
    (and symmetry ``copy``, for a table expanded by gmmscape.symmetry)."""
    if (copy is None) != ("copy" not in table):
        has = "has" if copy is not None else "has no"
        raise InputError(
            f"latent table: it {has} symmetry copies (a 'copy' column) but the particle "
            "table does not match (expanded and unexpanded tables mixed?)"
        )
    keys = np.asarray(index) if copy is None else list(zip(index, copy, strict=True))
    where = (
        pd.Index(table["index"].to_numpy())
        if copy is None
        else pd.MultiIndex.from_frame(table[["index", "copy"]])
    )
    position = where.get_indexer(keys)
    if (position < 0).any():
        raise InputError(
            f"latent table: particle index {np.asarray(index)[position < 0][0]} is not in the "
            "import's particles.csv (latent and import from different runs?)"
        )
    return position


def copies(landscape: pd.DataFrame) -> np.ndarray | None:
    """The symmetry copy of each row of a latent table, None when it has none."""
    return landscape["copy"].to_numpy(np.int64) if "copy" in landscape else None


def write_half_maps(result: HalfMapResult, stem: str | os.PathLike, apix: float) -> None:
    """stem.mrc (full map), stem_half1.mrc, stem_half2.mrc and stem_fsc.csv."""
    stem = Path(stem)
    write_map(stem.with_suffix(".mrc"), result.full, apix)
    for name in ("half1", "half2"):
        write_map(stem.with_name(f"{stem.name}_{name}.mrc"), getattr(result, name), apix)
    result.fsc.to_csv(stem.with_name(f"{stem.name}_fsc.csv"), index=False)


CLASS_COLUMNS = ["cluster", "particles", "resolution_0.143", "resolution_0.5", "map"]


def reconstruct_classes(
    landscape: pd.DataFrame,
    table: pd.DataFrame,
    source: ImageSource,
    outdir: str | os.PathLike,
    *,
    part: tuple[int, int] = (0, 1),
    wiener: float = 1e-3,
    mask: np.ndarray | None = None,
    chunk: int = 256,
    interpolation: str = "trilinear",
    progress: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, dict[int, pd.DataFrame]]:
    """Map, half maps and FSC of every class of a landscape table (``index``, ``cluster``)
    into outdir as class_KK*.mrc / class_KK_fsc.csv. Unassigned particles (-1: hdbscan
    outliers, junk) and classes of a single particle (no half maps) are skipped. With
    ``part`` (p, P) only the classes p, p + P, ... in order are made (one job of a
    scatter, gmmscape.scatter); each class is its own pass over its particles, so its
    maps are the same bytes whichever job makes them.

    Returns the class table (CLASS_COLUMNS) and each class's FSC table.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    sizes = landscape.loc[landscape["cluster"] >= 0, "cluster"].value_counts()
    classes = sorted(sizes.index[sizes >= 2])
    if progress is not None and len(classes) < len(sizes) and part[0] == 0:
        progress(f"classes of one particle, skipped: {sorted(sizes.index[sizes < 2])}")
    rows = table_rows(table, landscape["index"].to_numpy(), copies(landscape))
    clusters = landscape["cluster"].to_numpy()
    summary, fsc = [], {}
    for k in (classes[i] for i in items_of(len(classes), part)):
        if progress is not None:
            progress(f"class {k}: {int(sizes[k])} particles")
        (result,) = reconstruct_with_halves(
            table, source, [rows[clusters == k]], wiener=wiener, mask=mask, chunk=chunk,
            interpolation=interpolation, progress=progress,
        )  # fmt: skip
        stem = outdir / f"class_{k:02d}"
        write_half_maps(result, stem, source.apix)
        summary.append(
            [int(k), result.n_particles, result.resolution(0.143), result.resolution(0.5),
             stem.with_suffix(".mrc").name]
        )  # fmt: skip
        fsc[int(k)] = result.fsc
    return pd.DataFrame(summary, columns=CLASS_COLUMNS), fsc
