"""Tests of tutorial_lib.mid (MID: mask, inpaint and denoise, with noise refinement)."""

import numpy as np
import pytest
import torch

import tutorial_lib as tl
from tutorial_lib import data, metrics, mid


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ network
def test_denoiser_shapes_and_identity_start():
    model = mid.Denoiser(3, width=8)
    x = torch.rand(2, 3, 16, 20)
    out = model(x)
    assert out.shape == x.shape
    assert mid.count_parameters(model) > 0
    mask = mid.random_mask(x.shape, 0.5, gen())
    filled = mid.Denoiser.fill(x * mask, mask)
    assert torch.equal(filled * mask, x * mask)          # kept pixels untouched
    assert float(filled.min()) >= 0 and float(filled.max()) <= 1  # dropped ones: local means
    with pytest.raises(tl.InputShapeError, match="mask"):
        model(x, mask[:, :, :8])


def test_fill_is_the_local_mean_of_kept_pixels():
    x = torch.rand(1, 3, 12, 12, generator=gen())
    mask = mid.random_mask(x.shape, 0.6, gen())
    filled = mid.Denoiser.fill(x * mask, mask)
    kept = (x * mask)[0]
    for r, c in [(r, c) for r in range(12) for c in range(12) if mask[0, 0, r, c] == 0][:20]:
        for half in (1, 2):  # the 3x3 window where it holds a kept pixel, else the 5x5 one
            rows, cols = slice(max(r - half, 0), r + half + 1), slice(max(c - half, 0), c + half + 1)
            n = float(mask[0, 0, rows, cols].sum())
            if n:
                expect = kept[:, rows, cols].sum((1, 2)) / n
                break
        else:
            expect = x[0, :, r, c] * 0  # no kept pixel within 5x5: the (zeroed) input stays
        torch.testing.assert_close(filled[0, :, r, c], expect, atol=1e-6, rtol=0)
    ones = torch.ones_like(mask)
    assert mid.Denoiser.fill(x, ones) is x  # nothing dropped: the input itself


def test_denoiser_rejects_bad_inputs():
    model = mid.Denoiser(3, width=8)
    with pytest.raises(tl.InputShapeError, match="channel"):
        model(torch.rand(1, 1, 16, 16))
    with pytest.raises(tl.InputShapeError, match="divisible"):
        model(torch.rand(1, 3, 14, 16))
    with pytest.raises(tl.InputShapeError, match="N, C, H, W"):
        model(torch.rand(3, 16, 16))
    with pytest.raises(tl.TutorialError):
        mid.Denoiser(3, width=0)


# ------------------------------------------------------------------ masking
def test_random_mask_ratio_shared_channels_and_determinism():
    m = mid.random_mask((4, 3, 64, 64), 0.3, gen(1))
    assert m.shape == (4, 1, 64, 64)
    assert set(torch.unique(m).tolist()) <= {0.0, 1.0}
    assert abs(1 - float(m.mean()) - 0.3) < 0.02
    assert torch.equal(m, mid.random_mask((4, 3, 64, 64), 0.3, gen(1)))
    assert torch.equal(mid.random_mask((1, 3, 8, 8), 0.0, gen(1)), torch.ones(1, 1, 8, 8))
    y = torch.rand(2, 3, 8, 8)
    masked, mask = mid.mask_input(y, 0.5, gen(2))
    assert torch.equal(masked, y * mask)
    assert ((masked == 0) | (mask == 1)).all()


@pytest.mark.parametrize("alpha", [-0.1, 1.0, 1.5])
def test_random_mask_rejects_bad_alpha(alpha):
    with pytest.raises(tl.TutorialError, match="alpha"):
        mid.random_mask((1, 3, 4, 4), alpha, gen())


def test_random_mask_rejects_bad_shape():
    with pytest.raises(tl.InputShapeError):
        mid.random_mask((3, 4, 4), 0.5, gen())


# ------------------------------------------------------------------ samplers
def test_gaussian_sampler():
    s = mid.GaussianSampler(0.1)
    n = s.sample(8, (3, 16, 16), gen())
    assert n.shape == (8, 3, 16, 16)
    assert abs(float(n.std()) - 0.1) < 0.01
    with pytest.raises(tl.TutorialError):
        mid.GaussianSampler(-1.0)


def test_residual_sampler_crops_come_from_the_maps():
    maps = [torch.arange(3 * 10 * 12, dtype=torch.float32).view(3, 10, 12),
            torch.full((3, 5, 5), -1.0)]
    s = mid.ResidualSampler(maps)
    crops = s.sample(6, (3, 8, 8), gen())
    assert crops.shape == (6, 3, 8, 8)
    big = maps[0]
    for c in crops:  # only the 10x12 map is large enough for an 8x8 crop
        top, left = divmod(int(c[0, 0, 0]), 12)
        assert torch.equal(c, big[:, top:top + 8, left:left + 8])
    assert torch.equal(crops, mid.ResidualSampler(maps).sample(6, (3, 8, 8), gen()))
    flipped = mid.ResidualSampler(maps, flips=True).sample(20, (3, 4, 4), gen())
    assert flipped.shape == (20, 3, 4, 4)
    centred = mid.ResidualSampler([big], zero_mean=True)
    assert abs(float(centred.maps[0].mean())) < 1e-3


