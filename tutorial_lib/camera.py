"""A camera in software: "unprocessing" sRGB photos to RAW, sensor noise, and a classic ISP back.

Follows Brooks et al., *Unprocessing Images for Learned Raw Denoising* (CVPR 2019):

    sRGB --inverse tone map--> --inverse gamma--> linear RGB --camera matrix--> camera RGB
         --inverse white balance / gains (highlight-protected)--> --Bayer mosaic (RGGB)--> RAW (4, H/2, W/2)
    RAW + noise:  x + N(0, shot * x + read)

and the classic ISP back (:func:`process`): gains / white balance -> bilinear demosaic (kornia) ->
camera-to-RGB matrix -> gamma -> tone curve. ``process(unprocess(x, p), p)`` is close to ``x``
(only clipped highlights and demosaicking blur differ), so noise added in RAW becomes realistic
sRGB noise: signal-dependent, and spatially correlated by demosaicking.

Notebook 04 uses it to make "real" noise the learner does not know; notebook 05 uses it to make
RAW inputs and the classic ISP of the content loss, and its colour helpers: sRGB transfer curves,
luminance, a hue/chroma jitter of the scenes (:func:`recolour`) and the target camera's look
(:class:`TargetLook`, :func:`apply_look`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .data import check_images, rgb_to_gray
from .errors import InputShapeError, TutorialError

# XYZ -> camera matrices of four real cameras (Brooks et al.).
XYZ2CAMS = torch.tensor([
    [[1.0234, -0.2969, -0.2266], [-0.5625, 1.6328, -0.0469], [-0.0703, 0.2188, 0.6406]],
    [[0.4913, -0.0541, -0.0202], [-0.613, 1.3513, 0.2906], [-0.1564, 0.2151, 0.7183]],
    [[0.838, -0.263, -0.0639], [-0.2887, 1.0725, 0.2496], [-0.0627, 0.1427, 0.5438]],
    [[0.6596, -0.2079, -0.0562], [-0.4782, 1.3016, 0.1933], [-0.097, 0.1581, 0.5181]],
])
RGB2XYZ = torch.tensor([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])


@dataclass
class CameraParams:
    """One camera: its sRGB->camera colour matrix and its gains."""

    ccm: torch.Tensor          # (3, 3) linear sRGB -> camera RGB, rows sum to 1
    rgb_gain: float            # overall brightness gain
    red_gain: float            # white-balance gain of the red channel
    blue_gain: float           # white-balance gain of the blue channel

    def to_dict(self) -> dict:
        return {"ccm": [[round(float(v), 6) for v in row] for row in self.ccm],
                "rgb_gain": round(self.rgb_gain, 6), "red_gain": round(self.red_gain, 6),
                "blue_gain": round(self.blue_gain, 6)}

    @property
    def cam2rgb(self) -> torch.Tensor:
        return torch.linalg.inv(self.ccm)


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return float(low + (high - low) * torch.rand((), generator=gen))


def random_ccm(gen: torch.Generator) -> torch.Tensor:
    """A random convex combination of the four XYZ->camera matrices, times sRGB->XYZ, rows normalised."""
    weights = 1e-8 + torch.rand(4, generator=gen)
    xyz2cam = (XYZ2CAMS * weights.view(4, 1, 1)).sum(0) / weights.sum()
    rgb2cam = xyz2cam @ RGB2XYZ
    return rgb2cam / rgb2cam.sum(dim=-1, keepdim=True)


def random_camera(gen: torch.Generator) -> CameraParams:
    """Random colour matrix and gains: rgb_gain = 1/N(0.8, 0.1), red in U(1.9, 2.4), blue in U(1.5, 1.9)."""
    ccm = random_ccm(gen)
    rgb_gain = 1.0 / float(0.8 + 0.1 * torch.randn((), generator=gen))
    return CameraParams(ccm, rgb_gain, _uniform(gen, 1.9, 2.4), _uniform(gen, 1.5, 1.9))


# ------------------------------------------------------------------------------- building blocks
def inverse_smoothstep(x: torch.Tensor) -> torch.Tensor:
    """Inverse of the tone curve 3x^2 - 2x^3."""
    x = x.clamp(0.0, 1.0)
    return 0.5 - torch.sin(torch.asin(1.0 - 2.0 * x) / 3.0)


def smoothstep(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    return 3.0 * x ** 2 - 2.0 * x ** 3


def gamma_expansion(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(min=1e-8) ** 2.2


def gamma_compression(x: torch.Tensor, gamma: float = 2.2) -> torch.Tensor:
    return x.clamp(min=1e-8) ** (1.0 / gamma)


def apply_ccm(images: torch.Tensor, ccm: torch.Tensor) -> torch.Tensor:
    """Apply a 3x3 colour matrix to (N, 3, H, W) images."""
    return torch.einsum("ij,njhw->nihw", ccm.to(images), images)


def _gains(params: CameraParams, device, dtype) -> torch.Tensor:
    return torch.tensor([params.red_gain, 1.0, params.blue_gain], device=device, dtype=dtype) * params.rgb_gain


def safe_invert_gains(images: torch.Tensor, params: CameraParams) -> torch.Tensor:
    """Divide by the white-balance gains, protecting highlights (so they do not clip after processing)."""
    gains = 1.0 / _gains(params, images.device, images.dtype)
    gray = images.mean(dim=1, keepdim=True)
    inflection = 0.9
    mask = ((gray - inflection).clamp(min=0.0) / (1.0 - inflection)) ** 2.0
    safe = torch.maximum(mask + (1.0 - mask) * gains.view(1, 3, 1, 1), gains.view(1, 3, 1, 1))
    return images * safe


def mosaic(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) linear camera RGB -> (N, 4, H/2, W/2) RGGB planes [R, G_r, G_b, B]."""
    check_images(images, channels=3, name="images")
    if images.shape[-1] % 2 or images.shape[-2] % 2:
        raise InputShapeError(f"mosaic needs even height and width, got {tuple(images.shape[-2:])}.")
    red = images[:, 0, 0::2, 0::2]
    green_r = images[:, 1, 0::2, 1::2]
    green_b = images[:, 1, 1::2, 0::2]
    blue = images[:, 2, 1::2, 1::2]
    return torch.stack([red, green_r, green_b, blue], dim=1)


