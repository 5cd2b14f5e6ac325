"""Heterogeneity training (paper, "The e2gmm method" and Methods): decoder pre-training,
then encoder + decoder on the particles, checkpointed every epoch.

Loss per particle: 1 - mean FRC (over the resolution band) between the particle and
the projection, in the particle's pose, of the GMM decoded from its latent (plus a
small fixed Gaussian noise, which makes nearby latents decode to similar models).
Regularisers: L2 (as decoupled weight decay), the spread of amplitudes and widths, and a
quadratic penalty on latent norms beyond ``latent_bound`` (without a bound the
encoder could inflate the latents until the noise no longer mattered).

Particles stream from disk in shuffled chunks (gmmscape.streaming); a batch with a
non-finite loss is not applied: its junk particles are reported and skipped, and the
rest of the batch is retried.

A killed run restarts from its last epoch checkpoint and continues exactly as if it had
never stopped: the checkpoint holds the networks, the optimizer's moments, every random
generator (latent noise, dropout), the junk found so far and the loss history, and the
epoch's shuffled order is a function of (seed, epoch). Checkpoints are keyed on the
settings and on checksums of the GMM, the features and the particle table, so a run on
other data never continues a model it did not train.

A run writes into ``outdir``: ``encoder.keras``, ``decoder.keras``, ``decoder.json``
(what gmmscape.decode needs besides the network), ``loss.csv``, ``loss.png``,
``latent.csv`` (``index``, ``z0..``; one row per particle that is not junk; with ``copy``
after ``index`` on a symmetry-expanded table, one row per copy),
``junk.csv`` and ``checkpoints/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from .choices import refit_epochs
from .errors import InputError
from .features import FeatureInfo, gmm_checksum, open_features
from .io.common import atomic_output
from .networks import GmmSpace, build_encoder, check_mode
from .plots import plot_loss
from .posterior import score_latents
from .projection import FourierGrid, batch_signature, frc_loss, images_ft
from .rigid import RigidSpace, build_space, space_decoder
from .streaming import ParticleSet, chunk_order, read_rows, sequential_chunks
from .table import COPY
from .weighting import SpectralSNR, check_weighting, ctf_amplitude, frc_setup

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    """Every knob of a training run; defaults follow the paper where it gives one."""

    mode: str = "all"  # amplitude | position | all
    latent_dim: int = 4
    epochs: int = 20
    batch: int = 16
    lr: float = 1e-4
    noise: float = 0.05  # std of the fixed Gaussian noise added to the latent
    latent_bound: float = 1.0  # latent norms beyond this are penalised
    latent_weight: float = 1.0
    spread_weight: float = 1e-3  # weight of the std of amplitudes and widths
    res_lo: float | None = None  # Angstrom; None: from Fourier ring 1
    res_hi: float | None = None  # Angstrom; None: to Nyquist
    frc_weights: str = "flat"  # flat: the paper's FRC; snr: gmmscape.weighting
    pretrain_steps: int = 200  # decoder pre-training steps (latent 0 + noise -> neutral)
    encoder_init: float = 1e-3  # std of the encoder's output weights: latents start near 0
    hidden: tuple[int, ...] = field(default=(512, 512, 512))
    dropout: float = 0.3
    l2: float = 1e-3
    chunk: int = 1024  # particles read from disk at a time
    candidates: int = 32  # decoded models each particle is scored against (0: the encoder's)
    temperature: float = 0.3  # of the posterior weights, in units of the losses' spread
    refit: int = 0  # cycles of the decoder refitted to the posterior latents, then rescored
    seed: int = 0

    def __post_init__(self) -> None:
        check_mode(self.mode)
        check_weighting(self.frc_weights)
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.candidates < 0 or self.temperature <= 0 or self.refit < 0:
            raise InputError(
                f"train: expected candidates >= 0, temperature > 0 and refit >= 0; got "
                f"candidates {self.candidates}, temperature {self.temperature}, refit {self.refit}"
            )
        for name in ("latent_dim", "epochs", "batch", "chunk"):
            if getattr(self, name) < 1:
                raise InputError(f"train.{name}: expected >= 1, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1 or self.lr <= 0 or self.noise < 0:
            raise InputError(
                f"train: expected 0 <= dropout < 1, lr > 0, noise >= 0; got dropout "
                f"{self.dropout}, lr {self.lr}, noise {self.noise}"
            )

    def shape_key(self) -> dict:
        """Everything that shapes the networks (not the epoch count, not the scoring
        after the last epoch): a checkpoint resumes only if these agree."""
        after = ("epochs", "candidates", "temperature", "refit")
        return {k: v for k, v in asdict(self).items() if k not in after}


def _apply_if_finite(optimizer, grads, variables, per) -> tf.Tensor:
    """Apply the gradients only when they and the per-particle losses are finite."""
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
    ok = tf.logical_and(tf.reduce_all(tf.math.is_finite(per)), finite)
    if ok:
        optimizer.apply_gradients(zip(grads, variables, strict=True))
    return ok


def adam(lr: float, l2: float) -> keras.optimizers.Optimizer:
    """Adam with L2 as decoupled weight decay on the kernels (AdamW).

    A penalty l2 * |W|^2 added to the loss (Keras kernel regularisers) is rescaled by
    Adam to steps of size ~lr wherever the data gradient is still tiny, which is
    everywhere at the start (latent near 0, decoder insensitive to it): in measured runs
    it shrank the encoder to a constant latent. Decoupled decay shrinks weights by
    lr * l2 of their size per step whatever the gradients are.
    """
    optimizer = keras.optimizers.Adam(lr, weight_decay=l2 or None)
    if l2:
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


@dataclass
class Run:
    """The networks and state of one run, and its compiled steps."""

    settings: TrainSettings
    space: GmmSpace | RigidSpace
    grid: FourierGrid
    encoder: keras.Model
    decoder: keras.Model
    optimizer: keras.optimizers.Optimizer
    noise: tf.random.Generator
    epoch: tf.Variable
    pretrained: tf.Variable
    progress: tf.Variable  # JSON {"history": [...], "junk": {row: reason}}, saved with the rest
    use_ctf: bool = False  # apply each particle's CTF amplitude in the loss

    @classmethod
    def build(
        cls,
        settings: TrainSettings,
        space: GmmSpace | RigidSpace,
        grid: FourierGrid,
        use_ctf: bool = False,
    ) -> Run:
        keras.utils.set_random_seed(settings.seed)
        net = dict(hidden=settings.hidden, dropout=settings.dropout)
        encoder = build_encoder(
            space.neutral.size,
            settings.latent_dim,
            hidden=settings.hidden,
            dropout=settings.dropout,
            init_scale=settings.encoder_init,
        )
        decoder = space_decoder(space, settings.latent_dim, **net)
        optimizer = adam(settings.lr, settings.l2)
        optimizer.build(encoder.trainable_variables + decoder.trainable_variables)
        return cls(
            settings,
            space,
            grid,
            encoder,
            decoder,
            optimizer,
            tf.random.Generator.from_seed(settings.seed),
            tf.Variable(0, dtype=tf.int64, name="epoch"),
            tf.Variable(False, name="pretrained"),
            tf.Variable("{}", dtype=tf.string, name="progress"),
            use_ctf,
        )

    def checkpoint(self) -> tf.train.Checkpoint:
        """Everything a resumed run needs to continue bit for bit. Keras does not track its
        dropout layers' seed generators for tf.train.Checkpoint: they are listed here."""
        seeds = [
            v
            for model in (self.encoder, self.decoder)
            for v in model.non_trainable_variables
            if "seed_generator" in v.path
        ]
        return tf.train.Checkpoint(
            encoder=self.encoder,
            decoder=self.decoder,
            dropout_seeds=seeds,
            optimizer=self.optimizer,
            noise=self.noise,
            epoch=self.epoch,
            pretrained=self.pretrained,
            progress=self.progress,
        )

    def saved_progress(self, junk: dict[int, str]) -> tuple[list[dict], dict[int, str]]:
        """The loss history and junk of the restored checkpoint (`junk` when fresh)."""
        saved = json.loads(self.progress.numpy().decode())
        if not saved:
            return [], dict(junk)
        return saved["history"], {int(row): reason for row, reason in saved["junk"].items()}

    def save(self, manager: tf.train.CheckpointManager, history: list[dict], junk: dict) -> None:
        """Checkpoint the networks together with what the epochs so far found."""
        self.progress.assign(json.dumps({"history": history, "junk": junk}))
        manager.save()

    def pretrain(self) -> float:
        """Latent 0 plus the noise -> the neutral model: regress network-space parameters."""
        s = self.settings
        target = tf.constant(self.space.targets()[None])
        variables = self.decoder.trainable_variables
        optimizer = adam(s.lr * 10, s.l2)

        @tf.function
        def step():
            z = s.noise * self.noise.normal([s.batch, s.latent_dim])
            with tf.GradientTape() as tape:
                out = self.decoder(z, training=True)
                loss = tf.reduce_mean(tf.square(out - target))
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
            return loss

        loss = float("nan")
        for _ in range(s.pretrain_steps):
            loss = float(step())
        return loss

    def train_step(self):
        """Graph of one batch step; returns per-particle losses and whether it was applied."""
        s, space, grid = self.settings, self.space, self.grid
        variables = self.encoder.trainable_variables + self.decoder.trainable_variables
        features_spec = tf.TensorSpec((None, space.neutral.size), tf.float32)

        @tf.function(input_signature=batch_signature(grid, features_spec, self.use_ctf))
        def step(features, rot, shift, i_re, i_im, *ctf):
            with tf.GradientTape() as tape:
                z = self.encoder(features, training=True)
                out = self.decoder(z + s.noise * self.noise.normal(tf.shape(z)), training=True)
                per = frc_loss(space.to_gmm(out), rot, shift, i_re, i_im, grid, *ctf)
                excess = tf.nn.relu(tf.norm(z, axis=1) - s.latent_bound)
                total = (
                    tf.reduce_mean(per)
                    + s.spread_weight * tf.reduce_mean(space.spread(out))
                    + s.latent_weight * tf.reduce_mean(tf.square(excess))
                )
            ok = _apply_if_finite(self.optimizer, tape.gradient(total, variables), variables, per)
            return per, total, ok

        return step

    def refit_step(self):
        """Graph of one batch step of the decoder alone, each particle's latent given;
        returns what train_step returns."""
        s, space, grid = self.settings, self.space, self.grid
        variables = self.decoder.trainable_variables
        optimizer = adam(s.lr, s.l2)
        optimizer.build(variables)
        latent_spec = tf.TensorSpec((None, s.latent_dim), tf.float32)

        @tf.function(input_signature=batch_signature(grid, latent_spec, self.use_ctf))
        def step(z, rot, shift, i_re, i_im, *ctf):
            with tf.GradientTape() as tape:
                out = self.decoder(z + s.noise * self.noise.normal(tf.shape(z)), training=True)
                per = frc_loss(space.to_gmm(out), rot, shift, i_re, i_im, grid, *ctf)
                total = tf.reduce_mean(per) + s.spread_weight * tf.reduce_mean(space.spread(out))
            ok = _apply_if_finite(optimizer, tape.gradient(total, variables), variables, per)
            return per, total, ok

        return step

    def encode_step(self):
        spec = tf.TensorSpec((None, self.space.neutral.size), tf.float32)
        return tf.function(lambda f: self.encoder(f, training=False), input_signature=[spec])


