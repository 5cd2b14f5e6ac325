"""Any latent point decoded and reconstructed from its nearest particles (the `reconstruct`
command and landscape.points), and the line and circle trajectories."""

from __future__ import annotations

from dataclasses import dataclass

import landscape_data
import numpy as np
import pandas as pd
import pytest
import train_data

from gmmscape import phantoms
from gmmscape.cli import main
from gmmscape.embedding import fit_pca
from gmmscape.errors import InputError
from gmmscape.images import cropped_source
from gmmscape.importer import load_meta, load_table
from gmmscape.io.mrc import read_map
from gmmscape.masks import read_mask
from gmmscape.points import circle_trajectory, line_trajectory, parse_point, user_trajectories
from gmmscape.projection import density
from gmmscape.reconstruct import reconstruct_with_halves
from gmmscape.trajectory import decode_points, write_trajectory


def scattered(n: int = 400, d: int = 3, seed: int = 0) -> np.ndarray:
    """Anisotropic latent points with an offset mean, so PC axes differ from z axes."""
    rng = np.random.default_rng(seed)
    mix = np.linalg.qr(rng.standard_normal((d, d)))[0]
    return (rng.standard_normal((n, d)) * np.arange(d, 0, -1)) @ mix.T + np.arange(1, d + 1)


def test_points_are_read_as_pca_scores_latent_coordinates_or_full_vectors():
    latent = scattered()
    pca = fit_pca(latent)
    expected = pca.mean_ + 1.5 * pca.components_[0] - 0.2 * pca.components_[2]
    np.testing.assert_allclose(parse_point("pc0=1.5, pc2=-0.2", 3, pca), expected, atol=1e-12)
    np.testing.assert_allclose(pca.transform(expected[None])[0], [1.5, 0.0, -0.2], atol=1e-12)
    np.testing.assert_array_equal(parse_point("z1=0.5", 3, pca), [0.0, 0.5, 0.0])
    np.testing.assert_array_equal(parse_point("-1,0,2.5", 3, pca), [-1.0, 0.0, 2.5])
    for text, message in [
        ("pc3=1", "has 3 dimensions"),
        ("pc0=1,z1=2", "not both"),
        ("1,2", "expected 3 latent coordinates"),
        ("pc0=abc", "'abc' is not a number"),
        ("q0=1", "expected pcK or zK"),
        ("", "empty"),
    ]:
        with pytest.raises(InputError, match=message):
            parse_point(text, 3, pca)


def test_line_runs_evenly_between_its_two_points():
    line = line_trajectory("line_a", np.array([0.0, 1.0]), np.array([3.0, 5.0]), 6)
    np.testing.assert_allclose(line.latent[0], [0.0, 1.0])
    np.testing.assert_allclose(line.latent[-1], [3.0, 5.0])
    np.testing.assert_allclose(np.diff(line.latent, axis=0), [[0.6, 0.8]] * 5, atol=1e-12)
    with pytest.raises(InputError, match="line b: its two points are the same"):
        line_trajectory("line b", np.ones(2), np.ones(2), 5)


def test_circle_lies_in_the_plane_of_its_axes_at_the_median_radius():
    latent = scattered()
    pca = fit_pca(latent)
    circle = circle_trajectory("circle_c", latent, pca, ("pc0", "pc2"), n_points=8)
    centre = latent.mean(axis=0)
    scores = (circle.latent - centre) @ pca.components_.T  # coordinates on all PC axes
    angles = np.rad2deg(np.arctan2(scores[:, 2], scores[:, 0]))
    np.testing.assert_allclose((angles - np.arange(8) * 45.0 + 180) % 360 - 180, 0, atol=1e-9)
    np.testing.assert_allclose(scores[:, 1], 0.0, atol=1e-12)
    in_plane = (latent - centre) @ pca.components_[[0, 2]].T
    radius = np.median(np.hypot(in_plane[:, 0], in_plane[:, 1]))
    np.testing.assert_allclose(np.hypot(scores[:, 0], scores[:, 2]), radius, rtol=1e-12)
    on_z = circle_trajectory("circle_z", latent, pca, ("z0", "z1"), n_points=4, radius=2.0)
    np.testing.assert_allclose(
        on_z.latent - centre, [[2, 0, 0], [0, 2, 0], [-2, 0, 0], [0, -2, 0]], atol=1e-12
    )
    for axes, message in [(("pc0", "z1"), "not orthogonal"), (("z1", "z1"), "two different")]:
        with pytest.raises(InputError, match=message):
            circle_trajectory("circle_c", latent, pca, axes, n_points=8)


