"""The explorer page in a real headless browser (Debian's chromium, driven by playwright).

The page is built from a small trained run (landscape_data's composition run of the
even half, mode ``all``, 2D latent, shared with the even/odd reproducibility test) with a
stand-in UMAP view (a fixed nonlinear map of the PC scores: the page only needs some 2D
view without an inverse). Every check compares what the page computes with an independent Python
reference: the decoder through ``gmmscape decode``, the PCA inverse through sklearn,
nearest-particle averaging through a k-d tree, lasso membership through matplotlib.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import landscape_data
import numpy as np
import pandas as pd
import pytest
import starfile
import train_data
from matplotlib.path import Path as Polygon
from scipy.spatial import cKDTree

from gmmscape import cli, gmmio
from gmmscape.decode import load_decoder
from gmmscape.embedding import fit_pca
from gmmscape.errors import InputError
from gmmscape.explorer import (
    NEAREST,
    ExplorerInputs,
    decoder_layers,
    read_indices,
    write_explorer,
)
from gmmscape.trajectory import pc_trajectories

CHROMIUM = Path("/usr/bin/chromium")
# No background traffic of the browser itself: any request seen is the page's.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 860}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The trained run (the reproducibility test's even half, trained once for both), its
    landscape table (pc, stand-in umap, classes) and its page."""
    train_dir = landscape_data.trained_run("composition", "even", "all", 2, landscape_data.HEAVY)
    root = train_data.dataset(
        "composition", landscape_data.PER_STATE, extra_scale=landscape_data.HEAVY
    )
    folder = tmp_path_factory.mktemp("explorer")
    landscape = pd.read_csv(train_dir / "latent.csv")
    z = landscape[["z0", "z1"]].to_numpy(np.float64)
    pca = fit_pca(z)
    scores = pca.transform(z) / np.sqrt(pca.explained_variance_)
    landscape["pc0"], landscape["pc1"] = (pca.transform(z)[:, k] for k in (0, 1))
    landscape["umap0"] = 3 * np.tanh(scores[:, 0]) + 0.3 * scores[:, 1]
    landscape["umap1"] = 2 * np.sin(scores[:, 1])
    landscape["cluster"] = (scores[:, 0] > 0).astype(int)
    classes = pd.DataFrame({"cluster": [0, 1], "map": ["class_00.mrc", "class_01.mrc"]})
    inputs = ExplorerInputs(
        run="all_all",
        landscape=landscape,
        classes=classes,
        trajectories={t.name: t.latent for t in pc_trajectories(z, pca, 2)},
        class_dir=str(folder / "classes"),
        particles=str(root / "sim" / "particles.star"),
        meta=str(root / "import" / "meta.json"),
    )
    page = write_explorer(folder / "explorer.html", inputs, load_decoder(train_dir))
    return {"train": train_dir, "root": root, "page": page, "landscape": landscape, "pca": pca}


@pytest.fixture(scope="module")
def browser_page(run):
    """The page open in headless chromium; records console errors and every request."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
        page = context.new_page()
        errors, requests = [], []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        context.on("request", lambda r: requests.append(r.url))
        page.goto(run["page"].as_uri())
        page.wait_for_function("window.explorer && explorer.stats().firstPaintMs !== null")
        yield {"page": page, "errors": errors, "requests": requests}
        browser.close()


def landscape_box(page) -> dict:
    return page.locator("#overlay").bounding_box()


def page_point(page, x: float, y: float) -> tuple[float, float]:
    """Viewport coordinates of a data point of the current view, in whole pixels (as the
    pointer events report them)."""
    box = landscape_box(page)
    sx, sy = page.evaluate(f"explorer.toScreen({x}, {y})")
    return round(box["x"] + sx), round(box["y"] + sy)


def data_point(page, vx: float, vy: float) -> np.ndarray:
    box = landscape_box(page)
    return np.array(page.evaluate(f"explorer.toData({vx - box['x']}, {vy - box['y']})"))


def page_requests(browser_page) -> list[str]:
    """Every request but the page's own downloads (blob: URLs, made in the page)."""
    return [url for url in browser_page["requests"] if not url.startswith("blob:")]


def embedded_rows(run) -> pd.DataFrame:
    frame = run["landscape"]
    return frame[frame[["z0", "z1"]].notna().all(axis=1)].reset_index(drop=True)


@pytest.mark.slow
def test_page_is_self_contained(run):
    text = run["page"].read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "default-src 'none'" in text  # the page's own policy forbids every load
    script = (Path(cli.__file__).parent / "explorer_assets" / "explorer.js").read_text()
    assert "</" not in script  # inlined verbatim into a <script> element