@dataclass
class EpochStats:
    epoch: int
    loss: float
    frc_loss: float
    particles: int
    junk: int
    seconds: float


def _run_epoch(
    run: Run,
    step,
    particles: ParticleSet,
    inputs: Callable[[np.ndarray], np.ndarray],
    junk: dict[int, str],
    epoch: int,
) -> EpochStats:
    """One pass over the particles in shuffled chunks, ``step`` fed ``inputs(rows)`` (the
    features, or the latents of a refit); grows `junk` (row -> reason)."""
    s = run.settings
    t0 = time.perf_counter()
    total = frc_total = 0.0
    seen = 0
    for rows in chunk_order(particles.n, s.chunk, s.seed, epoch):
        rows = rows[[r not in junk for r in rows]]
        if len(rows) == 0:
            continue
        feats = inputs(rows)
        images = particles.images(rows)
        ctf = ctf_amplitude(particles, rows, run.grid) if run.use_ctf else None
        for start in range(0, len(rows), s.batch):
            sel = slice(start, start + s.batch)
            batch_rows, keep = rows[sel], np.ones(len(rows[sel]), bool)
            while keep.sum() >= 2:  # batch normalisation needs two particles
                i_re, i_im = images_ft(images[sel][keep], run.grid)
                per, loss, ok = step(
                    feats[sel][keep],
                    particles.rotations[batch_rows[keep]],
                    particles.shifts[batch_rows[keep]],
                    i_re,
                    i_im,
                    *(() if ctf is None else (ctf[sel][keep],)),
                )
                per = per.numpy()
                if bool(ok):
                    total += float(loss) * len(per)
                    frc_total += float(per.sum())
                    seen += len(per)
                    break
                _report_junk(particles, batch_rows[keep], per, junk, keep)
    seconds = time.perf_counter() - t0
    return EpochStats(
        epoch + 1, total / max(seen, 1), frc_total / max(seen, 1), seen, len(junk), seconds
    )


