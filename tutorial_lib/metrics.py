"""Image-quality and distribution metrics.

* :func:`psnr`, :func:`ssim` - torchmetrics, for images in [0, 1], per image or averaged.
* :func:`frechet_distance` - the Frechet distance between two Gaussians fitted to feature sets.
  With :func:`classifier_frechet_distance` it is computed in the feature space of the project's own
  small digit classifier: the same formula as FID, but **not** Inception FID, and its values are
  not comparable with published FID numbers (only with each other).
* :func:`delta_e2000` - CIEDE2000 colour difference (scikit-image), mean per image.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from .data import check_images
from .errors import InputShapeError
from .models import evaluating, model_device


def _pair(pred: torch.Tensor, target: torch.Tensor, channels=None) -> None:
    check_images(pred, channels, "pred")
    check_images(target, channels, "target")
    if pred.shape != target.shape:
        raise InputShapeError(f"pred and target must have the same shape, got {tuple(pred.shape)} "
                              f"and {tuple(target.shape)}.")


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}.")


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0,
         reduction: str = "mean") -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of (N, C, H, W) images, computed per image."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    _pair(pred, target)
    per_image = peak_signal_noise_ratio(pred.detach().float().clamp(0, data_range), target.detach().float(),
                                        data_range=data_range, reduction="none", dim=(1, 2, 3))
    return _reduce(per_image, reduction)


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0,
         reduction: str = "mean") -> torch.Tensor:
    """Structural similarity (Gaussian window 11, sigma 1.5; smaller for small images), per image."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    _pair(pred, target)
    side = min(pred.shape[-2:])
    if side < 7:
        raise InputShapeError(f"SSIM needs images of at least 7x7 pixels, got {tuple(pred.shape[-2:])}.")
    kernel = 11 if side >= 11 else 7
    per_image = structural_similarity_index_measure(
        pred.detach().float().clamp(0, data_range), target.detach().float(), data_range=data_range,
        kernel_size=kernel, sigma=1.5 if kernel == 11 else 1.0, reduction="none")
    return _reduce(per_image, reduction)


def gaussian_stats(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of an (N, D) feature matrix."""
    f = features.detach().cpu().double().numpy() if isinstance(features, torch.Tensor) else np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise InputShapeError(f"features must be an (N, D) matrix with N >= 2, got shape {f.shape}.")
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_from_stats(mu_a, cov_a, mu_b, cov_b) -> float:
    """Frechet distance between N(mu_a, cov_a) and N(mu_b, cov_b):

    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)``.

    The matrix square roots use symmetric eigendecompositions, which stay real and stable.
    """
    as64 = lambda v: v.detach().cpu().double().numpy() if isinstance(v, torch.Tensor) else np.asarray(v, np.float64)  # noqa: E731
    mu_a, cov_a, mu_b, cov_b = map(as64, (mu_a, cov_a, mu_b, cov_b))
    cov_a, cov_b = np.atleast_2d(cov_a), np.atleast_2d(cov_b)
    if mu_a.shape != mu_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != (mu_a.size, mu_a.size):
        raise InputShapeError(f"inconsistent statistics: means {mu_a.shape} and {mu_b.shape}, "
                              f"covariances {cov_a.shape} and {cov_b.shape}.")
    vals, vecs = np.linalg.eigh(cov_a)
    root_a = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    middle = root_a @ cov_b @ root_a
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    value = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_root)
    return max(value, 0.0)


def frechet_distance(features_a, features_b) -> float:
    """Frechet distance between Gaussians fitted to two (N, D) feature sets (see :func:`frechet_from_stats`)."""
    mu_a, cov_a = gaussian_stats(features_a)
    mu_b, cov_b = gaussian_stats(features_b)
    if mu_a.shape != mu_b.shape:
        raise InputShapeError(f"feature dimensions differ: {mu_a.shape[0]} vs {mu_b.shape[0]}.")
    return frechet_from_stats(mu_a, cov_a, mu_b, cov_b)


@torch.no_grad()
def extract_features(feature_fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                     batch_size: int = 512) -> torch.Tensor:
    """Apply ``feature_fn`` to ``images`` in batches (no gradients), return (N, D) on the CPU."""
    check_images(images, name="images")
    out = [feature_fn(images[i:i + batch_size]).flatten(1).float().cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out)


def classifier_features(classifier, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """(N, D) features ``classifier.features(images)``, in eval mode and in batches, on the CPU."""
    device = model_device(classifier)
    with evaluating(classifier):
        return extract_features(lambda x: classifier.features(x.to(device)), images, batch_size)


class FrechetReference:
    """A fixed reference set for many Frechet distances in ``classifier.features`` space: its
    features and Gaussian statistics are computed once, here, not at every comparison."""

    def __init__(self, classifier, images: torch.Tensor, batch_size: int = 512):
        self.classifier, self.batch_size = classifier, batch_size
        self.mean, self.cov = gaussian_stats(classifier_features(classifier, images, batch_size))

    def distance(self, images: torch.Tensor) -> float:
        """Frechet distance between ``images`` and the reference set."""
        features = classifier_features(self.classifier, images, self.batch_size)
        if features.shape[1] != self.mean.shape[0]:
            raise InputShapeError(f"feature dimensions differ: {features.shape[1]} vs {self.mean.shape[0]}.")
        return frechet_from_stats(*gaussian_stats(features), self.mean, self.cov)


def classifier_frechet_distance(classifier, images_a: torch.Tensor, images_b: torch.Tensor,
                                batch_size: int = 512) -> float:
    """Frechet distance in the feature space of ``classifier.features`` (not Inception FID). To compare
    many sets with one reference, build a :class:`FrechetReference` once instead."""
    return FrechetReference(classifier, images_b, batch_size).distance(images_a)


def delta_e2000(pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean CIEDE2000 colour difference per image between two sRGB batches (N, 3, H, W) in [0, 1]."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    _pair(pred, target, channels=3)
    a = pred.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    b = target.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    per_image = torch.tensor([float(deltaE_ciede2000(rgb2lab(x), rgb2lab(y)).mean()) for x, y in zip(a, b)])
    return _reduce(per_image, reduction)


def psnr_list(preds: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> float:
    """Mean PSNR (dB) over pairs of (C, H, W) images of possibly different sizes."""
    if len(preds) != len(targets) or not preds:
        raise InputShapeError(f"need equally many predictions and targets, got {len(preds)} and {len(targets)}.")
    return float(np.mean([float(psnr(p[None], t[None])) for p, t in zip(preds, targets)]))


def ssim_list(preds: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> float:
    """Mean SSIM over pairs of (C, H, W) images of possibly different sizes."""
    if len(preds) != len(targets) or not preds:
        raise InputShapeError(f"need equally many predictions and targets, got {len(preds)} and {len(targets)}.")
    return float(np.mean([float(ssim(p[None], t[None])) for p, t in zip(preds, targets)]))
