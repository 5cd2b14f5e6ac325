"""FSC against a slow full-grid reference, and its basic properties."""

import numpy as np
import pandas as pd
import pytest

from gmmscape.errors import InputError
from gmmscape.fsc import fsc_curve, fsc_table, resolution_at

BOX = 24


def reference_fsc(a, b):
    """Full complex fftn and an explicit loop over shells of radius k +- 0.5."""
    fa, fb = np.fft.fftn(a.astype(np.float64)), np.fft.fftn(b.astype(np.float64))
    k = np.fft.fftfreq(BOX, 1.0 / BOX)
    kz, ky, kx = np.meshgrid(k, k, k, indexing="ij")
    radius = np.sqrt(kz**2 + ky**2 + kx**2)
    out = []
    for shell in range(BOX // 2 + 1):
        sel = (radius >= shell - 0.5) & (radius < shell + 0.5)
        cross = np.real(np.sum(fa[sel] * np.conj(fb[sel])))
        out.append(cross / np.sqrt(np.sum(np.abs(fa[sel]) ** 2) * np.sum(np.abs(fb[sel]) ** 2)))
    return np.array(out)


def smooth_pair(rng):
    """Two maps sharing a signal whose power falls with frequency, plus white noise each."""
    k = np.fft.fftfreq(BOX)
    r2 = k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2
    signal = np.fft.ifftn(np.fft.fftn(rng.standard_normal((BOX,) * 3)) * np.exp(-20.0 * r2)).real
    a, b = (signal + 0.05 * rng.standard_normal(signal.shape) for _ in range(2))
    return a.astype(np.float32), b.astype(np.float32)


def test_matches_full_grid_reference():
    a, b = smooth_pair(np.random.default_rng(0))
    got, want = fsc_curve(a, b), reference_fsc(a, b)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.ptp(got[1:]) > 0.1  # not a trivially flat curve


def test_map_with_itself_and_scaled_is_one():
    a, _ = smooth_pair(np.random.default_rng(1))
    np.testing.assert_allclose(fsc_curve(a, a), 1.0, atol=1e-9)
    np.testing.assert_allclose(fsc_curve(a, 3.0 * a + 0.0), 1.0, atol=1e-9)


def test_independent_noise_is_near_zero():
    rng = np.random.default_rng(2)
    curve = fsc_curve(rng.standard_normal((BOX,) * 3), rng.standard_normal((BOX,) * 3))
    assert np.all(np.abs(curve[4:]) < 0.15)
    assert abs(curve[4:].mean()) < 0.05


def test_table_resolutions():
    a, b = smooth_pair(np.random.default_rng(3))
    table = fsc_table(a, b, apix=2.5)
    assert list(table.columns) == ["shell", "resolution", "fsc"]
    assert len(table) == BOX // 2 + 1 and np.isinf(table.resolution[0])
    np.testing.assert_allclose(table.resolution[1:], BOX * 2.5 / np.arange(1, BOX // 2 + 1))


def curve_table(fsc, box=64, apix=2.0):
    shell = np.arange(len(fsc))
    with np.errstate(divide="ignore"):
        return pd.DataFrame({"shell": shell, "resolution": box * apix / shell, "fsc": fsc})


def test_threshold_crossing_interpolates_linearly():
    table = curve_table(1.0 - np.arange(33) / 10.0)  # 1.0, 0.9, ... crosses 0.5 at shell 5
    assert resolution_at(table, 0.5) == pytest.approx(128 / 5)
    assert resolution_at(table, 0.143) == pytest.approx(128 / (8 + 0.057 / 0.1))


def test_threshold_never_crossed_or_crossed_at_once():
    assert resolution_at(curve_table(np.ones(33))) == pytest.approx(4.0)  # Nyquist
    assert resolution_at(curve_table(np.r_[1.0, np.zeros(32)])) == pytest.approx(128.0)


def test_mismatched_maps_are_a_clear_error():
    with pytest.raises(InputError, match="same size"):
        fsc_curve(np.zeros((8, 8, 8)), np.zeros((10, 10, 10)))
