"""The interactive landscape explorer: one self-contained HTML page per run.

The page (``explorer_assets/``: plain JavaScript and CSS, inlined) draws every particle of
the run's PCA and UMAP views and decodes the GMM at the cursor in the browser, from the
decoder's weights exported here. It needs no server, no kernel and no network, so it
opens from disk or from a cluster's shared folder.

How a 2D point becomes a latent vector:
- PCA view: the exact inverse transform, mean + x * v0 + y * v1 (the other components at
  zero), of the full PCA of the run's latent vectors (gmmscape.embedding.fit_pca);
- UMAP view (no inverse exists): the mean of the latents of the NEAREST particles in
  the view, weighted by 1 / (distance + 1e-6 of the view's extent).
The decoder is evaluated as Keras does at inference: dense layers, dropout as identity,
batch normalisation with its moving statistics (folded here into the next dense layer),
the sigmoid output, then ``GmmSpace.to_gmm``. Only the outputs the mode frees are
exported (the rest stay neutral): a position-mode page carries 3/5 of the output layer.
Selections leave the page as an index file; ``gmmscape subset`` (printed on the page)
turns it into a STAR (or .lst) of the user's original rows.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from .embedding import embedded, fit_pca, latent_columns
from .errors import InputError
from .io.common import atomic_output

DRAW_LIMIT = 50_000  # particles drawn per frame above this count (a fixed random subset)
NEAREST = 8  # UMAP view: particles whose latents average to the cursor's latent
_ACTIVATIONS = ("relu", "sigmoid", "linear")


def _b64(array: np.ndarray, dtype: str = "<f4") -> str:
    """Little-endian base64 of an array, row-major (the page reads it as a typed array)."""
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def decoder_layers(model, keep: np.ndarray) -> list[dict]:
    """The dense layers of a Keras decoder for the page, batch normalisation folded in.

    ``keep`` (outputs,) bool: outputs of the last layer to export. Dropout is the
    identity at inference; a BatchNormalization y = g (x - m) / sqrt(v + eps) + b is an
    affine map folded into the following dense layer (exact in float64).
    """
    layers, scale, shift = [], None, None
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("InputLayer", "Dropout"):
            continue
        if kind == "BatchNormalization":
            gamma, beta, mean, var = (np.asarray(w, np.float64) for w in layer.get_weights())
            scale = gamma / np.sqrt(var + layer.epsilon)
            shift = beta - mean * scale
            continue
        activation = getattr(getattr(layer, "activation", None), "__name__", None)
        if kind != "Dense" or activation not in _ACTIVATIONS:
            raise InputError(
                f"decoder layer {layer.name} ({kind}, activation {activation}): the explorer "
                "evaluates Dense (relu/sigmoid/linear), Dropout and BatchNormalization only"
            )
        kernel, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
        if scale is not None:
            kernel, bias = kernel * scale[:, None], bias + shift @ kernel
            scale = shift = None
        layers.append({"kernel": kernel, "bias": bias, "activation": activation})
    if scale is not None or not layers:
        raise InputError("decoder: expected a dense output layer after the last normalisation")
    last = layers[-1]
    keep = np.asarray(keep, bool)
    if keep.size != last["bias"].size:
        raise InputError(f"decoder: {last['bias'].size} outputs, expected {keep.size}")
    last["kernel"], last["bias"] = last["kernel"][:, keep], last["bias"][keep]
    return [
        {
            "inputs": int(d["kernel"].shape[0]),
            "outputs": int(d["kernel"].shape[1]),
            "activation": d["activation"],
            "kernel": _b64(d["kernel"].T),  # (outputs, inputs) row-major: dot products
            "bias": _b64(d["bias"]),
        }
        for d in layers
    ]


def decoder_data(decoder) -> dict:
    """What the page needs to decode: layers, the kept outputs and the GmmSpace."""
    space = decoder.space
    free = np.asarray(space.free, bool)
    return {
        "latent_dim": int(decoder.latent_dim),
        "box": int(decoder.box),
        "apix": float(decoder.apix),
        "mode": decoder.mode,
        "n_gaussians": int(space.n_gaussians),
        "layers": decoder_layers(decoder.model, free.reshape(-1)),
        "free": _b64(np.flatnonzero(free.reshape(-1)), "<i4"),  # flat indices into (N, 5)
        "neutral": _b64(space.neutral),
        "amp_scale": float(space.amp_scale),
        "pin_mean": bool(free[:, 3].all()),  # GmmSpace.to_gmm rescales amplitudes then
        "neutral_mean_amplitude": float(np.mean(np.asarray(space.neutral[:, 3], np.float32))),
    }


@dataclass
class ExplorerInputs:
    """A run's results the page shows (paths only to print them; nothing is copied)."""

    run: str
    landscape: pd.DataFrame  # latent.csv: index, z*, [umap0, umap1], cluster
    classes: pd.DataFrame | None = None  # classes.csv: cluster, particles, map, ...
    subsets: pd.DataFrame | None = None  # subsets.csv: cluster, particles, file
    trajectories: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n, d)
    class_dir: str = ""  # folders of the class maps and subsets, as printed
    subset_dir: str = ""
    particles: str = ""  # the user's particle file and the import's meta.json (command)
    meta: str = ""


