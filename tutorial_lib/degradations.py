"""Synthetic image degradations for the all-in-one restoration notebook.

Three degradation types, each a pure function of clean images in [0, 1] and a seeded
``torch.Generator`` (the same generator state gives the same degraded images):

* :func:`add_noise` - additive white Gaussian noise (default sigma = 25/255, the BSD68 sigma-25 setting);
* :func:`add_rain`  - synthetic rain: sparse seeds smeared into slanted streaks by a line kernel,
  added to the image (one angle and length per image);
* :func:`add_haze`  - the atmospheric scattering model ``I = J t + A (1 - t)`` with transmission
  ``t = exp(-beta * depth)`` over a smooth synthetic depth map (:func:`smooth_depth`).

:func:`degrade` dispatches on a task name (``"noise"``, ``"rain"``, ``"haze"``) and
:func:`make_pairs` builds (degraded, clean, task-index) training pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from .data import check_images
from .errors import InputShapeError, TutorialError

TASKS = ("noise", "rain", "haze")


def _check_generator(gen) -> torch.Generator:
    if not isinstance(gen, torch.Generator):
        raise TutorialError(f"gen must be a torch.Generator (e.g. tl.make_generator(seed)), got {type(gen).__name__}.")
    return gen


def _check_clean(x: torch.Tensor, name: str = "clean") -> torch.Tensor:
    check_images(x, channels=(1, 3), name=name)
    if x.numel() and (float(x.min()) < -1e-6 or float(x.max()) > 1 + 1e-6):
        raise InputShapeError(f"{name} must hold values in [0, 1], got range "
                              f"[{float(x.min()):.3g}, {float(x.max()):.3g}].")
    return x


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


# ------------------------------------------------------------------------------------------ noise
def add_noise(clean: torch.Tensor, gen: torch.Generator, sigma: float = 25 / 255,
              clip: bool = True) -> torch.Tensor:
    """``clean + sigma * N(0, 1)`` (clipped to [0, 1] unless ``clip=False``)."""
    _check_clean(clean)
    _check_generator(gen)
    if not (isinstance(sigma, (int, float)) and 0 <= sigma <= 1):
        raise TutorialError(f"sigma is a standard deviation on the [0, 1] scale (25/255 ~ 0.098), got {sigma!r}.")
    noise = torch.randn(clean.shape, generator=gen).to(clean)
    out = clean + sigma * noise
    return out.clamp(0, 1) if clip else out


# ------------------------------------------------------------------------------------------- rain
def line_kernels(angles_deg: torch.Tensor, lengths: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 1, size, size) anti-aliased line kernels (sum 1) at the given angles and lengths (pixels)."""
    if size % 2 == 0 or size < 3:
        raise TutorialError(f"kernel size must be odd and >= 3, got {size}.")
    r = size // 2
    coords = torch.arange(-r, r + 1, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    theta = torch.deg2rad(angles_deg.float()).view(-1, 1, 1)
    # direction of the streak: mostly vertical, tilted by the angle
    dx, dy = torch.sin(theta), torch.cos(theta)
    along = xx * dx + yy * dy
    across = xx * dy - yy * dx
    half = (lengths.float() / 2).view(-1, 1, 1)
    k = torch.clamp(1 - across.abs(), min=0) * (along.abs() <= half).float()
    k = k / k.sum(dim=(1, 2), keepdim=True).clamp_min(1e-8)
    return k.unsqueeze(1)


def add_rain(clean: torch.Tensor, gen: torch.Generator, density: tuple[float, float] = (0.01, 0.03),
             length: tuple[float, float] = (5.0, 11.0), angle: tuple[float, float] = (-25.0, 25.0),
             intensity: tuple[float, float] = (0.6, 0.9)) -> torch.Tensor:
    """Add a synthetic rain-streak layer.

    Per image: seeds fall with probability ``density`` per pixel, each of brightness ~U(0.5, 1); a line
    kernel of random ``length`` and ``angle`` (degrees from vertical) smears them into streaks; the
    layer is scaled so its brightest streak has the drawn ``intensity`` and added (clipped at 1),
    like the additive rain model ``O = B + S`` of the Rain100L data set.
    Ranges are ``(low, high)`` of uniform draws.
    """
    _check_clean(clean)
    _check_generator(gen)
    for name, (lo, hi) in {"density": density, "length": length, "angle": angle, "intensity": intensity}.items():
        if lo > hi:
            raise TutorialError(f"{name} must be a (low, high) range, got {(lo, hi)}.")
    if not (0 < density[0] and density[1] <= 1):
        raise TutorialError(f"density is a per-pixel probability in (0, 1], got {density}.")
    n, c, h, w = clean.shape
    p = _uniform(n, *density, gen).view(n, 1, 1, 1)
    seeds = (torch.rand((n, 1, h, w), generator=gen) < p).float()
    seeds = seeds * (0.5 + 0.5 * torch.rand((n, 1, h, w), generator=gen))
    lengths = _uniform(n, *length, gen)
    angles = _uniform(n, *angle, gen)
    size = int(2 * math.ceil(length[1] / 2) + 1)
    kernels = line_kernels(angles, lengths, size)
    streaks = F.conv2d(seeds.view(1, n, h, w), kernels, padding=size // 2, groups=n).view(n, 1, h, w)
    peak = streaks.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    streaks = streaks / peak * _uniform(n, *intensity, gen).view(n, 1, 1, 1)
    return (clean + streaks.to(clean)).clamp(0, 1)


# ------------------------------------------------------------------------------------------- haze
def smooth_depth(n: int, h: int, w: int, gen: torch.Generator, grid: int = 3) -> torch.Tensor:
    """(N, 1, H, W) smooth depth maps in [0, 1]: a random linear ramp plus a bicubic-upsampled
    ``grid`` x ``grid`` random field, rescaled per image (a stand-in for scene depth)."""
    _check_generator(gen)
    if n < 0 or h < 2 or w < 2:
        raise TutorialError(f"need n >= 0 and h, w >= 2, got n={n}, h={h}, w={w}.")
    yy = torch.linspace(0, 1, h).view(1, 1, h, 1)
    xx = torch.linspace(0, 1, w).view(1, 1, 1, w)
    direction = torch.rand(n, generator=gen) * 2 * math.pi
    ramp = torch.cos(direction).view(n, 1, 1, 1) * xx + torch.sin(direction).view(n, 1, 1, 1) * yy
    coarse = torch.rand((n, 1, grid, grid), generator=gen)
    field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
    depth = ramp + 0.7 * field
    lo = depth.amin(dim=(2, 3), keepdim=True)
    hi = depth.amax(dim=(2, 3), keepdim=True)
    return ((depth - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1)


def add_haze(clean: torch.Tensor, gen: torch.Generator, beta: tuple[float, float] = (0.5, 1.3),
             airlight: tuple[float, float] = (0.7, 0.95), depth_offset: float = 0.2,
             return_parts: bool = False):
    """Atmospheric scattering ``I = J t + A (1 - t)``, ``t = exp(-beta * d)``.

    ``d = depth_offset + smooth_depth`` (so no pixel is haze-free); ``beta`` (scattering coefficient)
    and the grey airlight ``A`` are drawn per image from the ``(low, high)`` ranges. With
    ``return_parts`` it returns ``(hazy, transmission, airlight)``.
    """
    _check_clean(clean)
    _check_generator(gen)
    if beta[0] > beta[1] or beta[0] < 0:
        raise TutorialError(f"beta must be a non-negative (low, high) range, got {beta}.")
    if not (0 <= airlight[0] <= airlight[1] <= 1):
        raise TutorialError(f"airlight must be a (low, high) range inside [0, 1], got {airlight}.")
    n, c, h, w = clean.shape
    depth = depth_offset + smooth_depth(n, h, w, gen)
    b = _uniform(n, *beta, gen).view(n, 1, 1, 1)
    a = _uniform(n, *airlight, gen).view(n, 1, 1, 1)
    t = torch.exp(-b * depth).to(clean)
    a = a.to(clean)
    hazy = (clean * t + a * (1 - t)).clamp(0, 1)
    return (hazy, t, a) if return_parts else hazy


# --------------------------------------------------------------------------------------- dispatch
def degrade(clean: torch.Tensor, task: str, gen: torch.Generator) -> torch.Tensor:
    """Apply the degradation named ``task`` (one of :data:`TASKS`) with its default settings."""
    if task not in TASKS:
        raise TutorialError(f"Unknown degradation {task!r}; choose one of {', '.join(TASKS)}.")
    return {"noise": add_noise, "rain": add_rain, "haze": add_haze}[task](clean, gen)


@dataclass
class PairSet:
    """Degraded/clean pairs with the task of each pair (index into ``tasks``)."""

    degraded: torch.Tensor
    clean: torch.Tensor
    task: torch.Tensor
    tasks: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.clean)

    def select(self, tasks: Sequence[str] | str) -> "PairSet":
        """Only the pairs of the named task(s)."""
        tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
        unknown = [t for t in tasks if t not in self.tasks]
        if unknown:
            raise TutorialError(f"Unknown task(s) {unknown}; this set holds {list(self.tasks)}.")
        keep = torch.zeros(len(self), dtype=torch.bool)
        for t in tasks:
            keep |= self.task == self.tasks.index(t)
        return PairSet(self.degraded[keep], self.clean[keep], self.task[keep], self.tasks)

    def describe(self) -> str:
        counts = ", ".join(f"{t}:{int((self.task == i).sum())}" for i, t in enumerate(self.tasks))
        return (f"{len(self)} pairs of {tuple(self.clean.shape[1:])} ({counts})")

    def __repr__(self) -> str:
        return f"PairSet({self.describe()})"


def make_pairs(clean: torch.Tensor, tasks: Sequence[str] = TASKS, seed: int = 0) -> PairSet:
    """Degrade every clean image with every task in ``tasks`` (one seeded generator per task, so the
    pairs of one task do not change when another task is added or removed)."""
    _check_clean(clean)
    tasks = tuple(tasks)
    if not tasks:
        raise TutorialError("make_pairs needs at least one task.")
    degraded, cleans, labels = [], [], []
    for t in tasks:
        if t not in TASKS:
            raise TutorialError(f"Unknown degradation {t!r}; choose from {', '.join(TASKS)}.")
        gen = torch.Generator().manual_seed(int(seed) * 1000 + TASKS.index(t))
        degraded.append(degrade(clean, t, gen))
        cleans.append(clean)
        labels.append(torch.full((len(clean),), tasks.index(t), dtype=torch.long))
    return PairSet(torch.cat(degraded), torch.cat(cleans), torch.cat(labels), tasks)
