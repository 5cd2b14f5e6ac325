"""GMM kernels against slow, obviously-correct references."""

import numpy as np
import pytest
from scipy import ndimage

from gmmscape.errors import InputError
from gmmscape.fourier import to_fourier
from gmmscape.geometry import random_rotations
from gmmscape.projection import (
    FourierGrid,
    density,
    frc,
    frc_loss,
    images_ft,
    particle_gradients,
    project_ft,
    project_real,
)

BOX = 48


def random_gmm(rng, n=12, box=BOX, spread=0.12, sigma_px=(2.5, 3.5)):
    """Gaussians well inside the box and wide enough that sampling them is exact."""
    return np.column_stack(
        [
            rng.uniform(-spread, spread, (n, 3)),
            rng.uniform(0.5, 1.0, n),
            rng.uniform(sigma_px[0] / box, sigma_px[1] / box, n),
        ]
    ).astype(np.float32)


def relion_matrix_explicit(rot, tilt, psi):
    """RELION's Euler_angles2matrix written out element by element."""
    a, b, g = np.deg2rad([rot, tilt, psi])
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return np.array(
        [
            [cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
            [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
            [sc, ss, cb],
        ]
    )


def eman_matrix_explicit(az, alt, phi):
    """EMAN2's Transform rotation for 'eman' Euler angles, element by element."""
    a, b, p = np.deg2rad([az, alt, phi])
    ca, sa, cb, sb, cp, sp = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(p), np.sin(p)
    return np.array(
        [
            [cp * ca - cb * sa * sp, cp * sa + cb * ca * sp, sb * sp],
            [-sp * ca - cb * sa * cp, -sp * sa + cb * ca * cp, sb * cp],
            [sb * sa, -sb * ca, cb],
        ]
    )


def brute_force_projection(gmm, R, t, box):
    """Direct sum over Gaussians of the line integral at every pixel."""
    yy, xx = np.mgrid[:box, :box] - box // 2
    out = np.zeros((box, box))
    for x, y, z, amp, sig in gmm.astype(np.float64):
        p = R[:2] @ (np.array([x, y, z]) * box) + t
        s = sig * box
        out += (
            np.sqrt(2 * np.pi)
            * s
            * amp
            * np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * s * s))
        )
    return out


def brute_force_density(gmm, box):
    zz, yy, xx = np.mgrid[:box, :box, :box] - box // 2
    out = np.zeros((box, box, box))
    for x, y, z, amp, sig in gmm.astype(np.float64):
        c, s = np.array([x, y, z]) * box, sig * box
        out += amp * np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2 + (zz - c[2]) ** 2) / (2 * s * s))
    return out