def _view_points(points: np.ndarray, latent: np.ndarray, view: np.ndarray) -> np.ndarray:
    """Places in a view without a transform (UMAP) of latent points: the mean view place
    of their NEAREST particles in the latent space."""
    from scipy.spatial import cKDTree

    k = min(NEAREST, len(latent))
    _, rows = cKDTree(latent).query(points, k=k)
    return view[np.asarray(rows).reshape(len(points), k)].mean(axis=1)


def page_data(inputs: ExplorerInputs, decoder) -> dict:
    """The page's data: particles (latent, views, class), PCA inverse, decoder, classes,
    trajectories and the selection command."""
    frame = embedded(inputs.landscape)
    columns = latent_columns(frame)
    if len(columns) != decoder.latent_dim:
        raise InputError(
            f"landscape of {inputs.run}: {len(columns)} latent columns, the decoder takes "
            f"{decoder.latent_dim}"
        )
    latent = frame[columns].to_numpy(np.float64)
    pca = fit_pca(latent)
    components = np.zeros((2, latent.shape[1]))
    components[: min(2, pca.n_components_)] = pca.components_[:2]
    views = {"pca": (latent - pca.mean_) @ components.T}
    if {"umap0", "umap1"} <= set(frame.columns):
        views["umap"] = frame[["umap0", "umap1"]].to_numpy(np.float64)
    trajectories = []
    for name, points in inputs.trajectories.items():
        points = np.asarray(points, np.float64)
        placed = {"pca": (points - pca.mean_) @ components.T}
        if "umap" in views:
            placed["umap"] = _view_points(points, latent, views["umap"])
        trajectories.append(
            {
                "name": name,
                "latent": points.tolist(),
                "views": {k: v.tolist() for k, v in placed.items()},
            }
        )
    return {
        "run": inputs.run,
        "n_particles": int(len(frame)),
        "n_junk": int(len(inputs.landscape) - len(frame)),
        "draw_limit": DRAW_LIMIT,
        "nearest": NEAREST,
        "columns": columns,
        "index": _b64(frame["index"].to_numpy(np.int64), "<i4"),
        "copies": "copy" in frame,  # symmetry copies: the page links those of a particle
        "cluster": _b64(frame["cluster"].to_numpy(np.int64), "<i4"),
        "latent": _b64(latent),
        "views": {k: _b64(v) for k, v in views.items()},
        "pca": {"mean": pca.mean_.tolist(), "components": components.tolist()},
        "decoder": decoder_data(decoder),
        "classes": _classes(inputs),
        "trajectories": trajectories,
        "subset": {"particles": inputs.particles, "meta": inputs.meta},
    }


