"""Settings derived from the data (gmmscape.choices): band, box, GMM size, epochs."""

import numpy as np
import pandas as pd
import pytest
import yaml

from gmmscape import choices
from gmmscape.importer import read_table
from gmmscape.simulate import simulate


def fsc_of_gaussian_ssnr(box: int, apix: float, ssnr0: float, width: float) -> pd.DataFrame:
    """A half-map FSC whose per-shell SNR falls like exp(-(s/width)^2), s in 1/A."""
    shell = np.arange(box // 2 + 1)
    s = shell / (box * apix)
    ssnr = ssnr0 * np.exp(-((s / width) ** 2))
    with np.errstate(divide="ignore"):
        resolution = box * apix / shell
    return pd.DataFrame({"shell": shell, "resolution": resolution, "fsc": ssnr / (1 + ssnr)})


def test_band_ends_where_one_particle_meets_the_ring_noise():
    fsc = fsc_of_gaussian_ssnr(128, 1.0, 1e5, 0.04)
    band, _ = choices.band_for(fsc, 10_000, 1.0)
    ratio = choices.particle_ring_snr(fsc, 10_000)
    inside = fsc["resolution"] >= band
    assert (ratio[1:][inside[1:]] >= choices.RING_SNR).all()
    assert ratio[fsc["resolution"] < band].max() < choices.RING_SNR * 1.2
    # more particles in the half maps at the same FSC: each particle holds less
    assert choices.band_for(fsc, 100_000, 1.0)[0] > band


def test_box_holds_the_band_with_a_margin():
    for extent, band in ((128.0, 10.0), (256.0, 4.0), (400.0, 30.0)):
        box = choices.box_for(extent, band, 512)
        assert box % 2 == 0 and box >= choices.MIN_BOX
        nyquist = 2 * extent / box
        assert nyquist <= choices.NYQUIST_MARGIN * band + 1e-9 or box == choices.MIN_BOX
        assert 2 * extent / (box - 2) > choices.NYQUIST_MARGIN * band or box == choices.MIN_BOX
    assert choices.box_for(256.0, 2.0, 160) == 160  # never above the particles' box


def test_gaussian_count_and_epochs_follow_the_data():
    assert choices.gaussians_for(60_000, 10.0) > 2 * choices.gaussians_for(60_000, 15.0)
    assert choices.gaussians_for(60_000, 10.0) % 64 == 0
    assert choices.epochs_for(5_000) > choices.epochs_for(100_000) >= choices.MIN_EPOCHS
    assert choices.epochs_for(10) == choices.MAX_EPOCHS
    # Fewer epochs (more particles), fewer candidate models: the scoring stays a fraction
    many, few = (choices.candidates_for(choices.epochs_for(n)) for n in (1_000_000, 5_000))
    assert choices.MIN_CANDIDATES < many < few == choices.MAX_CANDIDATES
    assert choices.candidates_for(1) == choices.MIN_CANDIDATES


@pytest.fixture(scope="module")
def samplings(tmp_path_factory):
    """The protein phantom over the same 128 A box at 1 A/pixel and at 4 A/pixel."""
    out = {}
    for apix, box in ((1.0, 128), (4.0, 32)):
        folder = tmp_path_factory.mktemp(f"apix{apix:g}")
        simulate("protein_hinge", folder, per_state=5, box=box, apix=apix, snr=0.05, seed=4)
        out[apix] = folder
    return out


@pytest.mark.slow
def test_fine_and_coarse_sampling_get_their_own_box_and_band(samplings, tmp_path):
    chosen = {}
    for apix, folder in samplings.items():
        path = tmp_path / f"choices_{apix:g}.yaml"
        chosen[apix] = choices.choose(
            folder / "particles.star", folder / "consensus.mrc", path, {}, seed=0
        )
        doc = yaml.safe_load(path.read_text())
        assert doc["data"]["apix"] == apix
        assert set(doc["settings"]) == set(choices.CHOICE_KEYS)
        assert all(v["reason"] != "set in the config" for v in doc["settings"].values())
    fine, coarse = chosen[1.0], chosen[4.0]
    assert fine["box"].value != coarse["box"].value
    assert fine["train.res_hi"].value < coarse["train.res_hi"].value
    assert coarse["box"].value <= 32 and coarse["train.res_hi"].value >= 8.0 / 0.75 - 0.01
    assert fine["gmm.target_n"].value > coarse["gmm.target_n"].value


def test_every_override_is_respected(samplings, tmp_path):
    folder = samplings[4.0]
    settings = {
        "box": 24,
        "gmm.start_n": 10,
        "gmm.target_n": 40,
        "gmm.start_resolution": 50.0,
        "gmm.target_resolution": 30.0,
        "train.res_hi": 33.0,
        "train.epochs": 3,
        "train.candidates": 5,
    }
    assert set(settings) == set(choices.CHOICE_KEYS)
    path = tmp_path / "choices.yaml"
    choices.choose(folder / "particles.star", folder / "consensus.mrc", path, settings)
    assert choices.load_choices(path) == settings
    partial = {"train.epochs": 7, "box": 30}
    chosen = choices.choose(folder / "particles.star", folder / "consensus.mrc", path, partial)
    assert chosen["train.epochs"].value == 7 and chosen["box"].value == 30
    assert chosen["train.candidates"].value == choices.candidates_for(7) == 14
    assert chosen["gmm.target_n"].reason != "set in the config"
    table, _ = read_table(folder / "particles.star")
    assert chosen["train.epochs"].value != choices.epochs_for(len(table))