@pytest.mark.slow
def test_pointer_decodes_the_pca_inverse_without_errors_or_network(run, browser_page):
    page = browser_page["page"]
    page.evaluate("explorer.setView('pca'); explorer.setTool('explore')")
    models, latents = [], []
    for x, y in ((-0.3, 0.1), (0.3, -0.1)):
        vx, vy = page_point(page, x, y)
        page.mouse.move(vx, vy)
        page.evaluate("explorer.idle()")
        models.append(np.array(page.evaluate("explorer.positions()")))
        latents.append(np.array(page.evaluate("explorer.modelLatent()")))
        pca = run["pca"]
        xy = data_point(page, vx, vy)
        np.testing.assert_allclose(latents[-1], pca.inverse_transform(xy[None])[0], atol=1e-9)
    assert np.abs(models[0] - models[1]).max() > 1e-3  # the model moved with the pointer
    assert browser_page["errors"] == []
    assert page_requests(browser_page) == [run["page"].as_uri()]


@pytest.mark.slow
def test_page_decodes_like_gmmscape_decode(run, browser_page, tmp_path, capsys):
    page = browser_page["page"]
    rows = embedded_rows(run)[["z0", "z1"]].to_numpy()
    points = np.vstack([rows[:2], [[1.5, -2.0]]]).tolist()  # two particles, one point off them
    args = ["decode", "--run", str(run["train"]), "--out", str(tmp_path)]
    for z in points:
        args.append(f"--latent={z[0]!r},{z[1]!r}")
    assert cli.main(args) == 0
    for k, z in enumerate(points):
        expected, _, _ = gmmio.read_text(tmp_path / f"point_{k:03d}.txt")
        decoded = np.array(page.evaluate("z => explorer.decode(z)", z))
        assert np.abs(decoded[:, :3] - expected[:, :3]).max() < 1e-4  # box fractions
        np.testing.assert_allclose(decoded[:, 3:], expected[:, 3:], rtol=1e-4, atol=1e-6)
    assert browser_page["errors"] == []