# --- end to end on a trained run and on the simulator's truth ---------------------------


def lowpass_correlation(a: np.ndarray, b: np.ndarray, ring: float, weight: np.ndarray) -> float:
    """Correlation of two maps low-passed to Fourier radius `ring`, inside a soft mask."""
    k = np.fft.fftfreq(a.shape[0], 1.0 / a.shape[0])
    radius = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)
    a, b = (np.fft.ifftn(np.fft.fftn(v) * (radius <= ring)).real * weight for v in (a, b))
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.fixture(scope="module")
def linear_run():
    """The trained linear run (position mode, 1D latent; shared with the trajectory
    tests), its data set and the particles' true states in latent.csv's order."""
    run = landscape_data.trained_run("linear", "all", "position", 1)
    root = train_data.dataset("linear", landscape_data.PER_STATE)
    latent = pd.read_csv(run / "latent.csv")
    states = train_data.ground_truth(root, latent["index"].to_numpy())["state"].to_numpy()
    return run, root, latent, states


@pytest.mark.slow
def test_point_maps_match_the_true_state_there_better_than_the_consensus(
    linear_run, tmp_path, capsys
):
    """At the latent points of the two ends of the path (median latent of the particles of
    state 0 and state 19), the maps of the 150 nearest particles agree with the true maps
    of those states better than the consensus map of all 1,000 particles does, where the
    states differ (moving-domain mask) and the 150 particles' signal is above the noise
    (to 32 A). The decoded GMMs and the half maps with their FSC are written too."""
    run, root, latent, states = linear_run
    z = latent["z0"].to_numpy()
    ends = [float(np.median(z[states == s])) for s in (0, 19)]
    out = tmp_path / "points"
    code = main(
        ["reconstruct", "--run", str(run), "--import", str(root / "import"), "--particles",
         "150", "--out", str(out), *[f"--latent={p}" for p in ends], "--at", "pc0=0"]
    )  # fmt: skip
    assert code == 0
    summary = pd.read_csv(out / "points.csv")
    assert summary["particles"].tolist() == [150] * 3
    np.testing.assert_allclose(summary["z0"], [fit_pca(z[:, None]).mean_[0], *ends])
    assert summary["pc0"].iloc[0] == pytest.approx(0.0, abs=1e-9)
    assert np.isfinite(summary["resolution_0.143"]).all()
    for k in range(3):
        for name in (f"gmm/point_{k:03d}.pdb", f"gmm/point_{k:03d}.mrc", f"map_{k:03d}_fsc.csv"):
            assert (out / name).is_file(), name
        assert read_map(out / f"map_{k:03d}_half1.mrc")[1] == pytest.approx(8.0)
    assert "150" in capsys.readouterr().out

    table = load_table(root / "import" / "particles.csv")
    source = cropped_source(
        root / "import" / "stack.mrcs", load_meta(root / "import" / "meta.json")
    )
    (consensus,) = reconstruct_with_halves(table, source, [np.arange(len(table))])
    models = train_data.truth_models(root)
    moving = read_mask(root / "sim" / "moving_mask.mrc", source.box)
    ring = source.box * source.apix / 32.0
    for k, state in ((1, 0), (2, 19)):
        true = density(models[f"state_{state:03d}"], source.box)
        point = lowpass_correlation(read_map(out / f"map_{k:03d}.mrc")[0], true, ring, moving)
        cons = lowpass_correlation(consensus.full, true, ring, moving)
        print(f"state {state}: point map vs truth {point:.3f}, consensus vs truth {cons:.3f}")
        assert point > cons + 0.05


