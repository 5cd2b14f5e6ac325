"""Differentiable GMM kernels in TensorFlow: projections, densities, FRC and its gradients.

A GMM is an array (N, 5) or (B, N, 5) of ``x, y, z, amplitude, sigma`` with positions
and widths in fractions of the box (docs/conventions.md). A Gaussian at c (pixels)
appears in a particle with orientation R and shift t at ``p = R[:2] @ c + t``.

The projection's transform is the central slice of the 3D transform. The Gaussian
factor and the phase both separate over kx and ky, so

    P(ky, kx) = sum_j w_j gy_j(ky) gx_j(kx),   w_j = (2 pi)^{3/2} A_j sigma_j^3,
    g_j(k) = exp(-2 pi^2 sigma_j^2 k^2) exp(-2 pi i k p_j / b),

one GEMM over N after O(N b) exponentials. Real and imaginary parts are kept as
stacked real blocks (TensorFlow's complex exp is slow on CPU), and only the rows and
columns inside the loss band are computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from .errors import InputError
from .fourier import check_box, to_fourier

TWO_PI = 2.0 * math.pi


@dataclass(frozen=True, eq=False)
class FourierGrid:
    """The part of a box's rfft2 grid inside a resolution band, with its FRC rings.

    ``res_lo``/``res_hi`` in Angstrom (None: from ring 1 / to Nyquist). Rows ``ky``
    keep FFT order, so with no upper limit the grid is the whole rfft2 grid and
    ``fourier.to_real`` inverts a projection directly. ``ring_weights`` (one per ring
    of the band; None: all equal, the paper's FRC) weigh the rings in the FRC loss.
    """

    box: int
    apix: float = 1.0
    res_lo: float | None = None
    res_hi: float | None = None
    ring_weights: tuple[float, ...] | None = None
    ring_lo: int = field(init=False)
    ring_hi: int = field(init=False)
    rows: np.ndarray = field(init=False, repr=False)
    ky: np.ndarray = field(init=False, repr=False)
    kx: np.ndarray = field(init=False, repr=False)
    ring: np.ndarray = field(init=False, repr=False)
    weight: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        box = check_box(self.box)
        half = box // 2
        hi = half if self.res_hi is None else int(math.floor(box * self.apix / self.res_hi))
        lo = 1 if self.res_lo is None else int(math.ceil(box * self.apix / self.res_lo))
        hi, lo = min(hi, half), max(lo, 1)
        if lo > hi:
            raise InputError(
                f"resolution band {self.res_lo}-{self.res_hi} A holds no Fourier ring for box "
                f"{box} at {self.apix} A/pixel (Nyquist {2 * self.apix:.2f} A)"
            )
        if self.ring_weights is not None and len(self.ring_weights) != hi - lo + 1:
            raise ValueError(f"{len(self.ring_weights)} ring weights for {hi - lo + 1} rings")
        all_ky = np.fft.fftfreq(box, 1.0 / box)
        rows = np.nonzero(np.abs(all_ky) <= hi)[0]
        ky, kx = all_ky[rows], np.arange(hi + 1, dtype=np.float64)
        ring = np.rint(np.hypot(ky[:, None], kx[None, :])).astype(np.int64)
        # Half-plane grid: every column but kx = 0 and kx = b/2 stands for a conjugate pair.
        pair = np.where((kx == 0) | (kx == half), 1.0, 2.0)[None, :]
        weight = np.where((ring >= lo) & (ring <= hi), pair, 0.0)
        for name, value in dict(
            box=box, ring_lo=lo, ring_hi=hi, rows=rows, ky=ky, kx=kx, ring=ring, weight=weight
        ).items():
            object.__setattr__(self, name, value)

    def _key(self) -> tuple:
        return (self.box, self.apix, self.ring_lo, self.ring_hi, self.ring_weights)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FourierGrid) and self._key() == other._key()

    def __hash__(self) -> int:  # lets tf.function trace once per grid
        return hash(self._key())

    @property
    def n_rings(self) -> int:
        return self.ring_hi - self.ring_lo + 1

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.ky), len(self.kx)

    def ring_resolution(self) -> np.ndarray:
        """Resolution in Angstrom of each FRC ring, ring_lo..ring_hi."""
        return self.box * self.apix / np.arange(self.ring_lo, self.ring_hi + 1)

    def ring_frequency(self) -> np.ndarray:
        """Spatial frequency (1/Angstrom) of each FRC ring, ring_lo..ring_hi."""
        return 1.0 / self.ring_resolution()

    def ring_pixels(self) -> np.ndarray:
        """Pixels of the full plane in each ring (conjugate pairs counted twice)."""
        return self.ring_matrix().sum(axis=0)

    def weights(self) -> np.ndarray:
        """(n_rings,) float32 ring weights of the FRC loss, mean 1."""
        w = np.ones(self.n_rings) if self.ring_weights is None else np.asarray(self.ring_weights)
        return (w / w.mean()).astype(np.float32)

    def ring_matrix(self) -> np.ndarray:
        """(ny*nx, n_rings) float32: weighted one-hot map from grid points to rings."""
        flat_ring = self.ring.reshape(-1) - self.ring_lo
        m = np.zeros((flat_ring.size, self.n_rings), dtype=np.float32)
        inside = self.weight.reshape(-1) > 0
        m[np.nonzero(inside)[0], flat_ring[inside]] = self.weight.reshape(-1)[inside]
        return m

    def crop(self, ft: np.ndarray) -> np.ndarray:
        """rfft2 of the full box (..., b, b//2+1) -> this grid (..., ny, nx)."""
        return ft[..., self.rows, : len(self.kx)]


def images_ft(images: np.ndarray, grid: FourierGrid) -> tuple[np.ndarray, np.ndarray]:
    """Real images (B, b, b) -> (re, im) float32 arrays on the grid, the FRC's other side."""
    if images.shape[-1] != grid.box or images.shape[-2] != grid.box:
        raise InputError(f"images of shape {images.shape[-2:]} do not match the box {grid.box}")
    ft = grid.crop(to_fourier(np.asarray(images, dtype=np.float32)))
    return ft.real.astype(np.float32), ft.imag.astype(np.float32)


def _batched(gmm: tf.Tensor, batch: tf.Tensor) -> tf.Tensor:
    """Broadcast a shared (N, 5) model to (B, N, 5); a (B, N, 5) model passes through."""
    gmm = tf.convert_to_tensor(gmm, tf.float32)
    if gmm.shape.rank == 2:
        return tf.broadcast_to(gmm[None], tf.concat([[batch], tf.shape(gmm)], 0))
    return gmm


def _positions(gmm: tf.Tensor, rot: tf.Tensor, shift: tf.Tensor, box: int) -> tf.Tensor:
    """Projected centres in pixels relative to the image origin, (B, N, 2) as (x, y)."""
    rot = tf.convert_to_tensor(rot, tf.float32)
    shift = tf.convert_to_tensor(shift, tf.float32)
    return tf.einsum("bij,bnj->bni", rot[:, :2, :], gmm[..., :3] * box) + shift[:, None, :]


def axis_factors(k: np.ndarray, pos: tf.Tensor, sigma: tf.Tensor, box: int):
    """Real and imaginary parts of g_j(k) for one axis, each (..., N, len(k)).

    ``pos`` (..., N) in pixels, ``sigma`` (..., N) in box fractions, ``k`` integer indices.
    """
    k = tf.constant(k, tf.float32)
    amp = tf.exp(-2.0 * math.pi**2 * (sigma[..., None] * k) ** 2)
    phase = (TWO_PI / box) * pos[..., None] * k
    return amp * tf.cos(phase), -amp * tf.sin(phase)


def project_ft(gmm, rot, shift, grid: FourierGrid) -> tuple[tf.Tensor, tf.Tensor]:
    """Transforms of the projections of a GMM on the grid: (re, im), each (B, ny, nx).

    ``gmm`` (N, 5) shared or (B, N, 5) per particle; ``rot`` (B, 3, 3); ``shift``
    (B, 2) in pixels.
    """
    rot = tf.convert_to_tensor(rot, tf.float32)
    gmm = _batched(gmm, tf.shape(rot)[0])
    box = grid.box
    pos = _positions(gmm, rot, shift, box)
    w = (TWO_PI**1.5) * gmm[..., 3] * (gmm[..., 4] * box) ** 3
    xr, xi = axis_factors(grid.kx, pos[..., 0], gmm[..., 4], box)
    yr, yi = axis_factors(grid.ky, pos[..., 1], gmm[..., 4], box)
    return separable_sum(w[..., None] * yr, w[..., None] * yi, xr, xi)


def separable_sum(a_re, a_im, b_re, b_im) -> tuple[tf.Tensor, tf.Tensor]:
    """sum_j a_j(p) b_j(q) for complex factors held as real pairs: (re, im), each (B, P, Q).

    ``a_*`` (B, N, P), ``b_*`` (B, N, Q). [re; im] = [[Ar, -Ai], [Ai, Ar]]^T [Br; Bi] is
    one batched GEMM over 2N; put the smaller factor in ``a`` (it is copied four times).
    """
    left = tf.concat([tf.concat([a_re, -a_im], 1), tf.concat([a_im, a_re], 1)], 2)  # (B, 2N, 2P)
    right = tf.concat([b_re, b_im], 1)  # (B, 2N, Q)
    both = tf.matmul(left, right, transpose_a=True)  # (B, 2P, Q)
    p = a_re.shape[-1]
    return both[:, :p], both[:, p:]


def project_real(gmm, rot, shift, box: int) -> tf.Tensor:
    """Real-space projections (B, b, b) [y, x]: line integrals of the Gaussians along z."""
    rot = tf.convert_to_tensor(rot, tf.float32)
    gmm = _batched(gmm, tf.shape(rot)[0])
    pos = _positions(gmm, rot, shift, box)
    sigma = gmm[..., 4] * box
    coords = tf.constant(np.arange(box) - box // 2, tf.float32)

    def axis(p):
        return tf.exp(-((coords - p[..., None]) ** 2) / (2.0 * sigma[..., None] ** 2))

    w = math.sqrt(TWO_PI) * sigma * gmm[..., 3]
    return tf.einsum("bny,bnx->byx", w[..., None] * axis(pos[..., 1]), axis(pos[..., 0]))


def density_tf(gmm, box: int) -> tf.Tensor:
    """Differentiable density of one GMM (N, 5) on the (b, b, b) voxel grid [z, y, x]."""
    gmm = tf.convert_to_tensor(gmm, tf.float32)
    coords = tf.constant(np.arange(box) - box // 2, tf.float32)
    sigma = gmm[:, 4] * box

    def axis(i):
        d = coords - gmm[:, i : i + 1] * box
        return tf.exp(-(d**2) / (2.0 * sigma[:, None] ** 2))

    gz = gmm[:, 3:4] * axis(2)
    return tf.einsum("nz,ny,nx->zyx", gz, axis(1), axis(0))


def density(gmm: np.ndarray, box: int, chunk: int = 512) -> np.ndarray:
    """Density of a GMM (N, 5) on the voxel grid, float32 numpy [z, y, x], in chunks of N."""
    gmm = np.asarray(gmm, dtype=np.float32)
    box = check_box(box)
    vol = np.zeros((box, box, box), dtype=np.float32)
    for start in range(0, len(gmm), chunk):
        vol += density_tf(gmm[start : start + chunk], box).numpy()
    return vol


def frc(p_re, p_im, i_re, i_im, grid: FourierGrid, eps: float = 1e-12) -> tf.Tensor:
    """Fourier ring correlation per ring (B, n_rings) between two sets of transforms."""
    rings = tf.constant(grid.ring_matrix())
    batch = tf.shape(p_re)[0]

    def ring_sum(x):
        return tf.matmul(tf.reshape(x, [batch, -1]), rings)

    cross = ring_sum(p_re * i_re + p_im * i_im)
    pp = ring_sum(p_re * p_re + p_im * p_im)
    ii = ring_sum(i_re * i_re + i_im * i_im)
    return cross / tf.sqrt(pp * ii + eps)


def frc_loss(gmm, rot, shift, i_re, i_im, grid: FourierGrid, ctf=None) -> tf.Tensor:
    """Per-particle loss 1 - weighted mean FRC over the band between model projections
    and images.

    ``ctf`` (B, ny, nx), optional: each particle's CTF amplitude on the grid. The
    projection is multiplied by it (phase-flipped images carry |CTF| x the signal), and
    each ring's weight by the particle's mean amplitude in that ring, so rings near its
    CTF zeros, which hold only noise, count little (gmmscape.weighting).
    """
    p_re, p_im = project_ft(gmm, rot, shift, grid)
    if ctf is None and grid.ring_weights is None:  # the paper's FRC
        return 1.0 - tf.reduce_mean(frc(p_re, p_im, i_re, i_im, grid), axis=1)
    weights = tf.constant(grid.weights())[None, :]
    if ctf is not None:
        ctf = tf.convert_to_tensor(ctf, tf.float32)
        p_re, p_im = p_re * ctf, p_im * ctf
        weights = weights * ring_means(ctf, grid)
    weights = weights / tf.maximum(tf.reduce_sum(weights, axis=1, keepdims=True), 1e-12)
    return 1.0 - tf.reduce_sum(frc(p_re, p_im, i_re, i_im, grid) * weights, axis=1)


def ring_means(values, grid: FourierGrid) -> tf.Tensor:
    """(B, n_rings): the mean of (B, ny, nx) values over each ring's pixels."""
    rings = grid.ring_matrix()
    flat = tf.reshape(tf.convert_to_tensor(values, tf.float32), [tf.shape(values)[0], -1])
    return tf.matmul(flat, tf.constant(rings / np.maximum(rings.sum(axis=0), 1e-12)))


def particle_gradients(gmm, rot, shift, i_re, i_im, grid: FourierGrid, ctf=None) -> tf.Tensor:
    """d loss_i / d gmm for every particle i of a batch in one backward pass: (B, N, 5).

    The shared model is tiled per particle so each particle's loss depends only on its
    own copy; the gradient of the summed loss then holds every per-particle gradient.
    """
    rot = tf.convert_to_tensor(rot, tf.float32)
    tiled = _batched(gmm, tf.shape(rot)[0])
    with tf.GradientTape() as tape:
        tape.watch(tiled)
        loss = tf.reduce_sum(frc_loss(tiled, rot, shift, i_re, i_im, grid, ctf))
    return tape.gradient(loss, tiled)


def batch_signature(grid: FourierGrid, first: tf.TensorSpec, use_ctf: bool) -> list:
    """Input signature of a graph over a batch of particles: ``first`` (the model or the
    features), rotations, shifts, the images' Fourier transform on the grid, and with
    ``use_ctf`` their CTF amplitude there."""
    ny, nx = grid.shape
    spec = tf.TensorSpec
    plane = spec((None, ny, nx), tf.float32)
    pose = [spec((None, 3, 3), tf.float32), spec((None, 2), tf.float32)]
    return [first, *pose, plane, plane] + ([plane] if use_ctf else [])


def particle_graph(function, grid: FourierGrid, n_gaussians: int, use_ctf: bool = False):
    """``function(gmm, rot, shift, i_re, i_im, grid, ctf)`` of one shared (N, 5) model
    against a batch of particles, as a graph with a fixed signature (one trace for every
    batch). With ``use_ctf`` the graph takes the particles' CTF amplitude on the grid as
    a sixth input; without, ``ctf`` is None (the paper's FRC)."""
    model = tf.TensorSpec((n_gaussians, 5), tf.float32)

    @tf.function(input_signature=batch_signature(grid, model, use_ctf))
    def graph(gmm, rot, shift, i_re, i_im, *ctf):
        return function(gmm, rot, shift, i_re, i_im, grid, *ctf)

    return graph