@pytest.mark.slow
def test_umap_view_maps_back_to_the_nearest_particles_mean(run, browser_page):
    page = browser_page["page"]
    rows = embedded_rows(run)
    view = rows[["umap0", "umap1"]].to_numpy(np.float32).astype(np.float64)  # as the page holds
    latent = rows[["z0", "z1"]].to_numpy(np.float32).astype(np.float64)
    eps = 1e-6 * np.ptp(view, axis=0).max()
    for q in ((0.1, 0.2), (-2.5, 1.0), (4.0, -3.0), tuple(view[7])):
        d, i = cKDTree(view).query(q, k=NEAREST)
        w = 1 / (d + eps)
        expected = (w[:, None] * latent[i]).sum(axis=0) / w.sum()
        got = page.evaluate("q => explorer.latentAt(q[0], q[1], 'umap')", [float(v) for v in q])
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_lasso_selects_the_particles_inside_and_saves_their_star(run, browser_page, tmp_path):
    page = browser_page["page"]
    page.evaluate("explorer.setView('pca'); explorer.setTool('lasso')")
    rows = embedded_rows(run)
    # A triangle about the particle in the densest place, its inscribed circle reaching that
    # particle's nearest fifth: it holds particles and leaves particles out however the
    # landscape is shaped (about the mean it can fall in the gap between two clusters).
    pcs = np.column_stack([rows["pc0"], rows["pc1"]]).astype(np.float32).astype(np.float64)
    fifth = cKDTree(pcs).query(pcs, k=len(pcs) // 5)[0][:, -1]
    centre = pcs[np.argmin(fifth)]
    reach = 2 * fifth.min()
    turns = np.deg2rad([90, 210, 330])
    triangle = centre + reach * np.column_stack([np.cos(turns), np.sin(turns)])
    corners = [page_point(page, x, y) for x, y in triangle]
    page.mouse.move(*corners[0])
    page.mouse.down()
    for corner in corners[1:]:
        page.mouse.move(*corner)
    page.mouse.up()
    polygon = Polygon([data_point(page, *c) for c in corners])
    expected = np.sort(rows["index"].to_numpy()[polygon.contains_points(pcs)])
    assert 20 < len(expected) < len(rows) - 20
    assert page.evaluate("explorer.selection()") == expected.tolist()
    assert f"lasso: {len(expected)} particles" in page.inner_text("#selection-info")
    mean = rows[["z0", "z1"]].to_numpy(np.float32)[np.isin(rows["index"], expected)].mean(0)
    page.evaluate("explorer.idle()")
    np.testing.assert_allclose(page.evaluate("explorer.modelLatent()"), mean, rtol=1e-5)

    with page.expect_download() as download:
        page.click("#save")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    np.testing.assert_array_equal(read_indices(saved), expected)
    command = page.inner_text("#command").splitlines()[-1]
    assert command == page.evaluate("explorer.command()")
    words = shlex.split(command)
    assert words[:2] == ["gmmscape", "subset"]
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the printed command names the file as the browser saved it
    try:
        assert cli.main(words[1:]) == 0
    finally:
        os.chdir(cwd)
    original = starfile.read(run["root"] / "sim" / "particles.star", always_dict=True)
    subset = starfile.read(tmp_path / words[words.index("--out") + 1], always_dict=True)
    pd.testing.assert_frame_equal(subset["optics"], original["optics"])
    pd.testing.assert_frame_equal(
        subset["particles"], original["particles"].iloc[expected].reset_index(drop=True)
    )
    assert browser_page["errors"] == []


@pytest.mark.slow
def test_box_selection_and_class_click(run, browser_page):
    page = browser_page["page"]
    page.evaluate("explorer.setView('umap'); explorer.setTool('box')")
    a, b = page_point(page, -1.0, -1.0), page_point(page, 2.0, 1.5)
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move(*b)
    page.mouse.up()
    (x0, y0), (x1, y1) = data_point(page, *a), data_point(page, *b)
    rows = embedded_rows(run)
    u = rows[["umap0", "umap1"]].to_numpy(np.float32).astype(np.float64)
    inside = (u[:, 0] >= min(x0, x1)) & (u[:, 0] <= max(x0, x1))
    inside &= (u[:, 1] >= min(y0, y1)) & (u[:, 1] <= max(y0, y1))
    assert 0 < inside.sum() < len(rows)
    assert page.evaluate("explorer.selection()") == np.sort(rows["index"][inside]).tolist()

    page.click(".class-row[data-cluster='1']")
    members = rows["cluster"] == 1
    assert page.evaluate("explorer.selection()") == np.sort(rows["index"][members]).tolist()
    info = page.inner_text("#selection-info")
    assert f"class 1: {members.sum()} particles" in info
    assert str(Path(run["page"]).parent / "classes" / "class_01.mrc") in info
    page.evaluate("explorer.idle()")
    mean = rows.loc[members, ["z0", "z1"]].to_numpy(np.float32).mean(0)
    np.testing.assert_allclose(page.evaluate("explorer.modelLatent()"), mean, rtol=1e-5)
    assert browser_page["errors"] == []


@pytest.mark.slow
def test_trajectory_scrub_and_play_animate_the_model(run, browser_page):
    page = browser_page["page"]
    rows = embedded_rows(run)[["z0", "z1"]].to_numpy()
    pc1 = pc_trajectories(rows, run["pca"], 1)[0].latent
    page.select_option("#trajectory", "0")
    page.eval_on_selector(
        "#scrub", "el => { el.value = '500'; el.dispatchEvent(new Event('input')); }"
    )  # halfway
    expected = pc1[3]  # points are evenly spaced, the middle one is halfway
    np.testing.assert_allclose(page.evaluate("explorer.modelLatent()"), expected, atol=1e-9)
    page.click("#play")
    page.wait_for_timeout(300)
    page.evaluate("explorer.idle()")
    page.click("#play")
    moved = np.array(page.evaluate("explorer.modelLatent()"))
    assert np.abs(moved - expected).max() > 1e-6
    assert page.inner_text("#play") == "play"
    assert browser_page["errors"] == []


@pytest.mark.slow
def test_quiver_between_two_picked_points(run, browser_page):
    page = browser_page["page"]
    page.evaluate("explorer.setView('pca'); explorer.setTool('quiver')")
    for x, y in ((-0.4, 0.0), (0.4, 0.0)):
        page.mouse.click(*page_point(page, x, y))
    assert page.inner_text("#model-label") == "quiver"
    assert "max" in page.inner_text("#model-legend")
    assert browser_page["errors"] == []
    assert page_requests(browser_page) == [run["page"].as_uri()]


@pytest.mark.slow
def test_subset_command_rejects_bad_index_files(run, tmp_path, capsys):
    particles, meta = (
        str(run["root"] / "sim" / "particles.star"),
        str(run["root"] / "import/meta.json"),
    )
    for text, message in (
        ("0\n5\nx\n", "line 3: expected a particle index"),
        ("# none\n", "no particle indices"),
        ("999999\n", "particle index 999999 is outside"),
    ):
        path = tmp_path / "sel.txt"
        path.write_text(text)
        args = ["subset", "--particles", particles, "--meta", meta, "--indices", str(path)]
        assert cli.main([*args, "--out", str(tmp_path / "s.star")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "s.star").exists()


def test_decoder_export_refuses_layers_the_page_cannot_evaluate():
    import keras

    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(5, activation="tanh", name="odd")(inputs))
    with pytest.raises(InputError, match="decoder layer odd"):
        decoder_layers(model, np.ones(5, bool))