def _refit_decoder(
    run: Run, particles: ParticleSet, junk: dict[int, str], latent: np.ndarray, cycle: int
) -> None:
    """The decoder alone, trained for choices.refit_epochs with each particle not in
    ``junk`` at its latent in ``latent`` (one row per such particle, in row order): the
    models the particles are scored against were fitted to the encoder's noisier latents
    (docs/validation.md). Particles found junk here stay in the latents written."""
    s = run.settings
    by_row = np.zeros((particles.n, latent.shape[1]), np.float32)
    by_row[[r for r in range(particles.n) if r not in junk]] = latent
    step = run.refit_step()
    epochs = refit_epochs(particles.n - len(junk))
    for epoch in range(epochs):
        stats = _run_epoch(
            run,
            step,
            particles,
            lambda rows: by_row[rows],
            dict(junk),
            s.epochs + cycle * epochs + epoch,
        )
        log.info(
            "train %s: decoder refitted to the posterior latents, cycle %d epoch %d/%d, "
            "1-FRC %.5f, %.1f s",
            s.mode,
            cycle + 1,
            epoch + 1,
            epochs,
            stats.frc_loss,
            stats.seconds,
        )


def _report_junk(
    particles: ParticleSet,
    rows: np.ndarray,
    per: np.ndarray,
    junk: dict[int, str],
    keep: np.ndarray,
) -> None:
    """Mark particles with a non-finite loss as junk and drop them from the batch; a batch
    whose gradient alone is not finite is dropped whole, its particles not called junk."""
    bad = ~np.isfinite(per)
    if not bad.any():
        log.warning("train: batch skipped: non-finite gradient with finite losses")
        keep[:] = False
        return
    for r in rows[bad]:
        junk[int(r)] = "non-finite loss"
        log.warning("train: particle index %d skipped (non-finite loss)", particles.index[r])
    keep[np.flatnonzero(keep)[bad]] = False


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_output(path) as tmp:
        frame.to_csv(tmp, index=False)


