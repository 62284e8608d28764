import math

import pytest
import torch

from tutorial_lib import camera, data, metrics
from tutorial_lib.errors import InputShapeError


@pytest.fixture(scope="module")
def photos():
    return data.photo_patches("test", patch_size=32, per_image=4, seed=0).patches


def test_random_camera_is_seeded_and_valid():
    a = camera.random_camera(torch.Generator().manual_seed(3))
    b = camera.random_camera(torch.Generator().manual_seed(3))
    assert torch.equal(a.ccm, b.ccm) and a.red_gain == b.red_gain
    assert torch.allclose(a.ccm.sum(1), torch.ones(3), atol=1e-5)
    assert 1.9 <= a.red_gain <= 2.4 and 1.5 <= a.blue_gain <= 1.9


def test_tone_curve_inverts():
    x = torch.linspace(0, 1, 101)
    assert torch.allclose(camera.smoothstep(camera.inverse_smoothstep(x)), x, atol=1e-5)


def test_mosaic_layout_and_demosaic_colour():
    red = torch.zeros(1, 3, 8, 8)
    red[:, 0] = 0.5
    raw = camera.mosaic(red)
    assert raw.shape == (1, 4, 4, 4)
    assert torch.allclose(raw[:, 0], torch.full((1, 4, 4), 0.5)) and raw[:, 1:].abs().max() == 0
    rgb = camera.demosaic_bilinear(raw)
    assert rgb.shape == (1, 3, 8, 8)
    assert torch.allclose(rgb[0, :, 2:-2, 2:-2].mean((1, 2)), torch.tensor([0.5, 0.0, 0.0]), atol=1e-5)


def test_unprocess_process_round_trip(photos):
    params = camera.random_camera(torch.Generator().manual_seed(0))
    raw = camera.unprocess(photos, params)
    assert raw.shape == (len(photos), 4, 16, 16) and raw.min() >= 0 and raw.max() <= 1
    back = camera.process(raw, params)
    assert float(metrics.psnr(back, photos)) > 25.0  # only demosaicking blur and clipping differ


def test_noise_is_signal_dependent(photos):
    gen = torch.Generator().manual_seed(1)
    params = camera.random_camera(gen)
    raw = camera.unprocess(photos, params)
    flat = torch.full_like(raw, 0.05), torch.full_like(raw, 0.6)
    stds = [float((camera.add_raw_noise(f, 0.01, 1e-5, gen) - f).std()) for f in flat]
    assert stds[1] > 2 * stds[0]
    assert stds[1] == pytest.approx(math.sqrt(0.6 * 0.01 + 1e-5), rel=0.05)


def test_realistic_noise_pairs(photos):
    gen = torch.Generator().manual_seed(2)
    noisy, clean = camera.realistic_noise(photos, gen, shot=0.004, read=1e-5)
    assert noisy.shape == clean.shape == photos.shape
    assert 15 < float(metrics.psnr(noisy, clean)) < 35


def test_bad_shapes_are_reported():
    with pytest.raises(InputShapeError, match="even"):
        camera.mosaic(torch.rand(1, 3, 7, 8))
    with pytest.raises(InputShapeError, match="channel"):
        camera.process(torch.rand(1, 3, 4, 4), camera.random_camera(torch.Generator().manual_seed(0)))
    with pytest.raises(InputShapeError, match="non-negative"):
        camera.add_raw_noise(torch.rand(1, 4, 4, 4), -1.0, 0.0)