def test_residual_sampler_errors():
    with pytest.raises(tl.TutorialError):
        mid.ResidualSampler([])
    with pytest.raises(tl.InputShapeError, match="C, H, W"):
        mid.ResidualSampler([torch.zeros(4, 4)])
    with pytest.raises(tl.InputShapeError, match="channel"):
        mid.ResidualSampler([torch.zeros(3, 4, 4), torch.zeros(1, 4, 4)])
    s = mid.ResidualSampler(torch.zeros(2, 3, 8, 8))
    with pytest.raises(tl.InputShapeError, match="at least"):
        s.sample(1, (3, 16, 16), gen())
    with pytest.raises(tl.InputShapeError, match="channels"):
        s.sample(1, (1, 4, 4), gen())


# ------------------------------------------------------------------ training
def test_batches_shapes_and_pairing():
    clean = [torch.rand(3, 20, 24), torch.rand(3, 16, 16)]
    x, n = mid.synthetic_batches(clean, mid.GaussianSampler(0.05), 5, 8)(gen())
    assert x.shape == n.shape == (5, 3, 8, 8)
    noisy = [c + 0.1 for c in clean]
    x, n = mid.paired_batches(noisy, clean, 4, 8, augment=True)(gen())
    assert torch.allclose(n, torch.full_like(n, 0.1), atol=1e-6)
    with pytest.raises(tl.InputShapeError):
        mid.paired_batches(noisy[:1], clean, 4, 8)
    with pytest.raises(tl.InputShapeError, match="at least"):
        mid.synthetic_batches(clean, mid.GaussianSampler(0.05), 2, 64)(gen())
    with pytest.raises(tl.InputShapeError):
        mid.synthetic_batches([torch.rand(16, 16)], mid.GaussianSampler(0.05), 2, 8)


def test_mid_loss_matches_formula():
    torch.manual_seed(0)
    model = mid.Denoiser(3, width=4)
    x = torch.rand(2, 3, 8, 8)
    n = 0.1 * torch.randn(2, 3, 8, 8)
    loss = mid.mid_loss(model, x, n, 0.5, gen(3))
    mask = mid.random_mask(x.shape, 0.5, gen(3))
    expected = ((model(mask * (x + n).clamp(0, 1), mask) - x) ** 2).mean()
    assert torch.allclose(loss, expected)
    with pytest.raises(tl.InputShapeError):
        mid.mid_loss(model, x, n[:, :, :4], 0.5, gen())


def test_train_denoiser_reduces_loss_and_is_deterministic():
    clean = [torch.rand(3, 24, 24) * 0.5 + 0.25]
    batches = mid.synthetic_batches(clean, mid.GaussianSampler(0.1), 8, 8)

    def run():
        torch.manual_seed(0)
        model = mid.Denoiser(3, width=8)
        out = mid.train_denoiser(model, batches, 60, alpha=0.3, seed=1, lr=3e-3, progress=False)
        return model, out.history["loss"]

    model, losses = run()
    _, again = run()
    assert losses == again
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert not model.training
    with pytest.raises(tl.TutorialError):
        mid.train_denoiser(model, batches, 0, 0.3)
    with pytest.raises(tl.TutorialError):
        mid.train_denoiser(model, batches, 5, 1.0)


def test_denoise_averages_masks_and_residual_noise():
    torch.manual_seed(0)
    model = mid.Denoiser(3, width=4)
    y = torch.rand(3, 3, 8, 8)
    one = mid.denoise(model, y, alpha=0.0, masks=5)
    assert one.shape == y.shape and float(one.min()) >= 0 and float(one.max()) <= 1
    avg = mid.denoise(model, y, 0.5, 4, gen(5))
    g = gen(5)
    manual = []
    for _ in range(4):
        masked, mask = mid.mask_input(y, 0.5, g)
        manual.append(model(masked, mask))
    assert torch.allclose(avg, torch.stack(manual).mean(0).clamp(0, 1), atol=1e-6)
    images = [torch.rand(3, 8, 12), torch.rand(3, 4, 4)]
    res, hat = mid.residual_noise(model, images, 0.5, 2, gen())
    assert [r.shape for r in res] == [im.shape for im in images]
    assert all(torch.allclose(r + h, im) for r, h, im in zip(res, hat, images))
    with pytest.raises(tl.TutorialError):
        mid.denoise(model, y, 0.5, masks=0)