@pytest.mark.slow
def test_reconstruct_rejects_bad_points_in_one_line(linear_run, tmp_path, capsys):
    run, root, *_ = linear_run
    base = [
        "reconstruct",
        "--run",
        str(run),
        "--import",
        str(root / "import"),
        "--out",
        str(tmp_path),
    ]
    assert main([*base, "--at", "pc1=2"]) == 2
    assert capsys.readouterr().err.strip() == (
        "gmmscape reconstruct: axis 'pc1': the latent has 1 dimensions (0-0)"
    )
    assert main(base) == 2
    assert "give latent points with --at and/or --latent" in capsys.readouterr().err


@dataclass
class PlaneDecoder:
    """Latent (z0, z1) -> the linear system with its domain moved by 0.1 box per unit of z
    along x (z0) and z (z1): a circle in latent space moves it on a circle."""

    latent_dim: int = 2
    box: int = 32
    apix: float = 8.0

    def __post_init__(self):
        body, domain, _ = phantoms.parts()
        self.part = np.repeat([phantoms.BODY, phantoms.DOMAIN], [len(body), len(domain)])
        domain = domain + phantoms.linear_path(np.array([0.5]))
        self.neutral = phantoms._gaussians(np.concatenate([body, domain]))

    def decode(self, z):
        z = np.asarray(z, np.float64)
        out = np.repeat(self.neutral[None], len(z), axis=0)
        out[:, self.part == phantoms.DOMAIN, 0] += 0.1 * z[:, :1]
        out[:, self.part == phantoms.DOMAIN, 2] += 0.1 * z[:, 1:]
        return out.astype(np.float32)


@pytest.mark.slow
def test_line_and_circle_trajectories_write_their_series(linear_run, tmp_path):
    """The config's lines and circles become series of decoded GMMs and maps: a circle of
    radius 1 on (z0, z1) moves the domain on a circle of 0.1 box, a line from the state-0
    end of the trained latent to the state-19 end moves the domain along the path."""
    run, root, latent, states = linear_run
    table = load_table(root / "import" / "particles.csv")
    source = cropped_source(
        root / "import" / "stack.mrcs", load_meta(root / "import" / "meta.json")
    )
    rng = np.random.default_rng(0)
    plane = rng.standard_normal((len(table), 2))
    decoder = PlaneDecoder()
    settings = {"circles": {"c": {"axes": ["z0", "z1"], "radius": 1.0}}}
    (circle,) = user_trajectories(settings, plane, fit_pca(plane), 6)
    assert circle.name == "circle_c"
    summary = write_trajectory(
        circle, decoder, tmp_path / circle.name, latent=plane, rows=np.arange(len(table)),
        table=table, source=source, count=40,
    )  # fmt: skip
    np.testing.assert_allclose(summary["t"], np.arange(6) * 60.0)
    centres = decode_points(decoder, circle)[:, decoder.part == phantoms.DOMAIN, :3].mean(axis=1)
    np.testing.assert_allclose(
        np.linalg.norm(centres - centres.mean(axis=0), axis=1), 0.1, rtol=1e-5
    )
    for k in range(6):
        assert (tmp_path / circle.name / f"map_{k:03d}.mrc").is_file()
        assert (tmp_path / circle.name / f"gmm/point_{k:03d}.pdb").is_file()

    from gmmscape.decode import load_decoder

    z = latent[["z0"]].to_numpy()
    ends = [f"{np.median(z[states == s]):.6f}" for s in (0, 19)]
    (line,) = user_trajectories({"lines": {"path": ends}}, z, fit_pca(z), 5)
    trained = load_decoder(run)
    write_trajectory(
        line, trained, tmp_path / line.name, latent=z, rows=np.arange(len(table)),
        table=table, source=source, count=40,
    )  # fmt: skip
    part = train_data.gaussian_parts(root)
    x = decode_points(trained, line)[:, part == phantoms.DOMAIN, 0].mean(axis=1)
    assert (tmp_path / line.name / "map_004.mrc").is_file()
    assert x[0] < x[-1] and np.all(np.diff(x) > 0)  # state 0 is at -x, state 19 at +x