def raw_to_bayer(raw: torch.Tensor) -> torch.Tensor:
    """(N, 4, h, w) RGGB planes -> (N, 1, 2h, 2w) full-resolution Bayer mosaic."""
    check_images(raw, channels=4, name="raw")
    n, _, h, w = raw.shape
    bayer = raw.new_zeros(n, 1, 2 * h, 2 * w)
    bayer[:, 0, 0::2, 0::2] = raw[:, 0]
    bayer[:, 0, 0::2, 1::2] = raw[:, 1]
    bayer[:, 0, 1::2, 0::2] = raw[:, 2]
    bayer[:, 0, 1::2, 1::2] = raw[:, 3]
    return bayer


def demosaic_bilinear(raw: torch.Tensor) -> torch.Tensor:
    """Bilinear demosaicking of RGGB planes (kornia), (N, 4, h, w) -> (N, 3, 2h, 2w)."""
    import kornia

    # kornia names the pattern OpenCV-style: CFA.BG is the layout with red at the top-left pixel.
    return kornia.color.raw_to_rgb(raw_to_bayer(raw), kornia.color.CFA.BG)


# ------------------------------------------------------------------------------- pipelines
def unprocess(images: torch.Tensor, params: CameraParams) -> torch.Tensor:
    """sRGB (N, 3, H, W) in [0, 1] -> linear RAW RGGB planes (N, 4, H/2, W/2) in [0, 1]."""
    check_images(images, channels=3, name="images")
    x = inverse_smoothstep(images)
    x = gamma_expansion(x)
    x = apply_ccm(x, params.ccm)
    x = safe_invert_gains(x, params)
    x = x.clamp(0.0, 1.0)
    return mosaic(x)


def random_noise_levels(gen: torch.Generator) -> tuple[float, float]:
    """Shot and read noise levels: log shot in U(log 1e-4, log 0.012), log read = 2.18 log shot + 1.20 + N(0, 0.26^2)."""
    log_shot = _uniform(gen, math.log(1e-4), math.log(0.012))
    log_read = 2.18 * log_shot + 1.20 + 0.26 * float(torch.randn((), generator=gen))
    return math.exp(log_shot), math.exp(log_read)


def add_raw_noise(raw: torch.Tensor, shot: float, read: float, gen: torch.Generator | None = None) -> torch.Tensor:
    """Heteroscedastic Gaussian approximation of shot + read noise: variance = shot * x + read."""
    check_images(raw, channels=4, name="raw")
    if shot < 0 or read < 0:
        raise InputShapeError(f"noise levels must be non-negative, got shot={shot}, read={read}.")
    std = (raw.clamp(min=0.0) * shot + read).sqrt()
    noise = torch.randn(raw.shape, generator=gen, dtype=raw.dtype).to(raw.device)
    return raw + std * noise