def test_denoise_blind_uses_only_hiding_masks():
    class Echo(torch.nn.Module):  # returns its input: a kept pixel echoes y, a dropped one gives 0
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, mask):
            return x

    y = torch.rand(2, 3, 8, 8) * 0.5 + 0.25
    blind = mid.denoise_blind(Echo(), y, 0.5, 16, gen())
    seen = mid.denoise(Echo(), y, 0.5, 16, gen())
    assert float(blind.abs().max()) < 0.76  # only pixels no mask hid can echo y
    hidden_once = blind == 0
    assert float(hidden_once.float().mean()) > 0.99
    assert float((seen - y * 0.5).abs().mean()) < 0.1  # a plain mean echoes y in about half the masks
    res, hat = mid.residual_noise(Echo(), list(y), 0.5, 16, gen(), blind=True)
    assert all(torch.allclose(r + h, im) for r, h, im in zip(res, hat, y))
    with pytest.raises(tl.TutorialError, match="alpha > 0"):
        mid.denoise_blind(Echo(), y, 0.0, 4)


# ------------------------------------------------------------------ noise statistics
def test_noise_level_function_recovers_signal_dependent_std():
    g = gen(0)
    x = torch.rand(1, 3, 200, 200, generator=g)
    std = 0.02 + 0.1 * x
    n = std * torch.randn(x.shape, generator=g)
    centers, nlf, counts = mid.noise_level_function(n, x, bins=5, min_count=10)
    assert centers.shape == nlf.shape == counts.shape == (5,)
    assert np.allclose(nlf, 0.02 + 0.1 * centers, atol=0.004)
    assert counts.sum() == x.numel()
    _, sparse, _ = mid.noise_level_function(n[:, :, :2, :2], x[:, :, :2, :2], bins=5, min_count=10)
    assert np.isnan(sparse).all()
    with pytest.raises(tl.InputShapeError):
        mid.noise_level_function(n, x[:, :, :10], bins=5)


def test_nlf_mae():
    assert mid.nlf_mae(np.array([0.1, 0.2, np.nan]), np.array([0.2, 0.2, 0.5])) == pytest.approx(0.05)
    with pytest.raises(tl.InputShapeError):
        mid.nlf_mae(np.zeros(3), np.zeros(4))
    with pytest.raises(tl.TutorialError):
        mid.nlf_mae(np.array([np.nan]), np.array([1.0]))


def test_autocorrelation_white_vs_blurred():
    g = gen(0)
    white = torch.randn(2, 3, 64, 64, generator=g)
    ac = mid.autocorrelation(white, max_lag=2)
    assert ac.shape == (5, 5)
    assert ac[2, 2] == pytest.approx(1.0)
    assert np.abs(np.delete(ac.flatten(), 12)).max() < 0.05
    kernel = torch.ones(3, 1, 1, 2) / 2  # horizontal 2-tap average: lag-1 correlation 0.5
    blurred = torch.nn.functional.conv2d(white, kernel, groups=3)
    acb = mid.autocorrelation(blurred, max_lag=2)
    assert acb[2, 3] == pytest.approx(0.5, abs=0.05)
    assert abs(acb[3, 2]) < 0.05
    with pytest.raises(tl.InputShapeError):
        mid.autocorrelation(torch.randn(3, 2, 2), max_lag=3)


def test_estimate_sigma_and_classical():
    g = gen(0)
    clean = torch.full((3, 64, 64), 0.5)
    noisy = clean + 0.05 * torch.randn(clean.shape, generator=g)
    assert mid.estimate_sigma([noisy]) == pytest.approx(0.05, rel=0.1)
    for method in ("nlm", "tv"):
        out = mid.classical_denoise([noisy], method)[0]
        assert out.shape == noisy.shape
        assert metrics.psnr_list([out], [clean]) > metrics.psnr_list([noisy.clamp(0, 1)], [clean]) + 3
    with pytest.raises(tl.TutorialError):
        mid.classical_denoise([noisy], "bm3d")
    with pytest.raises(tl.TutorialError):
        mid.estimate_sigma([])


def test_small_helpers():
    assert data.even_crop(torch.zeros(3, 7, 9)).shape == (3, 4, 8)
    images = [torch.rand(3, 10, 12), torch.rand(3, 12, 10)]
    crops, partner = data.random_crops(images, 8, 3, seed=0, partners=[i * 2 for i in images])
    assert crops.shape == partner.shape == (6, 3, 8, 8)
    assert torch.allclose(partner, crops * 2)
    with pytest.raises(tl.InputShapeError):
        data.random_crops(images, 16, 1, seed=0)
    with pytest.raises(tl.InputShapeError):
        metrics.psnr_list([images[0]], [])
    assert metrics.ssim_list(images, images) == pytest.approx(1.0, abs=1e-4)


def test_train_denoiser_runs_the_readers_loss():
    calls = []

    def my_loss(model, x, n, alpha, gen):
        calls.append(alpha)
        return mid.mid_loss(model, x, n, alpha, gen)

    torch.manual_seed(0)
    model = mid.Denoiser(3, 4)
    batches = lambda gen: (torch.rand(2, 3, 8, 8, generator=gen), 0.1 * torch.randn(2, 3, 8, 8, generator=gen))  # noqa: E731
    mid.train_denoiser(model, batches, 3, alpha=0.3, seed=1, progress=False, loss_fn=my_loss)
    assert calls == [0.3, 0.3, 0.3]
