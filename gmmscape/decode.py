"""Trained decoders: latent points -> GMMs, and the files of the `gmmscape decode` command.

A run directory (``train/{run}/``) holds ``decoder.keras`` (standard Keras layers
only) and ``decoder.json`` (latent dimension, box, pixel size and the GmmSpace that
turns the network's sigmoid outputs into GMMs). Loading needs neither the training
code nor the features.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np
import pandas as pd

from .errors import InputError
from .networks import GmmSpace
from .rigid import RigidSpace, space_from_dict

if TYPE_CHECKING:
    from . import trajectory


@dataclass(frozen=True, eq=False)
class Decoder:
    """A trained decoder: ``decode(z)`` maps latent points (M, d) to GMMs (M, N, 5)."""

    model: keras.Model
    space: GmmSpace | RigidSpace
    latent_dim: int
    box: int  # box and pixel size (Angstrom) of the neutral GMM's map
    apix: float
    mode: str
    run_dir: Path | None = None  # where load_decoder read it from

    @property
    def frame_source(self) -> str:
        """What the box and pixel size belong to, for messages (masks.check_extent)."""
        return "the trained decoder" + (f" of {self.run_dir}" if self.run_dir else "")

    @property
    def neutral(self) -> np.ndarray:
        """The neutral GMM (N, 5) the run started from."""
        return self.space.neutral

    def decode(self, z: np.ndarray, batch: int = 256) -> np.ndarray:
        """GMMs (M, N, 5) float32 of latent points z (M, d) (inference mode, no noise)."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise InputError(f"latent points: expected shape (M, {self.latent_dim}), got {z.shape}")
        out = [
            self.space.to_gmm(self.model(z[k : k + batch], training=False)).numpy()
            for k in range(0, len(z), batch)
        ]
        return np.concatenate(out) if out else np.zeros((0, *self.neutral.shape), np.float32)


def load_decoder(run_dir: str | os.PathLike) -> Decoder:
    """The decoder of a finished training run (``train/{run}``)."""
    run_dir = Path(run_dir)
    model_path, meta_path = run_dir / "decoder.keras", run_dir / "decoder.json"
    for path in (model_path, meta_path):
        if not path.is_file():
            raise InputError(f"{path}: not found (is {run_dir} a finished training run?)")
    meta = json.loads(meta_path.read_text())
    return Decoder(
        model=keras.saving.load_model(model_path, compile=False),
        space=space_from_dict(meta["space"]),
        latent_dim=int(meta["latent_dim"]),
        box=int(meta["box"]),
        apix=float(meta["apix"]),
        mode=str(meta["mode"]),
        run_dir=run_dir,
    )


def decode(decoder_dir: str | os.PathLike, latent: np.ndarray) -> np.ndarray:
    """GMMs (M, N, 5) of latent points (M, d) through the decoder of a run directory."""
    return load_decoder(decoder_dir).decode(latent)


def parse_points(
    points: list[str] | None, latent_file: str | os.PathLike | None, latent_dim: int
) -> np.ndarray:
    """Latent points from comma-separated strings and/or a CSV file (columns z0..z{d-1})."""
    rows = []
    for text in points or []:
        try:
            rows.append([float(v) for v in text.split(",")])
        except ValueError as err:
            raise InputError(f"--latent {text!r}: expected comma-separated numbers") from err
        if len(rows[-1]) != latent_dim:
            raise InputError(
                f"--latent {text!r}: expected {latent_dim} numbers, got {len(rows[-1])}"
            )
    if latent_file is not None:
        frame = pd.read_csv(latent_file)
        columns = [f"z{k}" for k in range(latent_dim)]
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise InputError(f"{latent_file}: missing latent columns {', '.join(missing)}")
        rows.extend(frame[columns].to_numpy(np.float64).tolist())
    if not rows:
        raise InputError("decode: give latent points with --latent and/or --latent-file")
    return np.asarray(rows, dtype=np.float32)


def write_points(
    decoder: trajectory.LatentDecoder,
    points: np.ndarray,
    outdir: str | os.PathLike,
    *,
    box: int | None = None,
    apix: float | None = None,
) -> list[Path]:
    """Write each point's GMM as point_KKK.txt/.pdb/.mrc (box and apix default to the
    neutral GMM's map); returns the text files."""
    from . import gmmio

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    box, apix = box or decoder.box, apix or decoder.apix
    written = []
    for k, gmm in enumerate(decoder.decode(points)):
        stem = outdir / f"point_{k:03d}"
        gmmio.write_text(stem.with_suffix(".txt"), gmm, box, apix)
        gmmio.write_pdb(stem.with_suffix(".pdb"), gmm, box, apix)
        gmmio.write_density(stem.with_suffix(".mrc"), gmm, box, apix)
        written.append(stem.with_suffix(".txt"))
    pd.DataFrame(points, columns=[f"z{k}" for k in range(points.shape[1])]).to_csv(
        outdir / "points.csv", index_label="point"
    )
    return written