def _save_model(model: keras.Model, path: Path) -> None:
    """model.save needs a .keras name; save beside the target, then rename into place."""
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".save.") as tmp:
        staged = Path(tmp) / path.name
        model.save(staged)
        os.replace(staged, path)


def file_checksum(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (features, particle table): the data a run learned from."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def remove_orphans(outdir: Path) -> None:
    """Delete what a killed run leaves half-written: hidden temporary outputs
    (io.common.atomic_output, _save_model) and TensorFlow's temporary checkpoint shards."""
    leftovers = [*outdir.glob(".*.tmp"), *outdir.glob(".save.*")]
    leftovers += (outdir / "checkpoints").glob("*_temp*")
    for path in leftovers:
        log.info("train: removing %s left by an interrupted run", path)
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _stale_reason(directory: Path, key: dict, epochs: int) -> str | None:
    """Why the checkpoints in `directory` must not be resumed (None: resume them)."""
    key_file = directory / "run.json"
    if not key_file.is_file():
        return "no run.json names what they were trained on"
    stored = json.loads(key_file.read_text())
    changed = sorted(k for k in key.keys() | stored.keys() if stored.get(k) != key.get(k))
    if changed:
        return f"they were trained on other data or settings ({', '.join(changed)} differ)"
    latest = tf.train.latest_checkpoint(directory)
    if latest:
        done = int(tf.train.load_variable(latest, "epoch/.ATTRIBUTES/VARIABLE_VALUE"))
        if done > epochs:
            return f"they are at epoch {done}, beyond the {epochs} epochs asked for"
    return None


def _open_checkpoints(
    run: Run, directory: Path, key: dict, epochs: int
) -> tf.train.CheckpointManager:
    """Restore the latest checkpoint of the same data and settings; start afresh otherwise,
    saying why in one log line."""
    key = json.loads(json.dumps(key))  # as stored: tuples become lists
    if directory.exists():
        reason = _stale_reason(directory, key, epochs)
        if reason:
            log.warning(
                "train: not resuming the checkpoints in %s: %s; starting afresh", directory, reason
            )
            shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_output(directory / "run.json") as tmp:
        tmp.write_text(json.dumps(key, indent=1) + "\n")
    checkpoint = run.checkpoint()
    manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=2)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        log.info("train: resumed from %s (epoch %d)", manager.latest_checkpoint, int(run.epoch))
    return manager


