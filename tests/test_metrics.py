import numpy as np
import pytest
import torch

import tutorial_lib as tl
from tutorial_lib import metrics, models


def test_psnr_known_value_and_per_image():
    target = torch.zeros(2, 1, 8, 8)
    pred = torch.full_like(target, 0.1)
    assert float(metrics.psnr(pred, target)) == pytest.approx(20.0, abs=1e-4)
    pred[1] = 0.01
    per = metrics.psnr(pred, target, reduction="none")
    assert per.shape == (2,) and float(per[1]) == pytest.approx(40.0, abs=1e-3)


def test_ssim_identity_and_noise():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert float(metrics.ssim(x, x)) == pytest.approx(1.0, abs=1e-5)
    noisy = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert float(metrics.ssim(noisy, x)) < 0.9
    assert metrics.ssim(x[..., :8, :8], x[..., :8, :8]).item() == pytest.approx(1.0, abs=1e-5)


def test_metric_shape_errors():
    with pytest.raises(tl.InputShapeError, match="same shape"):
        metrics.psnr(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(tl.InputShapeError, match="at least 7x7"):
        metrics.ssim(torch.rand(1, 1, 5, 5), torch.rand(1, 1, 5, 5))
    with pytest.raises(tl.InputShapeError, match="3 channel"):
        metrics.delta_e2000(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))
    with pytest.raises(tl.InputShapeError, match=r"\(N, D\)"):
        metrics.frechet_distance(torch.rand(5), torch.rand(5))


def test_frechet_distance_matches_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (20000, 3))
    b = rng.normal(0, 2, (20000, 3)) + np.array([1.0, 0, 0])
    # N(0, I) vs N(m, 4I): |m|^2 + 3 (1 + 4 - 2*2) = 1 + 3 = 4
    assert metrics.frechet_distance(a, b) == pytest.approx(4.0, rel=0.05)
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_classifier_frechet_distance_uses_features():
    net = models.DigitClassifier(size=8)
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 0.2
    assert metrics.classifier_frechet_distance(net, x, x) == pytest.approx(0.0, abs=1e-6)
    assert metrics.classifier_frechet_distance(net, x, y) > 0
    with pytest.raises(tl.InputShapeError, match="8x8"):
        metrics.classifier_frechet_distance(net, torch.rand(4, 1, 16, 16), x)


def test_frechet_reference_matches_the_pairwise_distance_and_restores_training_mode():
    net = models.DigitClassifier(size=8).train()
    gen = torch.Generator().manual_seed(2)
    ref_images, a, b = (torch.rand(48, 1, 8, 8, generator=gen) for _ in range(3))
    reference = metrics.FrechetReference(net, ref_images)
    for images in (a, b * 0.3):
        assert reference.distance(images) == pytest.approx(
            metrics.frechet_distance(metrics.classifier_features(net, images),
                                     metrics.classifier_features(net, ref_images)), rel=1e-9)
        assert reference.distance(images) == pytest.approx(metrics.classifier_frechet_distance(net, images, ref_images))
    assert net.training
    with pytest.raises(tl.InputShapeError, match="8x8"):
        reference.distance(torch.rand(4, 1, 16, 16))


def test_delta_e2000():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert float(metrics.delta_e2000(x, x)) == pytest.approx(0.0, abs=1e-6)
    shifted = x.clone()
    shifted[:, 0] = (shifted[:, 0] + 0.2).clamp(0, 1)
    assert float(metrics.delta_e2000(shifted, x)) > 2.0
    assert metrics.delta_e2000(shifted, x, reduction="none").shape == (2,)