def _classes(inputs: ExplorerInputs) -> list[dict]:
    """Per class: its number and the paths of its map and subset (when they exist)."""
    maps = {}
    if inputs.classes is not None and "map" in inputs.classes:
        maps = dict(zip(inputs.classes["cluster"], inputs.classes["map"], strict=True))
    files = {}
    if inputs.subsets is not None and "file" in inputs.subsets:
        files = dict(zip(inputs.subsets["cluster"], inputs.subsets["file"], strict=True))
    clusters = sorted(int(k) for k in embedded(inputs.landscape)["cluster"].unique())
    return [
        {
            "cluster": k,
            "map": os.path.join(inputs.class_dir, maps[k]) if k in maps else "",
            "subset": os.path.join(inputs.subset_dir, files[k]) if k in files else "",
        }
        for k in clusters
    ]


def _asset(name: str) -> str:
    return resources.files("gmmscape").joinpath("explorer_assets", name).read_text("utf-8")


def render_page(data: dict) -> str:
    """The HTML page with its script, style and data inlined (one pass over the template,
    so nothing inlined is itself substituted)."""
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    parts = {
        "TITLE": html.escape(f"gmmscape explorer: {data['run']}"),
        "STYLE": _asset("explorer.css"),
        "SCRIPT": _asset("explorer.js"),  # holds no "</" (tests/test_explorer.py)
        "DATA": payload,
    }
    return re.sub(r"@@(TITLE|STYLE|SCRIPT|DATA)@@", lambda m: parts[m[1]], _asset("explorer.html"))


def write_explorer(path: str | os.PathLike, inputs: ExplorerInputs, decoder) -> Path:
    """Write the explorer page of a run (atomically); returns its path."""
    page = render_page(page_data(inputs, decoder))
    with atomic_output(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(path)


def read_trajectories(table: str | os.PathLike, folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """Latent points (n, d) of every trajectory of a run (trajectories.csv and the
    trajectory.csv of each trajectory's folder)."""
    summary = pd.read_csv(table) if Path(table).stat().st_size > 4 else pd.DataFrame()
    out = {}
    for name in summary.get("trajectory", []):
        points = pd.read_csv(Path(folder) / name / "trajectory.csv")
        out[name] = points[latent_columns(points)].to_numpy(np.float64)
    return out


def build_run_explorer(
    landscape_dir: str | os.PathLike,
    train_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    particles: str | os.PathLike = "",
    meta: str | os.PathLike = "",
) -> Path:
    """The explorer of a pipeline run from its landscape/{run} and train/{run} folders."""
    from .decode import load_decoder  # Keras: only when a page is built

    folder = Path(landscape_dir)

    def table(name: str) -> pd.DataFrame | None:
        path = folder / name
        return pd.read_csv(path) if path.is_file() and path.stat().st_size else None

    trajectories = {}
    if (folder / "trajectories.csv").is_file():
        trajectories = read_trajectories(folder / "trajectories.csv", folder / "trajectories")
    inputs = ExplorerInputs(
        run=folder.name,
        landscape=pd.read_csv(folder / "latent.csv"),
        classes=table("classes.csv"),
        subsets=table("subsets.csv"),
        trajectories=trajectories,
        class_dir=str((folder / "classes").resolve()),
        subset_dir=str((folder / "subsets").resolve()),
        particles=str(Path(particles).resolve()) if particles else "",
        meta=str(Path(meta).resolve()) if meta else "",
    )
    return write_explorer(out, inputs, load_decoder(train_dir))


def read_indices(path: str | os.PathLike) -> np.ndarray:
    """Particle rows (0-based, unique, sorted) of an index file saved by the page: one
    integer per line, lines starting with # ignored."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: index file not found")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            rows.append(int(text))
        except ValueError as err:
            raise InputError(
                f"{path}, line {number}: expected a particle index, got {text!r}"
            ) from err
    if not rows:
        raise InputError(f"{path}: no particle indices")
    return np.unique(np.asarray(rows, np.int64))
