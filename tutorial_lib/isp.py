"""A learned smartphone ISP trained without aligned pairs (Arhire & Timofte, CVPRW 2025).

The pieces notebook 05 builds on:

* The "target camera" (the DSLR whose rendering the phone should imitate) is
  :class:`tutorial_lib.camera.TargetLook` / :func:`tutorial_lib.camera.apply_look`, with the other
  colour helpers (sRGB transfer curves, luminance, hue/chroma jitter) in :mod:`tutorial_lib.camera`.
* :class:`EfficientISP` - the lightweight RAW-to-RGB network (about 3k parameters at width 12):
  Conv3x3(4->w)+tanh, Conv3x3(w->w)+ReLU, Conv3x3(w->12)+ReLU, PixelShuffle(2);
  :func:`macs_per_megapixel` counts its multiply-accumulates per RAW megapixel.
* Losses: :func:`content_loss` (luminance features of the output against the classic ISP's
  rendering of the same RAW), :func:`total_variation`, the relativistic pairing GAN losses
  :func:`rpgan_d_loss` / :func:`rpgan_g_loss` with the :func:`gradient_penalty` used for R1
  (real) and R2 (fake), and :func:`dynamic_weights` (w = 1 / (||grad L_term|| + 1e-8)).
* Frozen feature networks: :class:`PretrainedFeatures` (torchvision VGG-19 / AlexNet weights
  read from the local torch hub cache, checksum-verified; ``data_scripts/fetch_feature_weights.py``
  fetches them) or the offline fallback :class:`FixedFilterFeatures` (a fixed Gabor filter bank and
  seeded random projections, no pre-training). :func:`feature_networks` picks one and says which.
* :class:`FeatureDiscriminator` - a small convolutional critic on feature maps.
* :func:`checkerboard_patches` - two pixel-disjoint patch sets with the same scene distribution
  (the unpaired phone and DSLR sets).
* :func:`make_phone_set` - RAW mosaics, the classic ISP's renderings and the (evaluation-only)
  target-camera ground truth from sRGB images, using :mod:`tutorial_lib.camera`.
* :func:`train_paired` - the paired upper bound (L1 to the aligned ground truth).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .data import check_images, crop_box
from .errors import InputShapeError, TutorialError
from .models import TrainRecord, batched_apply, fused_adam
# the colour helpers live with the camera; the ISP's losses and data use them
from .camera import (DEFAULT_LOOK, TargetLook, apply_look, linear_to_srgb, luminance,  # noqa: F401
                     recolour, srgb_to_linear)



# ------------------------------------------------------------------------------------------- blur
def blur(x: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    """Gaussian blur (kornia), kernel about 6 sigma wide, reflect padding."""
    from kornia.filters import gaussian_blur2d

    check_images(x, name="x")
    k = 2 * int(math.ceil(3 * sigma)) + 1
    return gaussian_blur2d(x, (k, k), (sigma, sigma), border_type="reflect")


def checkerboard_patches(photos: Mapping[str, torch.Tensor], parity: int, patch_size: int, per_image: int,
                         seed: int = 0, block: int = 64) -> torch.Tensor:
    """Random ``patch_size`` patches lying wholly inside the blocks of one colour of a checkerboard.

    Each photo (3, H, W) is cut into ``block x block`` cells; ``parity`` 0 draws only from the cells
    whose row + column is even, ``parity`` 1 only from the others. Two sets drawn with different
    parities share no pixel, yet sample the same photographs everywhere: their *scenes* follow
    the same distribution, so a camera is the only systematic difference between them.
    Returns (len(photos) * per_image, 3, patch_size, patch_size); the draw depends only on ``seed``.
    """
    if parity not in (0, 1):
        raise TutorialError(f"parity must be 0 or 1, got {parity!r}.")
    if not isinstance(patch_size, int) or patch_size < 4:
        raise TutorialError(f"patch_size must be an integer >= 4, got {patch_size!r}.")
    if not isinstance(block, int) or block < patch_size:
        raise TutorialError(f"block must be an integer >= patch_size ({patch_size}), got {block!r}.")
    if not isinstance(per_image, int) or per_image < 1:
        raise TutorialError(f"per_image must be a positive integer, got {per_image!r}.")
    if not photos:
        raise TutorialError("checkerboard_patches needs at least one photo.")
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    for name, image in photos.items():
        check_images(image[None], channels=3, name=f"photo {name!r}")
        _, h, w = image.shape
        cells = [(r, c) for r in range(h // block) for c in range(w // block) if (r + c) % 2 == parity]
        if not cells:
            raise InputShapeError(f"Photo {name!r} ({h}x{w}) has no {block}x{block} cell of parity {parity}.")
        for _ in range(per_image):
            r, c = cells[int(torch.randint(0, len(cells), (1,), generator=gen))]
            top, left = crop_box(block, block, patch_size, gen)  # inside the cell
            top, left = r * block + top, c * block + left
            out.append(image[:, top:top + patch_size, left:left + patch_size])
    return torch.stack(out).contiguous()


def unpaired_training_sets(photos: Mapping[str, torch.Tensor], phone_camera, look: TargetLook, *, patch: int,
                           per_image: int, block: int, seed: int, hue_jitter: float = 0.5,
                           noise_scale: float = 1.0) -> tuple["PhoneSet", torch.Tensor]:
    """The two unpaired training sets from the same photographs: the phone's RAW patches (with their
    classic-ISP renderings) from the black checkerboard cells, the target camera's patches from the
    white ones. Both sets photograph recoloured scenes (a random hue rotation of at most
    ``hue_jitter`` radians and a chroma scale per patch, before any camera sees them).
    Returns (phone set, target-camera patches)."""
    scene_gen = torch.Generator().manual_seed(seed + 1)
    phone_scenes = recolour(checkerboard_patches(photos, 0, patch, per_image, seed=seed, block=block), scene_gen,
                            max_angle=hue_jitter)
    dslr_scenes = recolour(checkerboard_patches(photos, 1, patch, per_image, seed=seed + 1, block=block), scene_gen,
                           max_angle=hue_jitter)
    phone = make_phone_set(phone_scenes, phone_camera, torch.Generator().manual_seed(seed + 2), look=look,
                           noise_scale=noise_scale)
    return phone, apply_look(dslr_scenes, look)


# ------------------------------------------------------------------------------------------ network
class EfficientISP(nn.Module):
    """EfficientISP-like RAW-to-RGB network.

    Input: packed RGGB RAW (N, 4, h, w) in [0, 1]; output: sRGB (N, 3, 2h, 2w). Three 3x3
    convolutions at half resolution (tanh, ReLU, ReLU), the last one with 12 = 3 x 2 x 2 channels,
    then PixelShuffle(2). ``width=12`` gives 3,060 parameters, as in the paper. With ``seed``, the
    initial weights depend on it alone (not on the global random stream).
    """

    def __init__(self, width: int = 12, seed: int | None = None):
        super().__init__()
        if not isinstance(width, int) or width < 1:
            raise TutorialError(f"width must be a positive integer, got {width!r}.")
        self.width = width
        with torch.random.fork_rng(enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(int(seed))
            self.conv1 = nn.Conv2d(4, width, 3, padding=1, padding_mode="replicate")
            self.conv2 = nn.Conv2d(width, width, 3, padding=1, padding_mode="replicate")
            self.conv3 = nn.Conv2d(width, 12, 3, padding=1, padding_mode="replicate")
        self.shuffle = nn.PixelShuffle(2)
        with torch.no_grad():  # start with mid-grey outputs, so the last ReLU is active from step 0
            self.conv3.bias.fill_(0.3)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        check_images(raw, channels=4, name="raw (packed RGGB, N x 4 x h x w)")
        x = torch.tanh(self.conv1(raw))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        return self.shuffle(x)


def macs_per_megapixel(model: nn.Module, raw_size: int = 32) -> float:
    """Multiply-accumulates per RAW megapixel (one Bayer pixel = one output RGB pixel).

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` (every convolution, transposed
    convolution and matrix product; one multiply-accumulate = 2 FLOPs) on a packed RAW of
    ``raw_size x raw_size`` (i.e. a ``2 raw_size`` square Bayer image).
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    device = next(model.parameters()).device
    with torch.no_grad(), counter:
        model(torch.zeros(1, 4, raw_size, raw_size, device=device))
    bayer_pixels = (2 * raw_size) ** 2
    return counter.get_total_flops() / 2 * 1e6 / bayer_pixels


# ------------------------------------------------------------------------------------------- losses
def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring pixels (horizontal + vertical)."""
    check_images(x, name="x")
    dh = (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean()
    dw = (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()
    return dh + dw


def normalize_channels(f: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Unit-length feature vector at every position (as in LPIPS)."""
    return f / (f.pow(2).sum(1, keepdim=True) + eps).sqrt()


def content_loss(feature_fn: Callable[[torch.Tensor], Sequence[torch.Tensor]], output: torch.Tensor,
                 classic: torch.Tensor) -> torch.Tensor:
    """Structure kept from the classic ISP: distance between channel-normalised features of the two
    images' luminance, summed over the feature layers. Colour is left free (luminance only), and
    the normalisation makes the loss tolerant of local brightness/contrast changes (tone curves).
    """
    check_images(output, channels=3, name="output")
    check_images(classic, channels=3, name="classic")
    if output.shape != classic.shape:
        raise InputShapeError(f"output {tuple(output.shape)} and classic {tuple(classic.shape)} differ in shape.")
    fo = feature_fn(luminance(output))
    with torch.no_grad():
        fc = feature_fn(luminance(classic))
    return sum((normalize_channels(a) - normalize_channels(b.detach())).pow(2).sum(1).mean()
               for a, b in zip(fo, fc))


def rpgan_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Relativistic pairing loss for the discriminator: softplus(-(D(real) - D(fake))), mean over pairs."""
    if d_real.shape != d_fake.shape:
        raise InputShapeError(f"d_real {tuple(d_real.shape)} and d_fake {tuple(d_fake.shape)} must pair up.")
    return F.softplus(-(d_real - d_fake)).mean()


def rpgan_g_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Relativistic pairing loss for the generator: softplus(-(D(fake) - D(real)))."""
    if d_real.shape != d_fake.shape:
        raise InputShapeError(f"d_real {tuple(d_real.shape)} and d_fake {tuple(d_fake.shape)} must pair up.")
    return F.softplus(-(d_fake - d_real)).mean()


def gradient_penalty(discriminator: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """E ||d D(x) / dx||^2: R1 when ``x`` are real samples, R2 when they are fakes."""
    x = x.detach().float().requires_grad_(True)
    out = discriminator(x)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def dynamic_weights(losses: Mapping[str, torch.Tensor], params: Sequence[torch.Tensor], eps: float = 1e-8,
                    scales: Mapping[str, float] | None = None):
    """Per-term weights w_i = 1 / (||grad_theta L_i|| + eps) and the combined gradient
    sum_i s_i w_i grad L_i (``scales`` s_i default to 1), so every term pushes with unit norm.

    Returns ``(weights, grads)``: a dict of floats and a list aligned with ``params`` (write it to
    ``p.grad`` before the optimiser step).
    """
    params = list(params)
    if not losses:
        raise TutorialError("dynamic_weights needs at least one loss term.")
    total = [torch.zeros_like(p) for p in params]
    weights = {}
    names = list(losses)
    for i, name in enumerate(names):
        grads = torch.autograd.grad(losses[name], params, retain_graph=i < len(names) - 1, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]
        norm = torch.sqrt(sum(g.float().pow(2).sum() for g in grads))
        w = 1.0 / (float(norm) + eps)
        weights[name] = w
        s = 1.0 if scales is None else float(scales.get(name, 1.0))
        for t, g in zip(total, grads):
            t.add_(g, alpha=s * w)
    return weights, total


# --------------------------------------------------------------------------------- feature networks
@dataclass(frozen=True)
class PretrainedFile:
    """A torchvision weight file in the torch hub cache; its name embeds a SHA-256 prefix."""

    arch: str
    filename: str

    @property
    def sha256_prefix(self) -> str:
        return self.filename.rsplit("-", 1)[1].split(".")[0]

    @property
    def url(self) -> str:
        return f"https://download.pytorch.org/models/{self.filename}"

    def fetch(self) -> Path:
        """Download into the hub cache (``torch.hub.download_url_to_file`` checks the SHA-256 prefix)."""
        from .public_data import download

        return download(self.url, hub_checkpoint_dir(), self.sha256_prefix, self.filename)


PRETRAINED_FILES = {
    "alexnet": PretrainedFile("alexnet", "alexnet-owt-7be5be79.pth"),
    "vgg19": PretrainedFile("vgg19", "vgg19-dcbb9e9d.pth"),
}
_VERIFIED: dict[str, bool] = {}


def hub_checkpoint_dir() -> Path:
    """Where torchvision keeps downloaded weights (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def pretrained_path(arch: str, verify: bool = True) -> Path | None:
    """The verified weight file of ``arch`` ('alexnet' or 'vgg19') in the hub cache, else None.

    A present file whose SHA-256 does not start with the prefix in its name raises a
    :class:`TutorialError` (corrupt download), never loads silently.
    """
    if arch not in PRETRAINED_FILES:
        raise TutorialError(f"Unknown architecture {arch!r}; known: {', '.join(PRETRAINED_FILES)}.")
    spec = PRETRAINED_FILES[arch]
    path = hub_checkpoint_dir() / spec.filename
    if not path.exists():
        return None
    if verify:
        key = f"{path}:{path.stat().st_size}:{path.stat().st_mtime_ns}"
        if key not in _VERIFIED:
            from .public_data import check_sha256_prefix

            try:
                check_sha256_prefix(path, spec.sha256_prefix)
            except TutorialError as err:
                raise TutorialError(f"{err} Run python data_scripts/fetch_feature_weights.py") from None
            _VERIFIED[key] = True
    return path


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class FrozenFeatures(nn.Module):
    """Common interface: ``content(gray)``, ``texture(gray)`` -> lists of maps; ``colour(rgb)`` -> map."""

    name = "features"
    texture_channels: tuple = ()
    colour_channels: int = 0

    def freeze(self) -> "FrozenFeatures":
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True):  # frozen networks always stay in eval mode
        return super().train(False)


class FixedFilterFeatures(FrozenFeatures):
    """Offline fallback feature network: no pre-trained weights, nothing downloaded.

    * grayscale branch: a fixed bank of 8 zero-mean Gabor filters (4 orientations, even and odd
      phase, wavelength 4 px), 7x7, then CReLU (both signs kept: 16 maps); then 2x average pooling
      and a seeded random 3x3 projection to ``width`` channels with CReLU. These two maps play the
      role of AlexNet's first two layers (texture) and of VGG's deep features (content).
    * colour branch (for blurred RGB): the opponent colours (luma, red-green, blue-yellow), 2x
      average pooling, a seeded random 3x3 projection to ``width`` channels and CReLU.

    The filters are a deterministic function of ``seed``: :meth:`build` (re)creates them.
    """

    name = "offline fallback: fixed Gabor bank + seeded random projections (no pre-training)"

    def __init__(self, seed: int = 0, width: int = 16):
        super().__init__()
        self.seed, self.width = int(seed), int(width)
        self.register_buffer("gabor", torch.zeros(8, 1, 7, 7))
        self.register_buffer("proj", torch.zeros(width, 16, 3, 3))
        self.register_buffer("colour_proj", torch.zeros(width, 3, 3, 3))
        self.register_buffer("opponent", torch.zeros(3, 3))
        self.texture_channels = (16, 2 * width)
        self.colour_channels = 2 * width
        self.build()
        self.freeze()

    @torch.no_grad()
    def build(self) -> dict:
        gen = torch.Generator().manual_seed(self.seed)
        r = torch.arange(7, dtype=torch.float32) - 3
        yy, xx = torch.meshgrid(r, r, indexing="ij")
        filters, lam = [], 4.0
        for k in range(4):
            t = math.pi * k / 4
            u = xx * math.cos(t) + yy * math.sin(t)
            env = torch.exp(-(xx ** 2 + yy ** 2) / (2 * (0.5 * lam) ** 2))
            for phase in (0.0, math.pi / 2):
                g = env * torch.cos(2 * math.pi * u / lam + phase)
                g = g - g.mean()
                filters.append(g / g.norm())
        self.gabor.copy_(torch.stack(filters)[:, None])
        self.proj.copy_(torch.randn(self.width, 16, 3, 3, generator=gen) / math.sqrt(16 * 9))
        self.opponent.copy_(torch.tensor([[0.299, 0.587, 0.114], [0.5, -0.5, 0.0], [-0.25, -0.25, 0.5]]))
        self.colour_proj.copy_(torch.randn(self.width, 3, 3, 3, generator=gen) / math.sqrt(3 * 9))
        return {"filters": "Gabor 8x7x7 + random projections", "seed": self.seed}

    @staticmethod
    def _crelu(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(x), F.relu(-x)], 1)

    def texture(self, gray: torch.Tensor) -> list[torch.Tensor]:
        check_images(gray, channels=1, name="gray")
        f0 = self._crelu(F.conv2d(F.pad(gray, (3, 3, 3, 3), mode="reflect"), self.gabor.to(gray.dtype)))
        f1 = self._crelu(F.conv2d(F.avg_pool2d(f0, 2), self.proj.to(gray.dtype), padding=1))
        return [f0, f1]

    def content(self, gray: torch.Tensor) -> list[torch.Tensor]:
        return self.texture(gray)

    def colour(self, rgb: torch.Tensor) -> torch.Tensor:
        check_images(rgb, channels=3, name="rgb")
        opp = torch.einsum("ij,njhw->nihw", self.opponent.to(rgb.dtype), F.avg_pool2d(rgb, 2))
        return self._crelu(F.conv2d(opp, self.colour_proj.to(rgb.dtype), padding=1))


class LearnedFeatures(FixedFilterFeatures):
    """The fallback's architecture with its filters *learned* offline, self-supervised, on photographs
    (ours; no pre-trained weights, nothing downloaded).

    Starting from the fixed Gabor bank and random projections, both branches are trained as the
    encoders of two small denoising auto-encoders: the grayscale branch reconstructs a clean
    luminance patch from a noisy one (from its two maps), the colour branch a blurred RGB patch at
    half resolution from a noisy one. The images are the scenes themselves (no camera), so the
    filters learn natural-image structure, as ImageNet pre-training does, and favour neither camera.
    :meth:`build` (re)trains them from ``patches`` with ``seed``; then they are frozen.
    """

    name = "offline learned: the fallback's filters trained as denoising auto-encoders on the training photos"

    def __init__(self, patches: torch.Tensor, seed: int = 0, width: int = 16, steps: int = 300,
                 batch_size: int = 32, noise: float = 0.1):
        check_images(patches, channels=3, name="patches")
        super().__init__(seed, width)  # the fixed filters: the starting point (build() trains them)
        self._patches, self.steps, self.batch_size, self.noise = patches, int(steps), int(batch_size), float(noise)

    def build(self) -> dict:
        from .runtime import progress

        fixed = super().build()
        if "_patches" not in self.__dict__:  # called from the fallback's __init__: the fixed filters only
            return fixed
        gen = torch.Generator().manual_seed(self.seed + 7)
        enc = {k: nn.Parameter(getattr(self, k).clone()) for k in ("gabor", "proj", "colour_proj")}
        with torch.random.fork_rng():  # the decoders' initial weights, without touching the global stream
            torch.manual_seed(self.seed + 7)
            dec_gray = nn.Sequential(nn.Conv2d(16 + 2 * self.width, 16, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(16, 1, 3, padding=1))
            dec_rgb = nn.Sequential(nn.Conv2d(2 * self.width, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 3, 3, padding=1))
        opt = torch.optim.Adam([*enc.values(), *dec_gray.parameters(), *dec_rgb.parameters()], lr=3e-3)
        losses = []
        for step in progress(range(self.steps), desc="learned features"):
            idx = torch.randint(0, len(self._patches), (self.batch_size,), generator=gen)
            x = self._patches[idx]
            noisy = (x + self.noise * torch.randn(x.shape, generator=gen)).clamp(0, 1)
            gray, gray_noisy = luminance(x), luminance(noisy)
            f0 = self._crelu(F.conv2d(F.pad(gray_noisy, (3, 3, 3, 3), mode="reflect"), enc["gabor"]))
            f1 = self._crelu(F.conv2d(F.avg_pool2d(f0, 2), enc["proj"], padding=1))
            rec = dec_gray(torch.cat([f0, F.interpolate(f1, scale_factor=2.0, mode="nearest")], 1))
            opp = torch.einsum("ij,njhw->nihw", self.opponent, F.avg_pool2d(blur(noisy, 2.0), 2))
            fc = self._crelu(F.conv2d(opp, enc["colour_proj"], padding=1))
            rec_rgb = dec_rgb(fc)
            loss = F.mse_loss(rec, gray) + F.mse_loss(rec_rgb, F.avg_pool2d(blur(x, 2.0), 2))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % 50 == 0 or step == self.steps - 1:
                losses.append(round(float(loss.detach()), 6))
        with torch.no_grad():
            for k, v in enc.items():
                getattr(self, k).copy_(v)
        return {"filters": "learned (denoising auto-encoders)", "seed": self.seed, "loss": losses}


class PretrainedFeatures(FrozenFeatures):
    """ImageNet-trained torchvision networks read from the local torch hub cache (no download here).

    * content: VGG-19 ``relu5_4`` of the luminance (repeated to 3 channels), as in the paper;
    * texture: AlexNet ``relu1`` and ``relu2`` of the luminance (LPIPS' first two layers);
    * colour: VGG-19 ``relu2_2`` of the blurred RGB image (the paper uses ViT-B/16 patch tokens;
      torchvision's ViT weights are 330 MB, so this stays with the VGG already loaded).
    """

    name = "pre-trained torchvision VGG-19 + AlexNet (ImageNet weights from the torch hub cache)"

    def __init__(self):
        super().__init__()
        paths = {arch: pretrained_path(arch) for arch in PRETRAINED_FILES}
        missing = [PRETRAINED_FILES[a].filename for a, p in paths.items() if p is None]
        if missing:
            raise TutorialError(f"Pre-trained weights missing from {hub_checkpoint_dir()}: {', '.join(missing)}. "
                                f"Fetch them with: python data_scripts/fetch_feature_weights.py")
        from torchvision.models import alexnet, vgg19

        vgg, alex = vgg19(weights=None), alexnet(weights=None)
        vgg.load_state_dict(torch.load(paths["vgg19"], map_location="cpu", weights_only=True))
        alex.load_state_dict(torch.load(paths["alexnet"], map_location="cpu", weights_only=True))
        self.vgg_low = vgg.features[:9]       # up to relu2_2
        self.vgg_high = vgg.features[9:36]    # relu2_2 -> relu5_4
        self.alex1 = alex.features[:2]        # conv1 + relu
        self.alex2 = alex.features[2:5]       # maxpool, conv2 + relu
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))
        self.texture_channels = (64, 192)
        self.colour_channels = 128
        self.freeze()

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std

    def texture(self, gray: torch.Tensor) -> list[torch.Tensor]:
        check_images(gray, channels=1, name="gray")
        f1 = self.alex1(self._norm(gray))
        return [f1, self.alex2(f1)]

    def content(self, gray: torch.Tensor) -> list[torch.Tensor]:
        check_images(gray, channels=1, name="gray")
        return [self.vgg_high(self.vgg_low(self._norm(gray)))]

    def colour(self, rgb: torch.Tensor) -> torch.Tensor:
        check_images(rgb, channels=3, name="rgb")
        return self.vgg_low(self._norm(rgb))


def pretrained_available() -> bool:
    """True when both VGG-19 and AlexNet weights are in the hub cache (and verified)."""
    return all(pretrained_path(a) is not None for a in PRETRAINED_FILES)


def feature_networks(kind: str = "auto", seed: int = 0, width: int = 16) -> tuple[FrozenFeatures, str]:
    """The frozen feature networks and a sentence saying which were used and why.

    ``kind``: ``"pretrained"`` (fails clearly when the weights are missing), ``"fallback"``, or
    ``"auto"`` (pre-trained when present in the hub cache, else the fallback).
    """
    if kind not in ("auto", "pretrained", "fallback"):
        raise TutorialError(f"kind must be 'auto', 'pretrained' or 'fallback', got {kind!r}.")
    if kind == "pretrained" or (kind == "auto" and pretrained_available()):
        return PretrainedFeatures(), f"Using {PretrainedFeatures.name} from {hub_checkpoint_dir()}."
    why = ("requested" if kind == "fallback" else
           f"the torchvision weights are not in {hub_checkpoint_dir()} "
           f"(python data_scripts/fetch_feature_weights.py fetches them)")
    return FixedFilterFeatures(seed, width), f"Using the {FixedFilterFeatures.name}: {why}."


# ----------------------------------------------------------------------------------- discriminator
class FeatureDiscriminator(nn.Module):
    """A small patch critic on a feature map: conv3x3/2 - LReLU - conv3x3 - LReLU - conv1x1;
    the patch logits are averaged to one score per image."""

    def __init__(self, in_channels: int, width: int = 24):
        super().__init__()
        self.in_channels = in_channels
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 1, 1),
        )

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        if f.ndim != 4 or f.shape[1] != self.in_channels:
            raise InputShapeError(f"This discriminator expects (N, {self.in_channels}, H, W) feature maps, "
                                  f"got {tuple(f.shape)}.")
        return self.net(f).mean(dim=(1, 2, 3))


# ------------------------------------------------------------------------------------------- data
@dataclass
class PhoneSet:
    """RAW mosaics (N, 4, h, w) from the phone, the classic ISP's renderings (N, 3, 2h, 2w), and the
    target camera's rendering of the same scenes (``truth``: for evaluation only)."""

    raw: torch.Tensor
    classic: torch.Tensor
    truth: torch.Tensor
    noise: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.raw)


def make_phone_set(rgb: torch.Tensor, params, gen: torch.Generator, look: TargetLook = DEFAULT_LOOK,
                   noise: bool = True, noise_scale: float = 1.0) -> PhoneSet:
    """Photograph sRGB scenes (N, 3, H, W) with the phone whose camera is ``params``.

    Each image gets its own noise levels (``camera.random_noise_levels``, scaled by
    ``noise_scale``). Returns the noisy RAW, the classic ISP's rendering of it and the target look
    of the clean scene.
    """
    from . import camera

    check_images(rgb, channels=3, name="rgb")
    if rgb.shape[-1] % 2 or rgb.shape[-2] % 2:
        raise InputShapeError(f"Height and width must be even for a Bayer mosaic, got {tuple(rgb.shape[-2:])}.")
    raw = camera.unprocess(rgb, params)
    levels = []
    if noise:
        noisy = []
        for i in range(len(raw)):
            shot, read = camera.random_noise_levels(gen)
            shot, read = float(shot) * noise_scale, float(read) * noise_scale ** 2
            levels.append((shot, read))
            noisy.append(camera.add_raw_noise(raw[i:i + 1], shot, read, gen))
        raw = torch.cat(noisy).clamp(0, 1)
    with torch.no_grad():
        classic = camera.process(raw, params).clamp(0, 1)
    return PhoneSet(raw, classic, apply_look(rgb, look), levels)


def shoot(split: str, phone_camera, *, side: int, seed: int, look: TargetLook = DEFAULT_LOOK,
          noise_scale: float = 1.0) -> tuple[PhoneSet, list[str]]:
    """Photos of a split (``data.load_photos(split, side=side)``: square views) shot by the phone with
    the noise drawn from ``seed``: (their phone set, their names)."""
    from .data import load_photos

    photos = load_photos(split, side=side)
    return (make_phone_set(torch.stack(list(photos.values())), phone_camera, torch.Generator().manual_seed(seed),
                           look=look, noise_scale=noise_scale), list(photos))


# ---------------------------------------------------------------------------------------- training
def autocast(device: torch.device | str):
    """bfloat16 autocast on CUDA, a no-op elsewhere (mixed precision only on the GPU)."""
    device = torch.device(device)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def train_paired(isp: nn.Module, raw: torch.Tensor, truth: torch.Tensor, *, steps: int, batch_size: int = 16,
                 lr: float = 2e-3, seed: int = 0, device: torch.device | str = "cpu",
                 desc: str = "paired ISP") -> TrainRecord:
    """The upper bound: train ``isp`` with L1 to the aligned ground truth (Adam, cosine schedule).
    Returns a :class:`~tutorial_lib.models.TrainRecord` (the loss every 10 steps)."""
    from .runtime import progress

    check_images(raw, channels=4, name="raw")
    check_images(truth, channels=3, name="truth")
    if len(raw) != len(truth) or truth.shape[-1] != 2 * raw.shape[-1] or truth.shape[-2] != 2 * raw.shape[-2]:
        raise InputShapeError(f"raw {tuple(raw.shape)} and truth {tuple(truth.shape)} do not pair up "
                              f"(same N, truth twice the RAW size).")
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    isp.to(device, memory_format=torch.channels_last).train()  # channels-last convolutions, fused Adam: faster
    opt = torch.optim.Adam(isp.parameters(), lr=lr, betas=(0.9, 0.99), fused=fused_adam(device))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.05)
    history: dict[str, list[float]] = {"step": [], "loss": []}
    started = TrainRecord.clock()
    for step in progress(range(steps), desc=desc):
        idx = torch.randint(0, len(raw), (batch_size,), generator=gen)
        x, y = (t.to(device, memory_format=torch.channels_last) for t in (raw[idx], truth[idx]))
        with autocast(device):
            loss = F.l1_loss(isp(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 10 == 0 or step == steps - 1:
            history["step"].append(step)
            history["loss"].append(round(float(loss.detach()), 5))
    isp.to(memory_format=torch.contiguous_format).eval()
    return TrainRecord.done(history, started)


@torch.no_grad()
def render(isp: nn.Module, raw: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """Run ``isp`` on RAW images in batches (eval mode, no gradients); result on the CPU, in [0, 1]."""
    check_images(raw, channels=4, name="raw", like=isp)
    return batched_apply(isp, raw, batch, fn=lambda x: isp(x).float().clamp(0, 1))


# -------------------------------------------------------------------------------- unpaired training
PAPER_CRITICS = ("texture 0", "texture 1", "colour")
"""The paper's three critics: two on grayscale texture features, one on features of a blurred image."""
ALL_CRITICS = PAPER_CRITICS + ("tone",)


@dataclass(frozen=True)
class UnpairedRecipe:
    """What the unpaired objective contains. The default is the paper's recipe: content + TV + the
    three critics of :data:`PAPER_CRITICS`, every term at dynamic weight (all scales 1), no fading.

    * ``critics``: which critics to train (``"tone"``, a critic on 8x8-block averages of the patch
      and their luminance, is not in the paper);
    * ``scales``: fixed multipliers ``s_k`` of the dynamic weights, by term name (``"tv"``,
      ``"adv texture 0"``, ...); a term not named has scale 1;
    * ``fade_margin``: 0 (the paper) or the margin below which an adversarial term fades out: its
      scale is multiplied by ``min(1, |L_G - log 2| / (fade_margin log 2))``, so that a critic that no
      longer separates the two sets stops pushing the network with a unit-norm gradient of noise.
    """

    critics: tuple = PAPER_CRITICS
    scales: tuple = ()
    fade_margin: float = 0.0
    tone_pool: int = 8

    def __post_init__(self):
        unknown = [c for c in self.critics if c not in ALL_CRITICS]
        if unknown or not self.critics:
            raise TutorialError(f"critics must be a non-empty subset of {ALL_CRITICS}, got {self.critics!r}.")
        object.__setattr__(self, "critics", tuple(self.critics))
        scales = dict(self.scales)
        terms = ("content", "tv") + tuple(f"adv {c}" for c in ALL_CRITICS)
        bad = [k for k in scales if k not in terms]
        if bad:
            raise TutorialError(f"Unknown term(s) {bad} in scales; terms: {', '.join(terms)}.")
        object.__setattr__(self, "scales", tuple(sorted(scales.items())))
        if self.fade_margin < 0:
            raise TutorialError(f"fade_margin must be >= 0, got {self.fade_margin!r}.")

    def as_dict(self) -> dict:
        return {"critics": list(self.critics), "scales": dict(self.scales), "fade_margin": self.fade_margin,
                "tone_pool": self.tone_pool}


def critic_features(feature_nets: FrozenFeatures, images: torch.Tensor, critics: Sequence[str],
                    tone_pool: int = 8) -> dict[str, torch.Tensor]:
    """The frozen feature map each critic judges, by critic name."""
    out = {}
    if "texture 0" in critics or "texture 1" in critics:
        tex0, tex1 = feature_nets.texture(luminance(images))
        out.update({"texture 0": tex0, "texture 1": tex1})
    if "colour" in critics:
        out["colour"] = feature_nets.colour(blur(images, 2.0))
    if "tone" in critics:
        coarse = F.avg_pool2d(images, tone_pool)
        out["tone"] = torch.cat([coarse, luminance(coarse)], dim=1)
    return {k: out[k] for k in critics}


def critic_loss(critics: Mapping[str, nn.Module], feats_real: Mapping[str, torch.Tensor],
                feats_fake: Mapping[str, torch.Tensor], gamma: float) -> torch.Tensor:
    """The critics' loss, summed over critics: relativistic pairing loss of each real/fake pair plus
    ``gamma / 2`` times (R1 on the real features + R2 on the fake features)."""
    total = 0.0
    for k, D in critics.items():
        real, fake = feats_real[k].float(), feats_fake[k].float()
        total = total + rpgan_d_loss(D(real), D(fake))
        total = total + gamma / 2 * (gradient_penalty(D, real) + gradient_penalty(D, fake))
    return total


class UnpairedRun:
    """Everything the unpaired stage trains, started from a warm-started network ``start``: the
    network, its EMA (evaluated), ``n_snapshots`` EMA snapshots spread over training (0 = the start)
    and one :class:`FeatureDiscriminator` per critic of ``recipe``. :meth:`modules` is what a
    checkpoint stores; :meth:`train` runs the loop."""

    def __init__(self, start: nn.Module, feature_nets: FrozenFeatures, recipe: UnpairedRecipe, *,
                 ema_decay: float, n_snapshots: int, steps: int, device: torch.device | str = "cpu",
                 probe: torch.Tensor | None = None):
        import copy

        from .models import ema_model

        self.device = torch.device(device)
        self.recipe, self.feature_nets = recipe, feature_nets
        self.net = copy.deepcopy(start).to(self.device)
        self.ema = ema_model(self.net, ema_decay, steps=steps)
        self.snapshots = [copy.deepcopy(start) for _ in range(max(int(n_snapshots), 1))]
        if probe is None:
            probe = torch.zeros(2, 3, 32, 32)
        with torch.no_grad():
            feats = critic_features(feature_nets, probe.to(self.device), recipe.critics, recipe.tone_pool)
        self.critics = {k: FeatureDiscriminator(v.shape[1]).to(self.device) for k, v in feats.items()}
        self.history: dict = {"step": [], "loss": {}, "weight": {}, "loss_d": [], "snapshot_steps": []}

    @property
    def averaged(self) -> nn.Module:
        return self.ema.module

    def modules(self) -> dict[str, nn.Module]:
        return {"ema": self.ema.module, "last": self.net, **{f"snapshot_{k}": s for k, s in enumerate(self.snapshots)},
                **{f"critic_{k.replace(' ', '_')}": D for k, D in self.critics.items()}}

    def train(self, phone: "PhoneSet", dslr: torch.Tensor, *, steps: int, batch_size: int, g_lr: float, d_lr: float,
              gamma: float, seed: int, critic_loss_fn: Callable = critic_loss,
              weights_fn: Callable | None = None, desc: str = "unpaired ISP") -> dict:
        """The unpaired loop. Each step: (1) one critic update on a batch of network outputs and a
        batch of *randomly drawn* target-camera patches, with ``critic_loss_fn`` (relativistic
        pairing + R1 + R2); (2) the generator terms (content to the classic ISP, TV, one adversarial
        term per critic), combined by ``weights_fn`` (dynamic weights, times the recipe's scales and
        fading); (3) an Adam step and the EMA update. Returns the history (losses and weights every
        5 steps, wall time, throughput)."""
        from .runtime import progress

        check_images(dslr, channels=3, name="dslr")
        weights_fn = weights_fn or (lambda losses, params, scales: dynamic_weights(losses, params, scales=scales))
        recipe, dev, net, fn = self.recipe, self.device, self.net, self.feature_nets
        net.to(memory_format=torch.channels_last)  # channels-last convolutions, fused Adam: faster on a CPU
        params = list(net.parameters())
        opt_g = torch.optim.Adam(params, lr=g_lr, betas=(0.5, 0.9), fused=fused_adam(dev))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt_g, max(steps, 1), eta_min=g_lr * 0.1)
        opt_d = torch.optim.Adam([p for D in self.critics.values() for p in D.parameters()], lr=d_lr, betas=(0.5, 0.9),
                                 fused=fused_adam(dev))
        scales = dict(recipe.scales)
        gen = torch.Generator().manual_seed(seed)
        snap_at = sorted(set(torch.linspace(0, steps, len(self.snapshots)).round().long().tolist()))
        raw_all, classic_all = phone.raw.to(dev), phone.classic.to(dev)
        with torch.no_grad(), autocast(dev):  # the feature networks are frozen: every target patch once
            real_feats_all = critic_features(fn, dslr.to(dev), recipe.critics, recipe.tone_pool)
        history = self.history
        net.train()
        start = time.perf_counter()
        log2 = math.log(2.0)
        for step in progress(range(steps + 1), desc=desc):
            if step in snap_at:  # snapshot of the EMA weights
                self.snapshots[snap_at.index(step)].load_state_dict(self.ema.module.state_dict())
                history["snapshot_steps"].append(step)
            if step == steps:
                break
            i = torch.randint(0, len(raw_all), (batch_size,), generator=gen).to(dev)
            j = torch.randint(0, len(dslr), (batch_size,), generator=gen).to(dev)
            raw, classic = raw_all[i], classic_all[i]
            feats_real = {k: v[j] for k, v in real_feats_all.items()}
            with autocast(dev):
                fake = net(raw).float()
                feats_fake = critic_features(fn, fake, recipe.critics, recipe.tone_pool)  # frozen: once for both players
            # (1) the critics, on the fake features cut from the network (float32: the penalties differentiate twice)
            loss_d = critic_loss_fn(self.critics, feats_real, {k: v.detach() for k, v in feats_fake.items()}, gamma)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            # (2) the generator's terms
            with autocast(dev):
                losses = {"content": content_loss(fn.content, fake, classic).float(),
                          "tv": total_variation(fake).float()}
                for k, D in self.critics.items():
                    losses[f"adv {k}"] = rpgan_g_loss(D(feats_real[k]).float(), D(feats_fake[k]).float())
            step_scales = dict(scales)
            if recipe.fade_margin > 0:
                for k in self.critics:
                    margin = abs(float(losses[f"adv {k}"].detach()) - log2) / log2
                    step_scales[f"adv {k}"] = step_scales.get(f"adv {k}", 1.0) * min(1.0, margin / recipe.fade_margin)
            weights, grads = weights_fn(losses, params, step_scales)
            for p, g in zip(params, grads):
                p.grad = g
            opt_g.step()
            sched.step()
            self.ema.update_parameters(net)
            if step % 5 == 0 or step == steps - 1:
                history["step"].append(step)
                history["loss_d"].append(round(float(loss_d.detach()), 5))
                for k in losses:
                    history["loss"].setdefault(k, []).append(round(float(losses[k].detach()), 5))
                    history["weight"].setdefault(k, []).append(float(f"{weights[k]:.5g}"))
        if dev.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        history["seconds"] = seconds
        history["raw_megapixels_per_s"] = steps * batch_size * raw_all.shape[-1] * raw_all.shape[-2] * 4 / 1e6 / max(seconds, 1e-9)
        net.to(memory_format=torch.contiguous_format).eval()
        return history


__all__ = [
    "blur", "checkerboard_patches", "unpaired_training_sets", "EfficientISP", "macs_per_megapixel", "total_variation", "normalize_channels", "content_loss",
    "rpgan_d_loss", "rpgan_g_loss", "gradient_penalty", "dynamic_weights", "PretrainedFile",
    "PRETRAINED_FILES", "hub_checkpoint_dir", "pretrained_path", "pretrained_available", "FrozenFeatures",
    "FixedFilterFeatures", "LearnedFeatures", "PretrainedFeatures", "feature_networks", "FeatureDiscriminator", "PhoneSet",
    "make_phone_set", "shoot", "autocast", "train_paired", "render", "PAPER_CRITICS", "ALL_CRITICS", "UnpairedRecipe",
    "critic_features", "critic_loss", "UnpairedRun",
]