def _check_band(info: FeatureInfo, grid: FourierGrid, features: Path) -> None:
    if (info.ring_lo, info.ring_hi) != (grid.ring_lo, grid.ring_hi):
        raise InputError(
            f"{features}: features were computed over Fourier rings {info.ring_lo}-{info.ring_hi}, "
            f"training asks for rings {grid.ring_lo}-{grid.ring_hi} (train.res_lo/res_hi)"
        )


def _write_latent(run: Run, particles: ParticleSet, features: Path, junk: dict, path: Path):
    """The encoder's latents, or with ``candidates`` their posterior means
    (gmmscape.posterior), after ``refit`` cycles of the decoder refitted to them."""
    s = run.settings
    encode = run.encode_step()
    good = np.array([r not in junk for r in range(particles.n)])
    parts = []
    for rows in sequential_chunks(particles.n, s.chunk):
        rows = rows[good[rows]]
        if len(rows):
            parts.append(encode(read_rows(features, rows, np.float32)).numpy())
    latent = np.concatenate(parts)
    if s.candidates:
        good_rows = np.flatnonzero(good)

        def scored(z: np.ndarray) -> np.ndarray:
            return score_latents(
                z,
                lambda c: run.space.to_gmm(run.decoder(c, training=False)).numpy(),
                particles,
                good_rows,
                run.grid,
                run.use_ctf,
                candidates=s.candidates,
                temperature=s.temperature,
                seed=s.seed,
            )

        latent = scored(latent)
        for cycle in range(s.refit):
            _refit_decoder(run, particles, junk, latent, cycle)
            latent = scored(latent)
    frame = pd.DataFrame(latent, columns=[f"z{k}" for k in range(latent.shape[1])])
    frame.insert(0, "index", particles.index[good])
    if particles.copy is not None:
        frame.insert(1, COPY, particles.copy[good])
    _write_csv(frame, path)


