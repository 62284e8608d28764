"""MID: mask, inpaint and denoise, with an iteratively refined noise sampler.

Chihaoui & Favaro, "Unsupervised Real-World Denoising: Sparsity is All You Need" (arXiv 2503.21377).
Setting: a set of clean images and a *separate* set of real noisy images, no pairs.

* :class:`Denoiser` - a small U-Net ``f`` that maps a (masked) noisy image to a clean one.
* :func:`random_mask` / :func:`mask_input` - drop each pixel (all channels together) with
  probability ``alpha``; the kept pixels are left as they are, the dropped ones set to 0.
* :class:`GaussianSampler`, :class:`ResidualSampler` - noise samplers. The residual sampler draws
  random crops from a *noise set* ``N_k = {y_i - f(y_i)}`` built from the real noisy images.
* :func:`mid_loss`, :func:`train_denoiser` - supervised training on synthetic pairs
  ``(M * (x + n), x)`` with ``n`` from a sampler (or on true pairs: the oracle).
* :func:`denoise` - test-time averaging over ``P`` random masks; :func:`residual_noise` builds
  ``N_{k+1}``.
* :func:`noise_level_function`, :func:`nlf_mae`, :func:`autocorrelation` - describe a noise set:
  its standard deviation against intensity, and its spatial correlation.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import check_images, crop_box, even_crop
from .models import count_parameters  # re-exported: notebook 04 calls mid.count_parameters
from .models import TrainRecord, evaluating, fused_adam, model_device
from .errors import InputShapeError, TutorialError


# --------------------------------------------------------------------------------------- network
class Denoiser(nn.Module):
    """A small U-Net that sees a masked image and its mask: ``f(M * y, M)``.

    1. *Fill*: every dropped pixel gets the average of the kept pixels in its 3x3 neighbourhood
       (normalised convolution; widened to 5x5 where a 3x3 window kept nothing). This cheap first
       guess makes inpainting easy to learn.
    2. ``PixelUnshuffle(2)`` folds each 2x2 block of (filled image, mask) into channels, so the 3x3
       convolutions see a 4x larger area for the same cost (a good fit for noise that demosaicking
       spreads over neighbouring pixels); two conv layers, one stride-2 level with a skip
       connection, and ``PixelShuffle(2)`` back.
    3. The output is ``fill + correction`` (residual learning: the untrained network is the fill).

    Without a mask (``mask=None``) every pixel counts as kept. Input sides must be multiples of 4.
    """

    def __init__(self, channels: int = 3, width: int = 32):
        super().__init__()
        if channels < 1 or width < 1:
            raise TutorialError(f"channels and width must be positive, got {channels} and {width}.")
        w, c4 = width, 4 * channels
        self.channels = channels
        self.enc = nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(4 * (channels + 1), w, 3, padding=1),
                                 nn.ReLU(inplace=True), nn.Conv2d(w, w, 3, padding=1), nn.ReLU(inplace=True))
        self.mid = nn.Sequential(nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU(inplace=True),
                                 nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(inplace=True),
                                 nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(inplace=True),
                                 nn.ConvTranspose2d(2 * w, w, 2, stride=2))
        self.dec = nn.Sequential(nn.Conv2d(2 * w, w, 3, padding=1), nn.ReLU(inplace=True),
                                 nn.Conv2d(w, c4, 3, padding=1), nn.PixelShuffle(2))

    @staticmethod
    def fill(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Dropped pixels replaced by the mean of the kept pixels nearby (3x3, else 5x5)."""
        if bool(mask.all()):  # nothing dropped (alpha = 0): the fill is the input itself
            return x
        out = x
        kept = torch.cat([x * mask, mask], dim=1)  # kept values and the mask, averaged over windows below
        for size in (5, 3):  # the 3x3 value wins where it exists
            mean = F.avg_pool2d(kept, size, stride=1, padding=size // 2, count_include_pad=True)
            num, den = mean[:, :-1], mean[:, -1:]
            out = torch.where(den > 0, num / den.clamp(min=1e-12), out)
        return mask * x + (1 - mask) * out

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        check_images(x, self.channels, "denoiser input")
        if x.shape[-2] % 4 or x.shape[-1] % 4:
            raise InputShapeError(f"The denoiser needs image sides divisible by 4, got {tuple(x.shape[-2:])}; "
                                  f"crop with data.even_crop().")
        if mask is None:
            mask = torch.ones_like(x[:, :1])
        elif mask.shape != (x.shape[0], 1, *x.shape[-2:]):
            raise InputShapeError(f"mask must have shape {(x.shape[0], 1, *x.shape[-2:])}, got {tuple(mask.shape)}.")
        filled = self.fill(x, mask)
        a = self.enc(torch.cat([filled, mask], dim=1))
        return filled + self.dec(torch.cat([a, self.mid(a)], dim=1))


# --------------------------------------------------------------------------------------- masking
def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not 0.0 <= alpha < 1.0:
        raise TutorialError(f"The masking ratio alpha must be in [0, 1), got {alpha}.")
    return alpha


def random_mask(shape: Sequence[int], alpha: float, gen: torch.Generator | None = None,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """A binary keep-mask of shape (N, 1, H, W): each pixel is dropped (0) with probability ``alpha``.

    The mask is shared by the colour channels (a dropped pixel loses all three values). Random
    numbers are drawn on the CPU from ``gen`` (reproducible on every device), then moved.
    """
    alpha = _check_alpha(alpha)
    if len(shape) != 4:
        raise InputShapeError(f"random_mask needs an (N, C, H, W) shape, got {tuple(shape)}.")
    n, _, h, w = (int(s) for s in shape)
    if alpha == 0.0:
        return torch.ones(n, 1, h, w, device=device)
    u = torch.rand(n, 1, h, w, generator=gen)
    return (u >= alpha).float().to(device)


def mask_input(y: torch.Tensor, alpha: float, gen: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(M * y, M)`` with ``M = random_mask(y.shape, alpha)``."""
    check_images(y, name="y")
    m = random_mask(y.shape, alpha, gen, y.device)
    return y * m, m


# --------------------------------------------------------------------------------------- samplers
class GaussianSampler:
    """i.i.d. Gaussian noise of standard deviation ``sigma`` (the initial noise model N_0)."""

    def __init__(self, sigma: float):
        if not sigma >= 0:
            raise TutorialError(f"sigma must be >= 0, got {sigma}.")
        self.sigma = float(sigma)

    def sample(self, n: int, shape: Sequence[int], gen: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
        c, h, w = (int(s) for s in shape)
        return (self.sigma * torch.randn(int(n), c, h, w, generator=gen)).to(device)

    def __repr__(self) -> str:
        return f"GaussianSampler(sigma={self.sigma:.4f})"


class ResidualSampler:
    """Random crops of a noise set (a list of (C, H, W) noise maps, or an (N, C, H, W) batch).

    ``flips=True`` also flips crops left-right and up-down at random (these keep the noise's
    statistics when it is symmetric, and enlarge a small noise set); off by default.
    ``zero_mean=True`` subtracts each map's mean once (a residual can carry a small bias).
    """

    def __init__(self, maps: Sequence[torch.Tensor] | torch.Tensor, flips: bool = False,
                 zero_mean: bool = False):
        if isinstance(maps, torch.Tensor):
            check_images(maps, name="noise maps")
            maps = list(maps)
        maps = [m.detach().float().cpu() for m in maps]
        if not maps:
            raise TutorialError("A ResidualSampler needs at least one noise map.")
        for i, m in enumerate(maps):
            if m.ndim != 3:
                raise InputShapeError(f"noise map {i} must be (C, H, W), got shape {tuple(m.shape)}.")
            if m.shape[0] != maps[0].shape[0]:
                raise InputShapeError(f"noise maps have different channel counts: {maps[0].shape[0]} "
                                      f"and {m.shape[0]} (map {i}).")
        if zero_mean:
            maps = [m - m.mean(dim=(1, 2), keepdim=True) for m in maps]
        self.maps = maps
        self.flips = flips
        self.channels = maps[0].shape[0]

    @property
    def std(self) -> float:
        return float(torch.cat([m.flatten() for m in self.maps]).std())

    def sample(self, n: int, shape: Sequence[int], gen: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
        c, h, w = (int(s) for s in shape)
        if c != self.channels:
            raise InputShapeError(f"The noise set has {self.channels} channels, {c} were asked for.")
        usable = [i for i, m in enumerate(self.maps) if m.shape[1] >= h and m.shape[2] >= w]
        if not usable:
            raise InputShapeError(f"No noise map is at least {h}x{w}; the largest is "
                                  f"{max(tuple(m.shape[1:]) for m in self.maps)}.")
        out = torch.empty(int(n), c, h, w)
        picks = torch.randint(0, len(usable), (int(n),), generator=gen)
        for j in range(int(n)):
            m = self.maps[usable[int(picks[j])]]
            top, left = crop_box(m.shape[1], m.shape[2], (h, w), gen)
            crop = m[:, top:top + h, left:left + w]
            if self.flips:
                f = torch.randint(0, 2, (2,), generator=gen)
                if f[0]:
                    crop = crop.flip(-1)
                if f[1]:
                    crop = crop.flip(-2)
            out[j] = crop
        return out.to(device)

    def __repr__(self) -> str:
        return f"ResidualSampler({len(self.maps)} maps, std={self.std:.4f})"


# --------------------------------------------------------------------------------------- training
def mid_loss(model: nn.Module, x: torch.Tensor, n: torch.Tensor, alpha: float,
             gen: torch.Generator | None = None, clip: bool = True) -> torch.Tensor:
    """The MID training loss on one batch: ``|| f(M * (x + n), M) - x ||^2`` (mean squared error).

    ``clip`` keeps the synthetic noisy image in [0, 1], as a real sRGB image is.
    """
    check_images(x, name="x")
    if n.shape != x.shape:
        raise InputShapeError(f"noise {tuple(n.shape)} and clean batch {tuple(x.shape)} differ in shape.")
    y = x + n
    if clip:
        y = y.clamp(0, 1)
    masked, mask = mask_input(y, alpha, gen)
    return F.mse_loss(model(masked, mask), x)


def _as_list(images, name: str) -> list[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        check_images(images, name=name)
        return list(images)
    images = list(images)
    if not images:
        raise InputShapeError(f"{name} is empty.")
    for i, im in enumerate(images):
        if not isinstance(im, torch.Tensor) or im.ndim != 3:
            raise InputShapeError(f"{name}[{i}] must be a (C, H, W) tensor, got "
                                  f"{tuple(im.shape) if isinstance(im, torch.Tensor) else type(im).__name__}.")
    return images


def _crop_batch(images: list[torch.Tensor], batch: int, size: int, gen: torch.Generator,
                partners: list[torch.Tensor] | None = None, augment: bool = False):
    usable = [i for i, im in enumerate(images) if im.shape[-2] >= size and im.shape[-1] >= size]
    if not usable:
        raise InputShapeError(f"No image is at least {size}x{size} pixels.")
    picks = torch.randint(0, len(usable), (batch,), generator=gen)
    boxes, turns, flips = [], torch.zeros(batch, dtype=torch.long), torch.zeros(batch, dtype=torch.bool)
    for j in range(batch):  # the random draws, crop by crop (their order fixes the batch for a seed)
        i = usable[int(picks[j])]
        boxes.append((i, *crop_box(*images[i].shape[-2:], size, gen)))
        if augment:  # one of the 8 flips / quarter turns, the same for both crops of a pair
            turn, flip = (int(v) for v in torch.randint(0, 4, (2,), generator=gen))
            turns[j], flips[j] = turn, bool(flip % 2)

    def stack(source):
        out = torch.stack([source[i][:, top:top + size, left:left + size] for i, top, left in boxes])
        for turn in (1, 2, 3):  # the quarter turns, then the flips, applied to the crops that drew them
            drew = turns == turn
            if drew.any():
                out[drew] = out[drew].rot90(turn, dims=(-2, -1))
        if flips.any():
            out[flips] = out[flips].flip(-1)
        return out
    return stack(images), (stack(partners) if partners is not None else None)


def synthetic_batches(clean, sampler, batch: int, patch: int, augment: bool = True
                      ) -> Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]:
    """A batch function for :func:`train_denoiser`: random ``patch`` crops ``x`` of the clean
    images (a list of (C, H, W) tensors or an (N, C, H, W) batch) and noise ``n ~ sampler``.

    Returns ``(x, n)``; the clean images and the noise are drawn independently (unpaired data).
    ``augment`` flips and turns the clean crops at random (the noise crops are left as they are).
    """
    images = _as_list(clean, "clean images")

    def draw(gen: torch.Generator):
        x, _ = _crop_batch(images, batch, patch, gen, augment=augment)
        return x, sampler.sample(batch, (x.shape[1], patch, patch), gen)
    return draw


def paired_batches(noisy, clean, batch: int, patch: int, augment: bool = False
                   ) -> Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]:
    """A batch function for the supervised oracle: random crops of true pairs, as ``(x, y - x)``.

    ``augment`` applies the same random flip / quarter turn to both crops of a pair.
    """
    noisy = _as_list(noisy, "noisy images")
    clean = _as_list(clean, "clean images")
    if len(noisy) != len(clean) or any(a.shape != b.shape for a, b in zip(noisy, clean)):
        raise InputShapeError("noisy and clean images must come in pairs of equal shapes.")

    def draw(gen: torch.Generator):
        y, x = _crop_batch(noisy, batch, patch, gen, partners=clean, augment=augment)
        return x, y - x
    return draw


def train_denoiser(model: nn.Module, batches: Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]],
                   steps: int, alpha: float, seed: int = 0, lr: float = 2e-3,
                   device: torch.device | str = "cpu", clip: bool = True, progress: bool = True,
                   desc: str = "training", loss_fn: Callable | None = None) -> TrainRecord:
    """Train ``model`` in place with :func:`mid_loss` (Adam, cosine learning-rate decay).

    ``batches(gen)`` returns ``(x, n)`` (see :func:`synthetic_batches`, :func:`paired_batches`).
    ``alpha = 0`` is ordinary (unmasked) supervised training. ``loss_fn(model, x, n, alpha, gen)``
    replaces :func:`mid_loss` (e.g. by a reader's own; it clips ``x + n`` itself). Returns a
    :class:`~tutorial_lib.models.TrainRecord` (the loss every ``steps // 50`` steps).
    """
    from .runtime import progress as _progress

    alpha = _check_alpha(alpha)
    if steps < 1:
        raise TutorialError(f"steps must be >= 1, got {steps}.")
    gen = torch.Generator().manual_seed(int(seed))
    # channels-last convolutions and the fused Adam update are about 20 % faster per step on a CPU
    model.to(device, memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr, fused=fused_adam(device))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * 0.05)
    every = max(1, steps // 50)
    history: dict[str, list[float]] = {"step": [], "loss": []}
    started = TrainRecord.clock()
    it = _progress(range(steps), desc=desc) if progress else range(steps)
    for step in it:
        x, n = batches(gen)
        x, n = (t.to(device, memory_format=torch.channels_last) for t in (x, n))
        loss = mid_loss(model, x, n, alpha, gen, clip=clip) if loss_fn is None else loss_fn(model, x, n, alpha, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % every == 0 or step == steps - 1:
            history["step"].append(step)
            history["loss"].append(round(float(loss.detach()), 6))
    model.to(memory_format=torch.contiguous_format).eval()
    return TrainRecord.done(history, started)


# --------------------------------------------------------------------------------------- inference
def _prepare(model: nn.Module, y: torch.Tensor, alpha: float, masks: int):
    """Validate the inputs of an inference call; return ``(alpha, device)``."""
    alpha = _check_alpha(alpha)
    check_images(y, name="y", like=model)
    if masks < 1:
        raise TutorialError(f"masks (P) must be >= 1, got {masks}.")
    return alpha, model_device(model)


@torch.no_grad()
def denoise(model: nn.Module, y: torch.Tensor, alpha: float = 0.0, masks: int = 1,
            gen: torch.Generator | None = None, batch: int = 8) -> torch.Tensor:
    """``mean_p f(M_p * y)`` over ``masks`` random masks (one plain pass when ``alpha == 0``).

    ``y`` is (N, C, H, W) with even H, W; the result is on ``y``'s device, clamped to [0, 1].
    """
    alpha, device = _prepare(model, y, alpha, masks)
    passes = 1 if alpha == 0.0 else int(masks)
    outs = []
    with evaluating(model):
        for i in range(0, len(y), batch):
            chunk = y[i:i + batch].to(device)
            acc = torch.zeros_like(chunk)
            for _ in range(passes):
                masked, mask = mask_input(chunk, alpha, gen)
                acc += model(masked, mask)
            outs.append((acc / passes).clamp(0, 1).to(y.device))
    return torch.cat(outs)


def denoise_images(model: nn.Module, images: Iterable[torch.Tensor], alpha: float = 0.0,
                   masks: int = 1, gen: torch.Generator | None = None) -> list[torch.Tensor]:
    """:func:`denoise` on a list of (C, H, W) images of different sizes (one at a time)."""
    return [denoise(model, im[None], alpha, masks, gen)[0] for im in images]


@torch.no_grad()
def denoise_blind(model: nn.Module, y: torch.Tensor, alpha: float, masks: int,
                  gen: torch.Generator | None = None, batch: int = 8) -> torch.Tensor:
    """Like :func:`denoise`, but each pixel averages only the predictions of the masks that
    *dropped* it (a blind spot: the pixel's own noisy value never reaches its estimate).

    Pixels that no mask dropped fall back to the mean over all masks. Needs ``alpha > 0``.
    """
    if _check_alpha(alpha) == 0.0:
        raise TutorialError("denoise_blind needs alpha > 0 (with alpha = 0 no pixel is ever hidden).")
    alpha, device = _prepare(model, y, alpha, masks)
    outs = []
    with evaluating(model):
        for i in range(0, len(y), batch):
            chunk = y[i:i + batch].to(device)
            total, hidden, count = torch.zeros_like(chunk), torch.zeros_like(chunk), torch.zeros_like(chunk[:, :1])
            for _ in range(int(masks)):
                masked, mask = mask_input(chunk, alpha, gen)
                pred = model(masked, mask)
                total += pred
                hidden += pred * (1 - mask)
                count += 1 - mask
            out = torch.where(count > 0, hidden / count.clamp(min=1), total / masks)
            outs.append(out.clamp(0, 1).to(y.device))
    return torch.cat(outs)


def residual_noise(model: nn.Module, noisy: Iterable[torch.Tensor], alpha: float, masks: int,
                   gen: torch.Generator | None = None, blind: bool = False
                   ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The next noise set ``N_{k+1} = {y_i - x_hat_i}`` and the pseudo-clean images ``x_hat_i``.

    ``x_hat_i`` is the mean over ``masks`` random masks (:func:`denoise`), or with ``blind=True``
    the mean over the masks that hid each pixel (:func:`denoise_blind`).
    """
    noisy = list(noisy)
    if blind:
        clean_hat = [denoise_blind(model, im[None], alpha, masks, gen)[0] for im in noisy]
    else:
        clean_hat = denoise_images(model, noisy, alpha, masks, gen)
    return [y - x for y, x in zip(noisy, clean_hat)], clean_hat


# --------------------------------------------------------------------------------------- noise statistics
def noise_level_function(noise: Sequence[torch.Tensor] | torch.Tensor,
                         intensity: Sequence[torch.Tensor] | torch.Tensor, bins: int = 12,
                         min_count: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standard deviation of ``noise`` in bins of ``intensity`` (same shapes; every channel pooled).

    Returns ``(centers, std, counts)``; bins with fewer than ``min_count`` values get ``nan``.
    """
    noise = _flat(noise, "noise")
    intensity = _flat(intensity, "intensity")
    if noise.shape != intensity.shape:
        raise InputShapeError(f"noise and intensity must have the same number of values, got "
                              f"{noise.numel()} and {intensity.numel()}.")
    if bins < 1:
        raise TutorialError(f"bins must be >= 1, got {bins}.")
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    idx = torch.bucketize(intensity.double().clamp(0, 1), edges[1:-1])
    counts = torch.bincount(idx, minlength=bins).double()
    s1 = torch.bincount(idx, weights=noise.double(), minlength=bins)
    s2 = torch.bincount(idx, weights=noise.double() ** 2, minlength=bins)
    mean = s1 / counts.clamp(min=1)
    var = (s2 / counts.clamp(min=1) - mean ** 2).clamp(min=0) * counts / (counts - 1).clamp(min=1)
    std = var.sqrt().numpy()
    std[counts.numpy() < min_count] = np.nan
    centers = ((edges[:-1] + edges[1:]) / 2).numpy()
    return centers, std, counts.numpy().astype(int)


def _flat(x: Sequence[torch.Tensor] | torch.Tensor, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().flatten()
    parts = [t.detach().float().cpu().flatten() for t in x]
    if not parts:
        raise InputShapeError(f"{name} is empty.")
    return torch.cat(parts)


def nlf_mae(std_a: np.ndarray, std_b: np.ndarray) -> float:
    """Mean absolute difference of two noise-level functions over the bins where both are defined."""
    a, b = np.asarray(std_a, float), np.asarray(std_b, float)
    if a.shape != b.shape:
        raise InputShapeError(f"The two noise-level functions have different bins: {a.shape} vs {b.shape}.")
    ok = np.isfinite(a) & np.isfinite(b)
    if not ok.any():
        raise TutorialError("The two noise-level functions share no defined bin.")
    return float(np.abs(a[ok] - b[ok]).mean())


def autocorrelation(noise: Sequence[torch.Tensor] | torch.Tensor, max_lag: int = 3) -> np.ndarray:
    """Normalised spatial autocorrelation of noise maps, lags -max_lag..max_lag in both axes.

    Each (image, channel) map has its mean removed; correlations are computed without wrap-around
    (zero padding, divided by the number of overlapping pixel pairs), averaged over maps, and
    divided by the value at lag (0, 0), so the centre is 1. Returns a (2L+1, 2L+1) array.
    """
    maps = list(noise) if not isinstance(noise, torch.Tensor) else (list(noise) if noise.ndim == 4 else [noise])
    if not maps:
        raise InputShapeError("autocorrelation needs at least one noise map.")
    total = None
    for m in maps:
        m = m.detach().double().cpu()
        if m.ndim != 3:
            raise InputShapeError(f"noise maps must be (C, H, W), got shape {tuple(m.shape)}.")
        c, h, w = m.shape
        if h <= max_lag or w <= max_lag:
            raise InputShapeError(f"A {h}x{w} map is too small for max_lag={max_lag}.")
        m = m - m.mean(dim=(1, 2), keepdim=True)
        spec = torch.fft.rfft2(m, s=(2 * h, 2 * w))
        corr = torch.fft.irfft2(spec.abs() ** 2, s=(2 * h, 2 * w))  # (C, 2H, 2W), lag 0 at [0, 0]
        corr = torch.fft.fftshift(corr, dim=(-2, -1))
        ch, cw = h, w
        crop = corr[:, ch - max_lag:ch + max_lag + 1, cw - max_lag:cw + max_lag + 1]
        lags_y = torch.arange(-max_lag, max_lag + 1, dtype=torch.float64)
        overlap = (h - lags_y.abs())[:, None] * (w - lags_y.abs())[None, :]
        crop = (crop / overlap).mean(0)
        total = crop if total is None else total + crop
    total = total / len(maps)
    return (total / total[max_lag, max_lag]).numpy()


def estimate_sigma(images: Iterable[torch.Tensor]) -> float:
    """Noise standard deviation from the finest Haar wavelet band (Donoho's MAD estimate).

    For each (C, H, W) image and channel: the diagonal detail ``(a - b - c + d) / 2`` of every 2x2
    block, then ``median(|detail|) / 0.6745``; averaged over channels and images. This is what
    scikit-image's ``estimate_sigma`` computes (written out here, so PyWavelets is not needed).
    It assumes white noise: for spatially correlated noise it *underestimates* the level.
    """
    values = []
    for im in images:
        im = even_crop(im.detach().double().cpu(), 2)
        if im.ndim != 3:
            raise InputShapeError(f"estimate_sigma needs (C, H, W) images, got shape {tuple(im.shape)}.")
        a, b = im[:, 0::2, 0::2], im[:, 0::2, 1::2]
        c, d = im[:, 1::2, 0::2], im[:, 1::2, 1::2]
        detail = (a - b - c + d) / 2
        values.append(float((detail.flatten(1).abs().median(dim=1).values / 0.6745).mean()))
    if not values:
        raise TutorialError("estimate_sigma needs at least one image.")
    return float(np.mean(values))


def classical_denoise(images: Iterable[torch.Tensor], method: str = "nlm",
                      strength: float = 1.0) -> list[torch.Tensor]:
    """Classical baselines from scikit-image, tuned by each image's own noise estimate ``sigma``.

    ``"nlm"``: non-local means (``h = 0.8 * strength * sigma``, 5x5 patches, search distance 6);
    ``"tv"``: total-variation (Chambolle, ``weight = strength * sigma``).
    ``sigma`` is :func:`estimate_sigma` of the noisy image (no ground truth is used).
    """
    from skimage.restoration import denoise_nl_means, denoise_tv_chambolle

    if method not in ("nlm", "tv"):
        raise TutorialError(f"method must be 'nlm' or 'tv', got {method!r}.")
    out = []
    for im in images:
        sigma = estimate_sigma([im])
        arr = im.detach().cpu().permute(1, 2, 0).double().numpy()
        if method == "nlm":
            res = denoise_nl_means(arr, h=0.8 * strength * sigma, sigma=sigma, patch_size=5,
                                   patch_distance=6, fast_mode=True, channel_axis=-1)
        else:
            res = denoise_tv_chambolle(arr, weight=strength * sigma, channel_axis=-1)
        out.append(torch.from_numpy(np.clip(res, 0, 1)).permute(2, 0, 1).float())
    return out


__all__ = [
    "Denoiser", "count_parameters", "random_mask", "mask_input", "GaussianSampler", "ResidualSampler",
    "mid_loss", "synthetic_batches", "paired_batches", "train_denoiser", "denoise", "denoise_images",
    "residual_noise", "denoise_blind", "noise_level_function", "nlf_mae", "autocorrelation", "estimate_sigma",
    "classical_denoise",
]