def process(raw: torch.Tensor, params: CameraParams, tone_map: bool = True) -> torch.Tensor:
    """The classic ISP: gains (white balance) -> bilinear demosaic -> camera->sRGB matrix -> gamma -> tone curve."""
    check_images(raw, channels=4, name="raw")
    gains = _gains(params, raw.device, raw.dtype)
    bayer_gains = torch.stack([gains[0], gains[1], gains[1], gains[2]]).view(1, 4, 1, 1)
    x = (raw * bayer_gains).clamp(0.0, 1.0)
    x = demosaic_bilinear(x)
    x = apply_ccm(x, params.cam2rgb).clamp(0.0, 1.0)
    x = gamma_compression(x)
    if tone_map:
        x = smoothstep(x)
    return x.clamp(0.0, 1.0)


def realistic_noise(images: torch.Tensor, gen: torch.Generator, params: CameraParams | None = None,
                    shot: float | None = None, read: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """sRGB images -> (noisy sRGB, clean sRGB) through one camera: unprocess, add RAW noise, process.

    ``clean`` is ``process(unprocess(images))`` with the same camera, so the noise is the only
    difference between the two. Missing ``params``/``shot``/``read`` are drawn from ``gen``.
    """
    params = params or random_camera(gen)
    if shot is None or read is None:
        drawn_shot, drawn_read = random_noise_levels(gen)
        shot = drawn_shot if shot is None else shot
        read = drawn_read if read is None else read
    raw = unprocess(images, params)
    clean = process(raw, params)
    noisy = process(add_raw_noise(raw, shot, read, gen).clamp(0.0, 1.0), params)
    return noisy, clean


# ------------------------------------------------------------ colour helpers (notebook 05's looks)
def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055).clamp(min=1e-8) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp(min=1e-8) ** (1 / 2.4) - 0.055)


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of (N, 3, H, W) images, as (N, 1, H, W) (:func:`tutorial_lib.data.rgb_to_gray`)."""
    return rgb_to_gray(rgb)


def recolour(rgb: torch.Tensor, gen: torch.Generator, max_angle: float = math.pi,
             saturation: tuple[float, float] = (0.7, 1.3)) -> torch.Tensor:
    """Scene augmentation: rotate each image's hue by a random angle (in the YIQ chroma plane, luma
    unchanged) and scale its chroma by a random factor. Applied to the *scenes* before a camera
    sees them, it widens the palette of a few photographs without touching any camera's look.
    """
    check_images(rgb, channels=3, name="rgb")
    n = len(rgb)
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                          dtype=rgb.dtype, device=rgb.device)
    angle = (2 * torch.rand(n, generator=gen) - 1) * max_angle
    scale = saturation[0] + (saturation[1] - saturation[0]) * torch.rand(n, generator=gen)
    c, s = torch.cos(angle) * scale, torch.sin(angle) * scale
    rot = torch.zeros(n, 3, 3)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = c, -s, s, c
    m = torch.linalg.inv(to_yiq) @ rot.to(rgb) @ to_yiq
    return torch.einsum("nij,njhw->nihw", m, rgb).clamp(0, 1)


# ------------------------------------------------------------------------------------ target look
@dataclass(frozen=True)
class TargetLook:
    """The target camera's rendering of an sRGB image.

    ``matrix`` mixes the channels in linear light (rows: output R, G, B); ``contrast`` blends the
    sRGB values towards the S-curve ``3x^2 - 2x^3`` (0: none, 1: full); ``saturation`` scales the
    distance of each pixel from its luma (1: unchanged).
    """

    matrix: tuple = ((1.10, -0.06, -0.02), (0.02, 1.00, -0.04), (-0.02, -0.08, 0.86))
    contrast: float = 0.4
    saturation: float = 1.25

    def describe(self) -> str:
        rows = "; ".join("[" + ", ".join(f"{v:+.2f}" for v in r) + "]" for r in self.matrix)
        return (f"TargetLook: colour matrix (linear light) {rows}; S-curve contrast {self.contrast:.2f}; "
                f"saturation x{self.saturation:.2f}")


DEFAULT_LOOK = TargetLook()


def apply_look(rgb: torch.Tensor, look: TargetLook = DEFAULT_LOOK) -> torch.Tensor:
    """Render sRGB images (N, 3, H, W) in [0, 1] with the target camera's look."""
    check_images(rgb, channels=3, name="rgb")
    m = torch.tensor(look.matrix, dtype=rgb.dtype, device=rgb.device)
    if m.shape != (3, 3):
        raise TutorialError(f"TargetLook.matrix must be 3x3, got shape {tuple(m.shape)}.")
    lin = torch.einsum("ij,njhw->nihw", m, srgb_to_linear(rgb))
    y = linear_to_srgb(lin)
    y = y + look.contrast * ((3 * y ** 2 - 2 * y ** 3) - y)
    lum = luminance(y)
    y = lum + look.saturation * (y - lum)
    return y.clamp(0, 1)