def rotate_and_project(vol, R, t):
    """Voxel-wise rotation of a [z, y, x] map by R (scipy), sum along z, shift by t."""
    box = vol.shape[0]
    flip = np.eye(3)[::-1]  # (x, y, z) <-> (z, y, x)
    m = flip @ R.T @ flip
    c = np.full(3, box // 2)
    rotated = ndimage.affine_transform(vol, m, offset=c - m @ c, order=5, mode="constant")
    return ndimage.shift(rotated.sum(0), (t[1], t[0]), order=5)


def rel_err(a, b):
    return np.abs(np.asarray(a) - b).max() / np.abs(b).max()


def test_real_projection_matches_direct_sum():
    rng = np.random.default_rng(0)
    gmm = random_gmm(rng)
    R, t = random_rotations(4, rng), rng.uniform(-3, 3, (4, 2))
    img = project_real(gmm, R, t, BOX).numpy()
    for i in range(4):
        assert rel_err(img[i], brute_force_projection(gmm, R[i], t[i], BOX)) < 1e-4


@pytest.mark.parametrize("convention", ["relion", "eman2"])
def test_projection_matches_voxelwise_rotation(convention):
    rng = np.random.default_rng(1)
    gmm = random_gmm(rng)
    vol = brute_force_density(gmm, BOX)
    grid = FourierGrid(BOX)
    for _ in range(3):
        if convention == "relion":
            rot, tilt, psi = rng.uniform(-180, 180), rng.uniform(0, 180), rng.uniform(-180, 180)
            R = relion_matrix_explicit(rot, tilt, psi)
            origin = rng.uniform(-3, 3, 2)
            t = -origin  # RELION: the particle sits at -origin
        else:
            az, alt, phi = rng.uniform(-180, 180), rng.uniform(0, 180), rng.uniform(-180, 180)
            R = eman_matrix_explicit(az, alt, phi)
            t = rng.uniform(-3, 3, 2)  # EMAN2's tx, ty
        ref = rotate_and_project(vol, R, t)
        real = project_real(gmm, R[None], t[None], BOX).numpy()[0]
        assert rel_err(real, ref) < 1e-4
        re, im = project_ft(gmm, R[None], t[None], grid)
        ref_ft = to_fourier(ref)
        assert rel_err(re.numpy()[0] + 1j * im.numpy()[0], ref_ft) < 1e-4


def test_banded_projection_is_the_crop_of_the_full_one():
    rng = np.random.default_rng(2)
    gmm = random_gmm(rng)
    R, t = random_rotations(2, rng), rng.uniform(-3, 3, (2, 2))
    full, band = FourierGrid(BOX, 2.0), FourierGrid(BOX, 2.0, res_lo=40.0, res_hi=8.0)
    assert (band.ring_lo, band.ring_hi) == (3, 12)
    fr, fi = project_ft(gmm, R, t, full)
    br, bi = project_ft(gmm, R, t, band)
    np.testing.assert_allclose(br.numpy(), band.crop(fr.numpy()), atol=1e-3 * np.abs(fr).max())
    np.testing.assert_allclose(bi.numpy(), band.crop(fi.numpy()), atol=1e-3 * np.abs(fr).max())


def test_per_particle_models_project_independently():
    rng = np.random.default_rng(3)
    gmms = np.stack([random_gmm(rng), random_gmm(rng)])
    R, t = random_rotations(2, rng), rng.uniform(-3, 3, (2, 2))
    both = project_real(gmms, R, t, BOX).numpy()
    for i in range(2):
        np.testing.assert_allclose(
            both[i], project_real(gmms[i], R[i : i + 1], t[i : i + 1], BOX).numpy()[0], atol=1e-5
        )


def test_density_matches_direct_sum():
    rng = np.random.default_rng(4)
    gmm = random_gmm(rng, n=7, box=32)
    assert rel_err(density(gmm, 32, chunk=3), brute_force_density(gmm, 32)) < 1e-5


def test_frc_of_image_with_itself_is_one():
    rng = np.random.default_rng(5)
    imgs = rng.standard_normal((3, BOX, BOX)).astype(np.float32)
    grid = FourierGrid(BOX, 1.5, res_lo=30, res_hi=4)
    re, im = images_ft(imgs, grid)
    np.testing.assert_allclose(frc(re, im, re, im, grid).numpy(), 1.0, atol=1e-5)


def test_frc_matches_full_plane_definition():
    """Half-plane weighting equals the ring sums over the whole (complex) plane."""
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((2, 1, BOX, BOX)).astype(np.float32)
    grid = FourierGrid(BOX)
    got = frc(*images_ft(a, grid), *images_ft(b, grid), grid).numpy()[0]
    fa, fb = np.fft.fft2(np.fft.ifftshift(a[0])), np.fft.fft2(np.fft.ifftshift(b[0]))
    k = np.fft.fftfreq(BOX, 1 / BOX)
    ring = np.rint(np.hypot(k[:, None], k[None, :])).astype(int)
    for r in range(1, BOX // 2):
        sel = ring == r
        want = np.real(np.sum(fa[sel] * np.conj(fb[sel]))) / np.sqrt(
            np.sum(np.abs(fa[sel]) ** 2) * np.sum(np.abs(fb[sel]) ** 2)
        )
        assert abs(got[r - 1] - want) < 1e-4, r


def test_frc_ignores_positive_radial_filters():
    rng = np.random.default_rng(7)
    gmm = random_gmm(rng)
    R, t = random_rotations(2, rng), rng.uniform(-3, 3, (2, 2))
    grid = FourierGrid(BOX, 2.0, res_lo=50, res_hi=6)
    noisy = project_real(gmm, R, t, BOX).numpy() + rng.standard_normal((2, BOX, BOX))
    ft = to_fourier(noisy)
    ky, kx = np.fft.fftfreq(BOX, 1 / BOX)[:, None], np.arange(BOX // 2 + 1)[None]
    ring = np.rint(np.hypot(ky, kx))  # a filter on the discrete rings the FRC sums over
    filt = np.exp(-ring / 5.0) * (1.0 + 3.0 * np.sin(ring) ** 2)  # positive, radial, awkward
    filtered = np.fft.fftshift(np.fft.irfft2(ft * filt, s=(BOX, BOX)), axes=(-2, -1))
    p = project_ft(gmm, R, t, grid)
    before = frc(*p, *images_ft(noisy.astype(np.float32), grid), grid).numpy()
    after = frc(*p, *images_ft(filtered.astype(np.float32), grid), grid).numpy()
    np.testing.assert_allclose(after, before, atol=2e-4)
    assert before.std() > 0.01  # the check is not vacuous


def test_band_outside_box_is_a_clear_error():
    with pytest.raises(InputError, match="holds no Fourier ring"):
        FourierGrid(32, 4.0, res_lo=7.0, res_hi=5.0)  # finer than Nyquist (8 A)
    with pytest.raises(InputError, match="even box"):
        FourierGrid(33)


def test_particle_gradients_match_finite_differences():
    rng = np.random.default_rng(8)
    box = 32
    gmm = random_gmm(rng, n=6, box=box, spread=0.15, sigma_px=(1.5, 2.5))
    target = gmm.copy()
    target[:, :3] += rng.normal(0, 0.02, (6, 3))
    target[:, 3] *= rng.uniform(0.6, 1.4, 6)
    R, t = random_rotations(3, rng), rng.uniform(-2, 2, (3, 2))
    grid = FourierGrid(box, 3.0, res_lo=60, res_hi=9)
    imgs = project_real(target, R, t, box).numpy()
    i_re, i_im = images_ft(imgs, grid)
    grads = particle_gradients(gmm, R, t, i_re, i_im, grid).numpy()
    assert grads.shape == (3, 6, 5)
    h = 1e-3
    for b in range(3):
        sl = slice(b, b + 1)
        for j, c in [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 0)]:
            plus, minus = gmm.copy(), gmm.copy()
            plus[j, c] += h
            minus[j, c] -= h
            fd = (
                frc_loss(plus, R[sl], t[sl], i_re[sl], i_im[sl], grid).numpy()[0]
                - frc_loss(minus, R[sl], t[sl], i_re[sl], i_im[sl], grid).numpy()[0]
            ) / (2 * h)
            assert abs(fd - grads[b, j, c]) <= 0.03 * abs(fd) + 2e-3, (b, j, c, fd, grads[b, j, c])
    assert np.abs(grads).max() > 0.05  # the model is off the target: gradients are not trivially 0
