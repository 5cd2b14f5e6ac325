"""Trajectories along PCA eigenvectors and localized eigen-motions, on synthetic decoders
that map the latent space exactly onto the simulator's true models."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import landscape_data
import numpy as np
import pandas as pd
import pytest
import train_data

from gmmscape import phantoms
from gmmscape.decode import Decoder, load_decoder
from gmmscape.embedding import fit_pca
from gmmscape.errors import InputError
from gmmscape.images import cropped_source
from gmmscape.importer import import_particles, load_meta, load_table
from gmmscape.io.mrc import read_map, write_map
from gmmscape.masks import mask_inside
from gmmscape.simulate import simulate
from gmmscape.trajectory import (
    decode_points,
    displacement,
    localized_direction,
    localized_trajectory,
    nearest_particles,
    particles_per_point,
    pc_trajectories,
    write_trajectory,
)

PATH_LENGTH = 2 * phantoms.LINEAR_HALF_PATH  # box fractions


@dataclass
class LinearDecoder:
    """Latent (z0, z1) -> the linear system with its domain at coordinate 0.5 + z0
    (clipped to the path); z1 changes nothing. Latent 0 is the middle state."""

    latent_dim: int = 2
    box: int = 32
    apix: float = 4.0

    def __post_init__(self):
        body, domain, _ = phantoms.parts()
        self.body, self.domain = phantoms._gaussians(body), phantoms._gaussians(domain)
        self.part = np.repeat([phantoms.BODY, phantoms.DOMAIN], [len(body), len(domain)])
        self.neutral = self.decode(np.zeros((1, 2)))[0]

    def decode(self, z):
        coordinate = np.clip(0.5 + np.asarray(z, np.float64)[:, 0], 0.0, 1.0)
        out = []
        for centre in phantoms.linear_path(coordinate):
            moved = self.domain.copy()
            moved[:, :3] += centre
            out.append(np.concatenate([self.body, moved]))
        return np.asarray(out, np.float32)


@dataclass
class TwoDomainDecoder:
    """Two regions moving along two mixed latent directions (paper, spliceosome): the
    domain slides along x with z0 + z1, the extra blob along y with z0 - z1 (plus a
    small quadratic term so the motion is not exactly linear); the body stays."""

    latent_dim: int = 2
    box: int = 32
    apix: float = 4.0

    def __post_init__(self):
        body, domain, extra = phantoms.parts()
        self.part = np.repeat(
            [phantoms.BODY, phantoms.DOMAIN, phantoms.EXTRA], [len(body), len(domain), len(extra)]
        )
        domain = domain + phantoms.linear_path(np.array([0.5]))
        self.neutral = phantoms._gaussians(np.concatenate([body, domain, extra]))

    def decode(self, z):
        z = np.asarray(z, np.float64)
        out = np.repeat(self.neutral[None], len(z), axis=0)
        a, b = z[:, 0] + z[:, 1], z[:, 0] - z[:, 1]
        out[:, self.part == phantoms.DOMAIN, 0] += (0.1 * a + 0.02 * a**2)[:, None]
        out[:, self.part == phantoms.EXTRA, 1] += (0.1 * b)[:, None]
        return out.astype(np.float32)


def linear_latent(n: int = 2000, seed: int = 0) -> np.ndarray:
    """Particles spread uniformly along the path (z0) with a little noise."""
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [rng.uniform(-0.5, 0.5, n) + 0.02 * rng.standard_normal(n), 0.05 * rng.standard_normal(n)]
    )


def test_pc1_trajectory_moves_the_domain_along_its_path_and_not_the_body():
    """On a synthetic decoder: along PC1 (5th-95th percentile) the moving
    domain travels within 30% of the true path length, the rigid body < 10% of that."""
    decoder, latent = LinearDecoder(), linear_latent()
    pca = fit_pca(latent)
    pc1, pc2 = pc_trajectories(latent, pca, n_components=2, n_points=7)
    assert (pc1.name, pc2.name) == ("pc1", "pc2")
    np.testing.assert_allclose(
        pc1.latent, pca.inverse_transform(np.column_stack([pc1.t, np.zeros(7)])), atol=1e-12
    )
    gmms = decode_points(decoder, pc1)
    move = displacement(gmms)
    domain = move[decoder.part == phantoms.DOMAIN].mean()
    assert abs(domain - PATH_LENGTH) <= 0.3 * PATH_LENGTH
    assert move[decoder.part == phantoms.BODY].max() < 0.1 * domain
    assert np.all(np.diff(pc1.t) > 0)
    assert np.percentile(pca.transform(latent)[:, 0], 5) == pytest.approx(pc1.t[0])


@pytest.mark.parametrize(
    ("region", "expected"),
    [(phantoms.DOMAIN, [1.0, 1.0]), (phantoms.EXTRA, [1.0, -1.0])],
)
def test_localized_direction_isolates_the_region(region, expected):
    decoder = TwoDomainDecoder()
    v, ratio = localized_direction(decoder, decoder.part == region, scale=0.5)
    expected = np.asarray(expected) / np.sqrt(2)
    assert abs(v @ expected) > 0.999
    assert v[np.argmax(np.abs(v))] > 0 and np.linalg.norm(v) == pytest.approx(1.0)
    assert ratio > 1e6  # nothing outside the region moves along v


def test_localized_trajectory_spans_the_particles_through_the_origin():
    decoder = TwoDomainDecoder()
    rng = np.random.default_rng(1)
    latent = rng.standard_normal((500, 2)) * 0.3
    trajectory, ratio = localized_trajectory(
        latent, decoder, decoder.part == phantoms.DOMAIN, "region_domain", n_points=5
    )
    assert trajectory.name == "region_domain" and ratio > 1e6
    np.testing.assert_array_equal(trajectory.origin, [0.0, 0.0])
    projection = latent @ trajectory.direction
    assert trajectory.t[0] == pytest.approx(np.percentile(projection, 5))
    assert trajectory.t[-1] == pytest.approx(np.percentile(projection, 95))
    with pytest.raises(InputError, match="expected some inside and some outside"):
        localized_direction(decoder, np.zeros(len(decoder.part), bool), scale=0.5)


def test_region_mask_must_span_the_decoders_frame(tmp_path):
    """A region mask is checked against the trained decoder's box and pixel size (the
    rule landscape_trajectories): another extent is one InputError naming the mask and
    the expected box; the same extent at another sampling is fine."""
    frame = Decoder(None, None, 2, box=32, apix=4.0, mode="position", run_dir=Path("train/pos"))
    neutral = TwoDomainDecoder().neutral
    wrong = tmp_path / "region_wrong_box.mrc"
    write_map(wrong, np.ones((40, 40, 40), np.float32), 4.0)
    expected = (
        f"mask {wrong}: box 40 at 4 A spans 160.0 A; expected 128.0 A, box 32 at 4 A of "
        "the trained decoder of train/pos"
    )
    with pytest.raises(InputError) as error:
        mask_inside(wrong, neutral, frame)
    assert str(error.value) == expected
    finer = tmp_path / "region_finer.mrc"
    write_map(finer, np.ones((64, 64, 64), np.float32), 2.0)
    assert mask_inside(finer, neutral, frame).all()


def test_nearest_particles_and_their_number():
    latent = np.arange(10, dtype=float)[:, None]
    rows = nearest_particles(latent, np.array([[0.2], [8.9]]), k=3)
    assert [r.tolist() for r in rows] == [[0, 1, 2], [7, 8, 9]]
    assert particles_per_point(100_000, 7, 2000) == 2000
    assert particles_per_point(4000, 7, 2000) == 571


@pytest.fixture(scope="module")
def linear_data(tmp_path_factory):
    """Noise-free linear-system particles (box 32) imported, with an ideal latent: z0 is
    the true coordinate - 0.5 (what LinearDecoder expects), z1 small noise."""
    root = tmp_path_factory.mktemp("linear")
    paths = simulate("linear", root / "data", per_state=20, box=32, apix=4.0, snr=None, seed=1)
    import_particles(paths["particles"], root / "import", box=32)
    table = load_table(root / "import" / "particles.csv")
    truth = pd.read_csv(paths["ground_truth"]).set_index("index").loc[table["index"]]
    rng = np.random.default_rng(0)
    latent = np.column_stack(
        [
            truth["coordinate"] - 0.5 + 0.01 * rng.standard_normal(len(truth)),
            0.01 * rng.standard_normal(len(truth)),
        ]
    )
    return paths, root / "import", table, latent


def test_trajectory_outputs_decode_reconstruct_and_play(linear_data, tmp_path):
    paths, import_dir, table, latent = linear_data
    decoder = LinearDecoder(box=32, apix=4.0)
    (pc1,) = pc_trajectories(latent, fit_pca(latent), n_components=1, n_points=5)
    source = cropped_source(import_dir / "stack.mrcs", load_meta(import_dir / "meta.json"))
    summary = write_trajectory(
        pc1, decoder, tmp_path / "pc1", latent=latent, rows=np.arange(len(table)),
        table=table, source=source, count=60,
    )  # fmt: skip
    assert summary.columns.tolist() == ["point", "t", "z0", "z1", "particles", "radius"]
    assert summary["particles"].tolist() == [60] * 5
    out = tmp_path / "pc1"
    for k in range(5):
        for name in (f"gmm/point_{k:03d}.txt", f"gmm/point_{k:03d}.pdb", f"gmm/point_{k:03d}.mrc"):
            assert (out / name).is_file(), name
        assert read_map(out / f"map_{k:03d}.mrc")[1] == pytest.approx(4.0)
    assert (out / "quiver.png").read_bytes()[:4] == b"\x89PNG"
    script = (out / "chimerax.cxc").read_text().splitlines()
    assert (
        script[2]
        == "open " + " ".join(f"gmm/point_{k:03d}.mrc" for k in range(5)) + " vseries true"
    )
    assert script[4] == "open " + " ".join(f"map_{k:03d}.mrc" for k in range(5)) + " vseries true"
    assert script[5].startswith("vseries play #2 loop true")

    # the maps of the particles nearest the ends show the domain at the ends of its path
    first, last = (read_map(paths["states"] / f"state_{s:03d}.mrc")[0] for s in (0, 19))
    start, end = (read_map(out / f"map_{k:03d}.mrc")[0] for k in (0, 4))
    assert correlation(start, first) > correlation(start, last) + 0.05
    assert correlation(end, last) > correlation(end, first) + 0.05


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.slow
def test_pc1_of_a_trained_linear_run_moves_the_domain_along_its_path():
    """On a trained decoder (linear system, position mode, 1D latent as in the
    paper): along PC1 the domain's Gaussians travel within 30% of the true path length and
    the rigid body moves (net displacement of its Gaussians) by < 10% of that. The mean
    per-Gaussian displacement of the body is printed too: at CI size the decoder jitters
    body Gaussians without moving the body."""
    run = landscape_data.trained_run("linear", "all", "position", 1)
    root = train_data.dataset("linear", landscape_data.PER_STATE)
    latent = pd.read_csv(run / "latent.csv").filter(regex=r"^z\d+$").to_numpy()
    (pc1,) = pc_trajectories(latent, fit_pca(latent), n_components=1, n_points=7)
    gmms = decode_points(load_decoder(run), pc1)
    part = train_data.gaussian_parts(root)
    domain = displacement(gmms)[part == phantoms.DOMAIN].mean()
    body_net = np.linalg.norm((gmms[-1] - gmms[0])[part == phantoms.BODY, :3].mean(axis=0))
    body_each = displacement(gmms)[part == phantoms.BODY].mean()
    print(
        f"PC1 trajectory: domain Gaussians move {domain / PATH_LENGTH:.2f} of the path; the "
        f"body {body_net / domain:.3f} of that (net), {body_each / domain:.3f} (per Gaussian)"
    )
    assert abs(domain - PATH_LENGTH) <= 0.3 * PATH_LENGTH
    assert body_net < 0.1 * domain