def train(
    neutral: np.ndarray,
    particles: ParticleSet,
    features: str | os.PathLike,
    outdir: str | os.PathLike,
    settings: TrainSettings,
    *,
    inside: np.ndarray | None = None,
    frame: tuple[int, float] | None = None,
    junk_reasons: dict[int, str] | None = None,
    snr: SpectralSNR | None = None,
) -> pd.DataFrame:
    """Train (or resume) one run; returns the loss history (one row per epoch).

    ``inside`` (N,) bool restricts which Gaussians may change (from a mask). ``frame``
    (box, apix) of the neutral GMM's map is where decoded maps go (default: the
    particles' box). ``junk_reasons`` (table row -> reason, gmmscape.junk) names why
    the features' junk rows are junk in junk.csv. ``snr``: the particles' spectral SNR
    that ``settings.frc_weights == "snr"`` weighs the rings with (gmmscape.weighting).
    """
    features, outdir = Path(features), Path(outdir)
    space = build_space(neutral, settings.mode, inside)
    info = open_features(features, space.neutral, particles)
    grid = FourierGrid(particles.box, particles.apix, settings.res_lo, settings.res_hi)
    _check_band(info, grid, features)
    grid, use_ctf = frc_setup(particles, grid, settings.frc_weights, snr)
    outdir.mkdir(parents=True, exist_ok=True)
    run = Run.build(settings, space, grid, use_ctf)
    key = settings.shape_key() | {
        "gmm_sha256": gmm_checksum(space.neutral),
        "free": space.to_dict()["free"],
        "features_sha256": file_checksum(features),
        "table_sha256": file_checksum(particles.table),
    }
    remove_orphans(outdir)
    manager = _open_checkpoints(run, outdir / "checkpoints", key, settings.epochs)
    reasons = junk_reasons or {}
    history, junk = run.saved_progress({r: reasons.get(r, "features") for r in info.junk_rows})
    if not bool(run.pretrained):
        loss = run.pretrain()
        log.info("train: decoder pre-trained to the neutral model (mse %.2e)", loss)
        run.pretrained.assign(True)
        run.save(manager, history, junk)
    loss_path = outdir / "loss.csv"
    step = run.train_step()

    def read_features(rows: np.ndarray) -> np.ndarray:
        return read_rows(features, rows, np.float32)

    for epoch in range(int(run.epoch), settings.epochs):
        stats = _run_epoch(run, step, particles, read_features, junk, epoch)
        log.info(
            "train %s: epoch %d/%d loss %.5f (1-FRC %.5f) %d particles, %d junk, %.1f s (%.0f/s)",
            settings.mode,
            stats.epoch,
            settings.epochs,
            stats.loss,
            stats.frc_loss,
            stats.particles,
            stats.junk,
            stats.seconds,
            stats.particles / max(stats.seconds, 1e-9),
        )
        run.epoch.assign(epoch + 1)
        history.append(asdict(stats))
        run.save(manager, history, junk)
        _write_csv(pd.DataFrame(history), loss_path)
    history = pd.DataFrame(history)
    _write_csv(history, loss_path)
    _write_latent(run, particles, features, junk, outdir / "latent.csv")  # may refit the decoder
    _save_model(run.encoder, outdir / "encoder.keras")
    _save_model(run.decoder, outdir / "decoder.keras")
    box, apix = frame or (particles.box, particles.apix)
    meta = {
        "latent_dim": settings.latent_dim,
        "mode": settings.mode,
        "box": box,
        "apix": apix,
        "settings": asdict(settings),
        "space": space.to_dict(),
    }
    with atomic_output(outdir / "decoder.json") as tmp:
        tmp.write_text(json.dumps(meta) + "\n")
    junk_frame = pd.DataFrame({"index": particles.index[list(junk)], "reason": list(junk.values())})
    if particles.copy is not None:
        junk_frame.insert(1, COPY, particles.copy[list(junk)])
    _write_csv(junk_frame, outdir / "junk.csv")
    plot_loss(history, outdir / "loss.png")
    return history


def settings_from_config(section: dict, **overrides) -> TrainSettings:
    """TrainSettings from the config's `train:` section (unknown keys are errors)."""
    known = set(TrainSettings.__dataclass_fields__)
    unknown = sorted(set(section) - known)
    if unknown:
        raise InputError(f"train: unknown setting(s) {', '.join(unknown)}")
    return replace(TrainSettings(), **{**section, **overrides})
