"""Encoder, decoder and the network-space map to GMMs: ranges, fixed parameters, pre-training."""

import keras
import numpy as np
import pytest

from gmmscape.errors import InputError
from gmmscape.networks import GmmSpace, build_decoder, build_encoder
from gmmscape.projection import FourierGrid
from gmmscape.train import Run, TrainSettings


def neutral_model(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [rng.uniform(-0.3, 0.3, (n, 3)), rng.uniform(0.3, 2.0, n), rng.uniform(0.02, 0.05, n)]
    ).astype(np.float32)


def test_network_space_round_trip_and_ranges():
    neutral = neutral_model()
    space = GmmSpace.build(neutral, "all")
    decoded = space.to_gmm(space.targets()[None]).numpy()[0]
    np.testing.assert_allclose(decoded, neutral, rtol=1e-5, atol=1e-6)
    # All amplitudes free: their mean is pinned to the neutral one (the FRC ignores scale).
    out = np.random.default_rng(0).uniform(0, 1, (3, neutral.size))
    np.testing.assert_allclose(
        space.to_gmm(out).numpy()[..., 3].mean(1), neutral[:, 3].mean(), rtol=1e-6
    )
    anchored = GmmSpace.build(neutral, "all", np.arange(len(neutral)) > 0)  # Gaussian 0 fixed
    extremes = anchored.to_gmm(np.stack([np.zeros(neutral.size), np.ones(neutral.size)])).numpy()
    assert np.all(np.abs(extremes[..., :3]) <= 0.5)
    np.testing.assert_allclose(extremes[1, 1:, 3] * anchored.amp_scale, 1.0)  # (0, 1)
    ratio = extremes[:, 1:, 4] / neutral[1:, 4]
    np.testing.assert_allclose(ratio, np.repeat([[0.5], [1.5]], len(neutral) - 1, 1), rtol=1e-6)
    again = GmmSpace.from_dict(space.to_dict())
    np.testing.assert_array_equal(again.free, space.free)


@pytest.mark.parametrize(
    "mode, columns", [("amplitude", [3]), ("position", [0, 1, 2]), ("all", [0, 1, 2, 3, 4])]
)
def test_modes_and_mask_fix_the_other_parameters(mode, columns):
    neutral = neutral_model()
    inside = np.arange(len(neutral)) % 3 == 0
    space = GmmSpace.build(neutral, mode, inside)
    out = np.random.default_rng(1).uniform(0, 1, (8, neutral.size))
    gmms = space.to_gmm(out).numpy()
    fixed = ~space.free
    np.testing.assert_array_equal(
        gmms[:, fixed], np.broadcast_to(neutral[fixed], gmms[:, fixed].shape)
    )
    assert space.free[inside][:, columns].all() and not space.free[~inside].any()
    assert np.all(gmms[:, space.free] != neutral[space.free])


def test_bad_neutral_and_mode_are_input_errors():
    with pytest.raises(InputError, match="train mode"):
        GmmSpace.build(neutral_model(), "shape")
    with pytest.raises(InputError, match=r"\(N, 5\)"):
        GmmSpace.build(np.zeros((4, 4)), "all")


def test_encoder_starts_near_zero_and_decoder_near_neutral():
    neutral = neutral_model()
    space = GmmSpace.build(neutral, "all")
    encoder = build_encoder(neutral.size, 4, hidden=(128, 128))
    features = np.random.default_rng(2).standard_normal((32, neutral.size)).astype(np.float32)
    assert np.abs(encoder(features, training=False).numpy()).max() < 0.05
    decoder = build_decoder(space, 4, hidden=(128, 128))
    assert decoder.layers[-1].activation.__name__ == "sigmoid"
    decoded = space.to_gmm(decoder(np.zeros((1, 4)), training=False)).numpy()[0]
    np.testing.assert_allclose(decoded, neutral, rtol=0.05, atol=2e-3)


def test_pretrained_decoder_reproduces_the_neutral_model(tmp_path):
    neutral = neutral_model(n=64)
    space = GmmSpace.build(neutral, "all")
    settings = TrainSettings(latent_dim=3, pretrain_steps=100, noise=0.05)
    run = Run.build(settings, space, FourierGrid(32))
    run.pretrain()
    z = np.concatenate([np.zeros((1, 3)), 0.05 * np.random.default_rng(3).standard_normal((8, 3))])
    decoded = space.to_gmm(run.decoder(z.astype(np.float32), training=False)).numpy()
    np.testing.assert_allclose(
        decoded[:, :, :3], np.broadcast_to(neutral[:, :3], decoded[..., :3].shape), atol=2e-3
    )
    np.testing.assert_allclose(
        decoded[:, :, 3:], np.broadcast_to(neutral[:, 3:], decoded[..., 3:].shape), rtol=0.02
    )
    # The saved decoder is plain Keras: it loads without gmmscape's code.
    run.decoder.save(tmp_path / "decoder.keras")
    loaded = keras.saving.load_model(tmp_path / "decoder.keras", compile=False)
    np.testing.assert_allclose(loaded(z, training=False), run.decoder(z, training=False), rtol=1e-6)
