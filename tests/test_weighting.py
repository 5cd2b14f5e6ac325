"""The weighted FRC loss against a direct per-pixel sum, and the ring weights' formula."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from gmmscape.ctf import CTFParams, ctf_2d
from gmmscape.errors import InputError
from gmmscape.fsc import SpectralSNR
from gmmscape.projection import FourierGrid, frc_loss, images_ft, project_ft
from gmmscape.weighting import check_weighting, ctf_amplitude, weighted_grid

BOX, APIX = 24, 2.0


def gmm_and_images(rng, n_particles=3):
    gmm = np.column_stack(
        [rng.uniform(-0.15, 0.15, (10, 3)), rng.uniform(0.5, 1.0, 10), np.full(10, 0.06)]
    ).astype(np.float32)
    rot = np.stack([np.linalg.qr(rng.normal(size=(3, 3)))[0] for _ in range(n_particles)])
    rot = (rot * np.sign(np.linalg.det(rot))[:, None, None]).astype(np.float32)
    shift = rng.normal(0, 1, (n_particles, 2)).astype(np.float32)
    images = rng.normal(size=(n_particles, BOX, BOX)).astype(np.float32)
    return gmm, rot, shift, images


def ctf_params(n: int, rng) -> CTFParams:
    defocus = rng.uniform(8000, 25000, n)
    return CTFParams(defocus, defocus * 0.97, rng.uniform(0, 180, n), 300.0, 2.7, 0.1)


def direct_loss(p, image_ft, amplitude, grid, ring_weights):
    """1 - sum_r w_r FRC_r / sum_r w_r pixel by pixel over the full plane, with the
    projection times the CTF amplitude and w_r = ring weight x the ring's mean amplitude."""
    full = np.fft.fftfreq(BOX, 1.0 / BOX)
    num, pp, ii, amp, count = (np.zeros(grid.ring_hi + 1) for _ in range(5))
    for ky in full:
        for kx in full:
            r = int(np.rint(np.hypot(ky, kx)))
            if not grid.ring_lo <= r <= grid.ring_hi:
                continue
            # the rfft half plane holds (ky, kx) or its conjugate (-ky, -kx)
            conj = kx < 0
            row = int(np.flatnonzero(grid.ky == (-ky if conj else ky))[0])
            col = int(abs(kx))
            a = amplitude[row, col]
            pv, iv = p[row, col] * a, image_ft[row, col]
            if conj:
                pv, iv = np.conj(pv), np.conj(iv)
            num[r] += (pv * np.conj(iv)).real
            pp[r] += abs(pv) ** 2
            ii[r] += abs(iv) ** 2
            amp[r] += a
            count[r] += 1
    rings = slice(grid.ring_lo, grid.ring_hi + 1)
    frc = num[rings] / np.sqrt(pp[rings] * ii[rings])
    w = ring_weights * amp[rings] / count[rings]
    return 1.0 - (w * frc).sum() / w.sum()


def test_weighted_loss_matches_the_direct_sum():
    rng = np.random.default_rng(1)
    gmm, rot, shift, images = gmm_and_images(rng)
    base = FourierGrid(BOX, APIX, res_lo=30.0, res_hi=5.0)
    ring_weights = rng.uniform(0.2, 2.0, base.n_rings)
    grid = FourierGrid(BOX, APIX, 30.0, 5.0, tuple(ring_weights))
    amplitude = grid.crop(np.abs(ctf_2d(ctf_params(len(rot), rng), BOX, APIX)))
    i_re, i_im = images_ft(images, grid)
    got = frc_loss(gmm, rot, shift, i_re, i_im, grid, amplitude).numpy()
    p_re, p_im = (x.numpy() for x in project_ft(gmm, rot, shift, grid))
    for b in range(len(rot)):
        want = direct_loss(p_re[b] + 1j * p_im[b], i_re[b] + 1j * i_im[b], amplitude[b], grid,
                           ring_weights)  # fmt: skip
        np.testing.assert_allclose(got[b], want, rtol=1e-4, atol=1e-6)


def test_flat_loss_is_the_unweighted_mean_frc():
    rng = np.random.default_rng(2)
    gmm, rot, shift, images = gmm_and_images(rng)
    grid = FourierGrid(BOX, APIX, res_lo=30.0, res_hi=5.0)
    i_re, i_im = images_ft(images, grid)
    p_re, p_im = (x.numpy() for x in project_ft(gmm, rot, shift, grid))
    got = frc_loss(gmm, rot, shift, i_re, i_im, grid).numpy()
    ones = np.ones(grid.shape)
    for b in range(len(rot)):
        want = direct_loss(p_re[b] + 1j * p_im[b], i_re[b] + 1j * i_im[b], ones, grid,
                           np.ones(grid.n_rings))  # fmt: skip
        np.testing.assert_allclose(got[b], want, rtol=1e-4, atol=1e-6)


def fake_particles(ctf: CTFParams | None, n: int):
    return SimpleNamespace(n=n, ctf=ctf, box=BOX, apix=APIX)


def test_ring_weights_follow_pixels_times_root_snr():
    grid = FourierGrid(BOX, APIX, res_hi=5.0)
    freq = np.arange(BOX // 2 + 1) / (BOX * APIX)
    snr = SpectralSNR(freq, 0.5 * np.exp(-freq * 40))
    got = np.asarray(weighted_grid(grid, fake_particles(None, 7), snr).ring_weights)
    want = grid.ring_pixels() * np.sqrt(snr.at(grid.ring_frequency()))
    np.testing.assert_allclose(got / got.sum(), want / want.sum(), rtol=1e-6)
    # the CTF's mean square over the data set divides the SSNR out again
    rng = np.random.default_rng(3)
    params = ctf_params(40, rng)
    ctf_weights = np.asarray(weighted_grid(grid, fake_particles(params, 40), snr).ring_weights)
    amp = grid.crop(np.abs(ctf_2d(params, BOX, APIX)))
    rings = grid.ring_matrix()
    mean = amp.reshape(40, -1) @ (rings / rings.sum(axis=0))
    want = want / np.sqrt(np.square(mean).mean(axis=0))
    np.testing.assert_allclose(ctf_weights / ctf_weights.sum(), want / want.sum(), rtol=1e-4)


def test_ctf_amplitude_and_its_absence():
    rng = np.random.default_rng(4)
    params = ctf_params(5, rng)
    grid = FourierGrid(BOX, APIX, res_hi=6.0)
    rows = np.array([1, 3])
    got = ctf_amplitude(fake_particles(params, 5), rows, grid)
    full = np.abs(ctf_2d(params, BOX, APIX))[rows]
    np.testing.assert_allclose(got, grid.crop(full), rtol=1e-6)
    assert (ctf_amplitude(fake_particles(None, 5), rows, grid) == 1).all()


def test_unknown_weighting_is_a_clear_error():
    with pytest.raises(InputError, match="train.frc_weights"):
        check_weighting("loud")
