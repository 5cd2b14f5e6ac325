"""Fourier cropping, CTF and phase flipping against slow, independently written references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gmmscape.ctf import CTFParams, ctf_2d, phase_flip
from gmmscape.errors import InputError
from gmmscape.fourier import fourier_crop, rfft_freqs, to_fourier, to_real


def params(n: int = 1, **kw) -> CTFParams:
    values = dict(defocus_u=15000.0, defocus_v=14000.0, defocus_angle=30.0, voltage=300.0)
    values |= dict(cs=2.7, amp_contrast=0.1, phase_shift=0.0, bfactor=0.0) | kw
    return CTFParams(**{k: np.full(n, v, dtype=np.float64) for k, v in values.items()})


# ---------------------------------------------------------------- Fourier cropping


def direct_crop(image: np.ndarray, new_box: int) -> np.ndarray:
    """Direct DFT of an image with origin b//2, truncated to |k| < nb/2, inverse on nb pixels."""
    b = image.shape[0]
    x = np.arange(b) - b // 2
    k = np.arange(-(new_box // 2) + 1, new_box // 2)
    forward = np.exp(-2j * np.pi * np.outer(k, x) / b)  # (k, x)
    ft = forward @ image @ forward.T  # [ky, kx]
    xn = np.arange(new_box) - new_box // 2
    inverse = np.exp(2j * np.pi * np.outer(xn, k) / new_box)  # (x', k)
    return (inverse @ ft @ inverse.T).real / b**2


def test_fourier_crop_matches_direct_dft():
    image = np.random.default_rng(1).standard_normal((2, 20, 20))
    cropped = fourier_crop(image.astype(np.float32), 12)
    for img, out in zip(image, cropped, strict=True):
        ref = direct_crop(img, 12)
        assert np.abs(out - ref).max() < 1e-4 * np.abs(ref).max()


def synthesize(coefficients: dict, box: int) -> np.ndarray:
    """Real image sum_k c_k exp(2 pi i k.x / box) over the given (ky, kx) -> c_k (Hermitian)."""
    x = np.arange(box) - box // 2
    image = np.zeros((box, box), dtype=complex)
    for (ky, kx), c in coefficients.items():
        image += c * np.exp(2j * np.pi * (ky * x[:, None] + kx * x[None, :]) / box)
    return image.real


def test_crop_preserves_band_limited_image():
    rng = np.random.default_rng(2)
    nb, coefficients = 10, {}
    for ky in range(-4, 5):
        for kx in range(0, 5):
            if kx == 0 and ky < 0 or (ky, kx) in coefficients:
                continue
            c = complex(*rng.standard_normal(2)) if (ky, kx) != (0, 0) else 1.0
            coefficients[(ky, kx)], coefficients[(-ky, -kx)] = c, np.conj(c)
    big = synthesize(coefficients, 32)
    cropped = fourier_crop(big[None].astype(np.float32), nb)[0]
    expected = synthesize(coefficients, nb)
    assert np.abs(cropped - expected).max() < 1e-4 * np.abs(expected).max()


def gaussian_image(box: int, apix: float, centre=(3.0, -5.0), sigma=4.0) -> np.ndarray:
    x = (np.arange(box) - box // 2) * apix
    return np.exp(-((x[None, :] - centre[0]) ** 2 + (x[:, None] - centre[1]) ** 2) / (2 * sigma**2))


def test_crop_scales_pixel_size_by_box_ratio():
    """A blob of fixed size in Angstrom, cropped 64 -> 32, is the blob sampled at 2x apix."""
    big = gaussian_image(64, 1.0).astype(np.float32)
    cropped = fourier_crop(big[None], 32)[0]
    expected = gaussian_image(32, 1.0 * 64 / 32)
    assert np.abs(cropped - expected).max() < 1e-4


def test_crop_same_box_is_identity_and_larger_box_is_refused():
    image = np.random.default_rng(3).standard_normal((1, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(fourier_crop(image, 16), image)
    with pytest.raises(InputError, match="larger box"):
        fourier_crop(image, 32)


# ---------------------------------------------------------------- CTF


def relion_ctf_loop(p: CTFParams, box: int, apix: float) -> np.ndarray:
    """RELION's CTF::getCTF written out per pixel: deltaf negative for underfocus,
    CTF = -sin(K1*deltaf*u2 + K2*u2^2 - K5 - K3) * exp(-B/4 u2)."""
    (u, v, angle, kv, cs, q, phase, bfac) = (
        float(np.ravel(getattr(p, f))[0]) for f in CTFParams.__dataclass_fields__
    )
    volts = kv * 1e3
    lam = 12.2643247 / math.sqrt(volts * (1.0 + volts * 0.978466e-6))
    k1, k2 = math.pi * lam, math.pi / 2 * cs * 1e7 * lam**3
    k3, k5 = math.atan(q / math.sqrt(1 - q * q)), math.radians(phase)
    out = np.zeros((box, box // 2 + 1))
    for iy in range(box):
        ky = iy if iy < box // 2 else iy - box
        for kx in range(box // 2 + 1):
            x, y = kx / (box * apix), ky / (box * apix)
            u2 = x * x + y * y
            ellipse = math.atan2(y, x) - math.radians(angle)
            deltaf = -(u + v) / 2 - (u - v) / 2 * math.cos(2 * ellipse)
            argument = k1 * deltaf * u2 + k2 * u2 * u2 - k5 - k3
            out[iy, kx] = -math.sin(argument) * math.exp(-bfac / 4 * u2)
    return out


@pytest.mark.parametrize(
    "kw",
    [
        {},
        dict(defocus_u=22000.0, defocus_v=20500.0, defocus_angle=-70.0, voltage=200.0, cs=1.4),
        dict(phase_shift=60.0, bfactor=80.0, amp_contrast=0.07, defocus_angle=145.0),
    ],
)
def test_ctf_matches_direct_relion_formula(kw):
    p = params(**kw)
    np.testing.assert_allclose(ctf_2d(p, 24, 1.3)[0], relion_ctf_loop(p, 24, 1.3), atol=2e-6)


def test_ctf_zero_crossings_at_expected_frequency():
    box, apix = 128, 1.0
    lam = 12.2643247 / math.sqrt(300e3 * (1 + 300e3 * 0.978466e-6))
    s1 = 12 / (box * apix)  # put the first zero (Cs = Q = 0) exactly on pixel kx = 12
    defocus = 1 / (lam * s1**2)
    pure = ctf_2d(params(defocus_u=defocus, defocus_v=defocus, cs=0.0, amp_contrast=0.0), box, apix)
    line = pure[0, 0, :]
    assert abs(line[12]) < 1e-4 and line[11] > 0 > line[13]
    assert line[16] < 0 < line[17]  # second zero at 12 * sqrt(2) = 16.97

    # with Cs and amplitude contrast: solve (pi/2) Cs lam^3 s^4 - pi lam D s^2 + (pi - phi) = 0
    cs, q, df = 2.7, 0.1, 12000.0
    a, b, c = math.pi / 2 * cs * 1e7 * lam**3, -math.pi * lam * df, math.pi - math.asin(q)
    s_zero = math.sqrt((-b - math.sqrt(b * b - 4 * a * c)) / (2 * a))
    k_zero = s_zero * box * apix
    line = ctf_2d(params(defocus_u=df, defocus_v=df, cs=cs, amp_contrast=q), box, apix)[0, 0]
    below, above = math.floor(k_zero), math.ceil(k_zero)
    assert line[below] > 0 > line[above], (k_zero, line[below], line[above])


def test_astigmatism_angle_rotates_pattern():
    box, apix = 32, 1.5
    ctf = ctf_2d(params(defocus_u=20000.0, defocus_v=12000.0, defocus_angle=90.0), box, apix)
    swapped = ctf_2d(params(defocus_u=12000.0, defocus_v=20000.0, defocus_angle=0.0), box, apix)
    np.testing.assert_allclose(ctf, swapped, atol=1e-6)
    turned = ctf_2d(params(defocus_u=20000.0, defocus_v=12000.0, defocus_angle=-90.0), box, apix)
    np.testing.assert_allclose(ctf, turned, atol=1e-6)
    # along the direction of the angle the defocus is U: compare with an unastigmatic CTF
    angled = ctf_2d(params(defocus_u=20000.0, defocus_v=12000.0, defocus_angle=0.0), box, apix)
    round_u = ctf_2d(params(defocus_u=20000.0, defocus_v=20000.0), box, apix)
    np.testing.assert_allclose(angled[0, 0], round_u[0, 0], atol=1e-6)


# ---------------------------------------------------------------- phase flipping


def test_phase_flip_twice_is_identity():
    rng = np.random.default_rng(4)
    images = rng.standard_normal((3, 32, 32)).astype(np.float32)
    p = params(3, defocus_angle=0.0)
    p = CTFParams(**{**p.__dict__, "defocus_u": np.array([9000.0, 15000.0, 24000.0])})
    twice = phase_flip(phase_flip(images, p, 1.2), p, 1.2)
    np.testing.assert_allclose(twice, images, atol=1e-5)


def test_phase_flip_leaves_ctf_amplitude_only():
    rng = np.random.default_rng(5)
    box, apix = 32, 1.4
    image = rng.standard_normal((1, box, box))
    p = params(defocus_angle=25.0)
    ctf = ctf_2d(p, box, apix)
    modulated = to_real(to_fourier(image) * ctf, box).astype(np.float32)
    flipped = to_fourier(phase_flip(modulated, p, apix))
    original = to_fourier(image)
    ky, kx = rfft_freqs(box)
    inside = (np.abs(ky) < box // 2) & (kx < box // 2)  # Nyquist row/column are not Hermitian
    product = (flipped * np.conj(original * np.abs(ctf))).real
    assert product[0][inside].min() > -1e-4
    np.testing.assert_allclose(flipped[0][inside], (original * np.abs(ctf))[0][inside], atol=1e-3)


def test_phase_flip_uses_each_images_own_ctf():
    rng = np.random.default_rng(6)
    images = rng.standard_normal((2, 24, 24)).astype(np.float32)
    p = params(2)
    p = CTFParams(**{**p.__dict__, "defocus_u": np.array([10000.0, 20000.0])})
    together = phase_flip(images, p, 1.0)
    for i in range(2):
        one = CTFParams(**{k: v[i : i + 1] for k, v in p.__dict__.items()})
        np.testing.assert_allclose(
            together[i], phase_flip(images[i : i + 1], one, 1.0)[0], atol=1e-6
        )
