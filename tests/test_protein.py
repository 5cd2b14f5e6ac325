"""Protein-like phantoms, realistic simulation (reconstructed half maps) and the oracle."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from gmmscape import protein
from gmmscape.ctf import CTFParams
from gmmscape.errors import InputError
from gmmscape.fsc import fsc_curve
from gmmscape.geometry import random_rotations
from gmmscape.io.mrc import read_map
from gmmscape.oracle import best_models, oracle
from gmmscape.phantoms import BODY, DOMAIN, EXTRA
from gmmscape.simulate import clean_particles, simulate


def test_chain_is_protein_like():
    atoms = {name: p for name, (p, _) in protein.domains().items()}
    n = sum(len(p) for p in atoms.values())
    assert 1500 <= n <= 3000
    for name, positions in atoms.items():
        ca = positions[len(positions) // 4 : len(positions) // 2]  # the CA block of _atoms
        steps = np.linalg.norm(np.diff(ca, axis=0), axis=1)
        assert np.allclose(steps[steps < 4.0], protein.CA_STEP, atol=1e-6), name
        # folded: the domain is compact (radius of gyration of a globule of its size)
        rg = np.sqrt(((positions - positions.mean(0)) ** 2).sum(1).mean())
        assert rg < 3.0 * len(ca) ** 0.38, name


def test_hinge_moves_its_tip_and_extra_is_a_minor_domain():
    system = protein.protein_system(128.0, with_extra=True)
    first, last = system.models[0], system.models[-1]
    move = np.linalg.norm(first[:, :3] - last[:, :3], axis=1) * 128.0
    assert 10.0 <= move[system.part == DOMAIN].max() <= 15.0
    assert move[system.part != DOMAIN].max() == 0.0
    mass = system.models[1][:, 3]  # composition 1: the extra domain present
    share = mass[system.part == EXTRA].sum() / mass.sum()
    assert 0.10 <= share <= 0.15
    assert (system.models[system.composition == 0][:, system.part == EXTRA, 3] == 0).all()
    assert np.allclose(system.models[..., 4] * 128.0, protein.ATOM_SIGMA)
    assert (system.part == BODY).sum() > (system.part == DOMAIN).sum()
    with pytest.raises(InputError, match="at least 100 A"):
        protein.protein_system(64.0, with_extra=False)


@pytest.fixture(scope="module")
def realistic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("protein")
    simulate("protein_composition", folder, per_state=6, box=64, apix=2.0, snr=0.05, seed=2,
             defocus=(8000.0, 25000.0), maps="reconstructed")  # fmt: skip
    return folder


@pytest.mark.slow
def test_reconstructed_half_maps_agree_with_the_truth_at_low_resolution(realistic):
    half1, apix = read_map(realistic / "half1.mrc")
    half2, _ = read_map(realistic / "half2.mrc")
    truth = read_map(realistic / "states" / "state_000_c1.mrc")[0]
    assert apix == 2.0
    halves = fsc_curve(half1, half2)
    assert halves[1:6].min() > 0.5  # 128-26 A: 240 particles suffice
    assert halves[-4:].max() < 0.5  # near Nyquist the noise wins
    consensus = read_map(realistic / "consensus.mrc")[0]
    assert fsc_curve(consensus, truth)[1:5].min() > 0.8


def test_best_models_matches_a_brute_force_choice():
    """Noise-free images of known models: the oracle returns the model each came from,
    and its costs rank models like a real-space squared error does."""
    rng = np.random.default_rng(0)
    system = protein.protein_system(128.0, with_extra=True)
    pick = np.array([0, 21, 40, 79])
    models = system.models[pick]
    truth = rng.integers(0, len(models), 8)
    rot = random_rotations(8, rng)
    shift = rng.uniform(-2, 2, (8, 2))
    ctf = CTFParams(
        defocus_u=rng.uniform(9000, 20000, 8), defocus_v=rng.uniform(9000, 20000, 8),
        defocus_angle=rng.uniform(0, 180, 8), voltage=300.0, cs=2.7, amp_contrast=0.1,
    )  # fmt: skip
    images = clean_particles(models[truth], rot, shift, ctf, 64, 2.0)
    assert (best_models(models, images, rot, shift, ctf, 2.0) == truth).all()
    noisy = images + rng.normal(0, images.std() * 3, images.shape).astype(np.float32)
    brute = np.stack(
        [((noisy - clean_particles(np.repeat(m[None], 8, 0), rot, shift, ctf, 64, 2.0)) ** 2)
         .sum(axis=(1, 2)) for m in models]
    ).argmin(0)  # fmt: skip
    assert (best_models(models, noisy, rot, shift, ctf, 2.0) == brute).all()
    # within a band: the real-space error of images low-passed to that band (rings 1-12
    # of box 64 at 2 A/px: 10.7 A), which at this noise picks other models than the whole
    # grid does
    ring = np.rint(np.hypot(*np.meshgrid(*[np.fft.fftfreq(64) * 64] * 2, indexing="ij")))
    noisier = images + rng.normal(0, images.std() * 12, images.shape).astype(np.float32)

    def errors(low_pass):
        return np.stack(
            [(low_pass(noisier - clean_particles(np.repeat(m[None], 8, 0), rot, shift, ctf,
                                                 64, 2.0)) ** 2).sum(axis=(1, 2))
             for m in models]
        )  # fmt: skip

    band = errors(lambda x: np.fft.ifft2(np.fft.fft2(x) * ((ring >= 1) & (ring <= 12))).real)
    assert (band.argmin(0) != errors(lambda x: x).argmin(0)).any()
    chosen = best_models(models, noisier, rot, shift, ctf, 2.0, res_hi=64 * 2.0 / 12)
    assert (chosen == band.argmin(0)).all()


@pytest.mark.slow
def test_oracle_recovers_motion_and_composition(realistic):
    table = oracle(realistic, limit=96)
    assert len(table) == 96 and table["index"].is_unique
    assert spearmanr(table["coordinate"], table["oracle_coordinate"])[0] > 0.7
    assert (table["composition"] == table["oracle_composition"]).mean() > 0.9
    assert isinstance(table, pd.DataFrame)
