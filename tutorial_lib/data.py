"""Offline data: what ships inside installed packages, and what the project generates from it.

* :func:`load_digits` - scikit-learn's handwritten digits (1,797 images of 8x8, 10 classes),
  optionally upsampled, filtered by class, split deterministically into train and test.
* :func:`load_training_digits` - what notebooks 01 and 02 train on: MNIST when asked for and
  fetched (:mod:`tutorial_lib.public_data`), else the embedded digits, saying so.
* :func:`load_photos` / :func:`photo_patches` - natural photographs bundled with scikit-image and
  scikit-learn, split into train and test *by source image* (no test patch shares a photo with a
  training patch).

Every loader returns tensors in [0, 1] and has a ``describe()`` summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputShapeError, TutorialError


# --------------------------------------------------------------------------------------- digits
@dataclass
class DigitsData:
    """Digit images ``x`` (N, 1, H, W) in [0, 1] and labels ``y`` (N,), for train, test and (when
    asked for with ``val_fraction``) validation."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    size: int
    classes: tuple[int, ...]
    source: str = "scikit-learn digits (UCI ML hand-written digits, 8x8, 16 grey levels)"
    x_val: torch.Tensor = field(default_factory=lambda: torch.empty(0, 1, 8, 8))
    y_val: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.int64))

    def describe(self) -> str:
        counts = torch.bincount(torch.cat([self.y_train, self.y_val, self.y_test]), minlength=10)
        per_class = ", ".join(f"{c}:{int(counts[c])}" for c in self.classes)
        sizes = (f"  train / test {len(self.y_train)} / {len(self.y_test)} images\n" if not len(self.y_val) else
                 f"  train / val / test {len(self.y_train)} / {len(self.y_val)} / {len(self.y_test)} images\n")
        text = (f"{self.source}\n"
                f"  image size   {self.size}x{self.size} (1 channel, values in [0, 1])\n"
                + sizes +
                f"  classes      {list(self.classes)}\n"
                f"  per class    {per_class}")
        return text

    def __repr__(self) -> str:
        return f"DigitsData(train={len(self.y_train)}, test={len(self.y_test)}, size={self.size}, classes={list(self.classes)})"


def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_test = int(round(len(idx) * test_fraction))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load_digits(size: int = 8, classes: Iterable[int] | None = None, exclude: Iterable[int] = (),
                test_fraction: float = 0.25, split_seed: int = 0, val_fraction: float = 0.0) -> DigitsData:
    """The embedded handwritten digits.

    ``size`` upsamples the 8x8 images bilinearly (8, 16, 28 or 32 are typical). ``classes`` keeps
    only those digits, ``exclude`` drops some. The train/test split is stratified and depends only
    on ``split_seed``, so it is the same in every notebook. ``val_fraction`` > 0 moves that
    fraction of the *training* images (stratified) into a validation split, for choosing settings;
    the test split is the same with or without it.
    """
    from sklearn.datasets import load_digits as _sk_digits

    if not isinstance(size, int) or size < 8:
        raise TutorialError(f"size must be an integer >= 8 (the native resolution), got {size!r}.")
    if not 0.0 < test_fraction < 1.0:
        raise TutorialError(f"test_fraction must be in (0, 1), got {test_fraction!r}.")
    if not 0.0 <= val_fraction < 1.0:
        raise TutorialError(f"val_fraction must be in [0, 1), got {val_fraction!r}.")
    bunch = _sk_digits()
    images = bunch.images.astype(np.float32) / 16.0
    labels = bunch.target.astype(np.int64)
    keep = set(range(10)) if classes is None else {int(c) for c in classes}
    bad = sorted(c for c in keep | set(exclude) if c not in range(10))
    if bad:
        raise TutorialError(f"Digit classes are 0-9; got {bad}.")
    keep -= {int(c) for c in exclude}
    if not keep:
        raise TutorialError("No digit class left after filtering.")
    train_idx, test_idx = _stratified_split(labels, test_fraction, split_seed)
    val_idx = np.array([], dtype=np.int64)
    if val_fraction > 0:
        inner_train, inner_val = _stratified_split(labels[train_idx], val_fraction, split_seed + 1)
        train_idx, val_idx = train_idx[inner_train], train_idx[inner_val]

    def pack(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        idx = idx[np.isin(labels[idx], sorted(keep))]
        x = torch.from_numpy(images[idx]).unsqueeze(1)
        if size != 8:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
        return x, torch.from_numpy(labels[idx])

    x_tr, y_tr = pack(train_idx)
    x_te, y_te = pack(test_idx)
    x_va, y_va = pack(val_idx)
    return DigitsData(x_tr, y_tr, x_te, y_te, size, tuple(sorted(keep)), x_val=x_va, y_val=y_va)


# The digit data sets a notebook can train on: "digits" (embedded, offline) or "mnist" (fetched
# once with data_scripts/fetch_mnist.py; the embedded digits stand in when it is absent).
TRAINING_DATASETS = ("digits", "mnist")


def training_dataset(dataset: str, size: int = 28, root=None, verbose: bool = True) -> str:
    """The data set that :func:`load_training_digits` loads for ``dataset``: "mnist" only when its
    files are on disk, else "digits" (with a one-line message when ``verbose``).

    Models cached for a data set use this, not the requested name, in their configuration, so a
    model trained on the stand-in digits is never taken for an MNIST model.
    """
    from . import public_data

    if dataset not in TRAINING_DATASETS:
        raise TutorialError(f"Unknown dataset {dataset!r}; choose one of {', '.join(map(repr, TRAINING_DATASETS))}.")
    if dataset == "mnist" and not public_data.mnist_available(root):
        if verbose:
            scale = f"upsampled to {size}×{size}" if size != 8 else "at 8×8"
            print(f"MNIST not found in {public_data.mnist_dir(root)}: using the embedded digits {scale}; "
                  f"fetch it with {public_data.FETCH_MNIST}")
        return "digits"
    return dataset


def load_training_digits(dataset: str, size: int, exclude: Iterable[int] = (), classes: Iterable[int] | None = None,
                         root=None, verbose: bool = True) -> DigitsData:
    """The digits a notebook trains and evaluates on: MNIST at ``size`` when ``dataset == "mnist"``
    and its files are present (see :func:`tutorial_lib.public_data.load_mnist`), else the embedded
    digits upsampled to ``size`` (:func:`load_digits`; a one-line message says so). ``classes`` and
    ``exclude`` filter the digit classes of both splits as in :func:`load_digits`.
    """
    if training_dataset(dataset, size, root, verbose) == "digits":
        return load_digits(size=size, classes=classes, exclude=exclude)
    from .public_data import load_mnist

    keep = set(range(10)) if classes is None else {int(c) for c in classes}
    bad = sorted(c for c in keep | {int(c) for c in exclude} if c not in range(10))
    if bad:
        raise TutorialError(f"Digit classes are 0-9; got {bad}.")
    keep -= {int(c) for c in exclude}
    if not keep:
        raise TutorialError("No digit class left after filtering.")
    mnist = load_mnist(root, size=size)
    if keep == set(range(10)):
        return mnist
    chosen = torch.tensor(sorted(keep))
    tr, te = torch.isin(mnist.y_train, chosen), torch.isin(mnist.y_test, chosen)
    return DigitsData(mnist.x_train[tr], mnist.y_train[tr], mnist.x_test[te], mnist.y_test[te], size,
                      tuple(sorted(keep)), source=mnist.source, x_val=mnist.x_val, y_val=mnist.y_val)


# --------------------------------------------------------------------------------------- photos
def _skimage(name: str):
    def load():
        import skimage.data as d

        return getattr(d, name)()
    return load


def _motorcycle():
    import skimage.data as d

    return d.stereo_motorcycle()[0]


def _sklearn(name: str):
    def load():
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)
    return load


# Photographs that ship inside scikit-image and scikit-learn (no download). Most are in colour;
# the grey ones (camera, coins, grass, gravel, moon) are returned with three equal channels.
PHOTO_SOURCES = {
    "astronaut": ("scikit-image", _skimage("astronaut")),
    "chelsea": ("scikit-image", _skimage("chelsea")),
    "rocket": ("scikit-image", _skimage("rocket")),
    "motorcycle": ("scikit-image", _motorcycle),
    "china": ("scikit-learn", _sklearn("china.jpg")),
    "coffee": ("scikit-image", _skimage("coffee")),
    "flower": ("scikit-learn", _sklearn("flower.jpg")),
    "hubble_deep_field": ("scikit-image", _skimage("hubble_deep_field")),
    "retina": ("scikit-image", _skimage("retina")),
    "moon": ("scikit-image, grey", _skimage("moon")),
    "immunohistochemistry": ("scikit-image", _skimage("immunohistochemistry")),
    "camera": ("scikit-image, grey", _skimage("camera")),
    "coins": ("scikit-image, grey", _skimage("coins")),
    "grass": ("scikit-image, grey", _skimage("grass")),
    "gravel": ("scikit-image, grey", _skimage("gravel")),
}

# The split is by source image: a test patch never shares a photograph with a training or a
# validation patch. Settings are chosen on "val"; "test" is for the final evaluation only.
# Notebooks that need two disjoint training sets (clean vs noisy, RAW vs target camera) use
# "train_a" and "train_b", which partition "train". "val_colour" is the colour part of "val".
# The ISP notebook judges colour, so it validates on two colour photographs held out of its
# training photos ("isp_val", taken from "train" and "val"; "isp_train" is the rest of "train").
PHOTO_SPLITS = {
    "train": ("astronaut", "chelsea", "rocket", "motorcycle", "china"),
    "train_a": ("astronaut", "rocket", "china"),
    "train_b": ("chelsea", "motorcycle"),
    "val": ("immunohistochemistry", "camera", "coins", "grass", "gravel"),
    "val_colour": ("immunohistochemistry",),
    "isp_train": ("astronaut", "chelsea", "rocket", "china"),
    "isp_val": ("motorcycle", "immunohistochemistry"),
    "test": ("coffee", "flower", "hubble_deep_field", "retina", "moon"),
}


def load_photos(names: Sequence[str] | str = "train", side: int | None = None) -> dict[str, torch.Tensor]:
    """Photographs as (3, H, W) float tensors in [0, 1], by name or by split name.

    ``side=None`` returns the full photographs (of different sizes). ``side=S`` returns a square
    S x S view of each: the photo is shrunk (antialiased) until its shorter side is S, then
    centre-cropped, so that photos of different sizes can be stacked into one batch and each view
    shows most of its scene. A photo smaller than S is an error (it is never enlarged).
    """
    if side is not None and (not isinstance(side, int) or side < 8):
        raise TutorialError(f"side must be an integer >= 8 (or None for full photos), got {side!r}.")
    if isinstance(names, str):
        if names in PHOTO_SPLITS:
            names = PHOTO_SPLITS[names]
        else:
            names = [names]
    unknown = [n for n in names if n not in PHOTO_SOURCES]
    if unknown:
        raise TutorialError(f"Unknown photo(s) {unknown}. Photos: {', '.join(PHOTO_SOURCES)}; "
                            f"splits: {', '.join(PHOTO_SPLITS)}.")
    out = {}
    for name in names:
        array = np.asarray(PHOTO_SOURCES[name][1](), dtype=np.float32) / 255.0
        if array.ndim == 2:  # a grey photograph: three equal channels
            array = np.repeat(array[:, :, None], 3, axis=2)
        image = torch.from_numpy(array[:, :, :3]).permute(2, 0, 1).contiguous()
        if side is not None:
            image = _square_view(image, side, name)
        out[name] = image
    return out


def _square_view(image: torch.Tensor, side: int, name: str) -> torch.Tensor:
    _, h, w = image.shape
    if min(h, w) < side:
        raise TutorialError(f"Photo {name!r} ({h}x{w}) is smaller than the requested side {side}.")
    if min(h, w) > side:
        scale = side / min(h, w)
        size = (max(side, round(h * scale)), max(side, round(w * scale)))
        image = F.interpolate(image[None], size=size, mode="bilinear", antialias=True,
                              align_corners=False)[0].clamp(0, 1)
        h, w = size
    top, left = (h - side) // 2, (w - side) // 2
    return image[:, top:top + side, left:left + side].contiguous()


@dataclass
class PatchData:
    """Patches (N, C, P, P) in [0, 1] with the source photo of each patch."""

    patches: torch.Tensor
    sources: list[str]
    patch_size: int
    split: str

    def __len__(self) -> int:
        return len(self.patches)

    def describe(self) -> str:
        names = sorted(set(self.sources))
        counts = ", ".join(f"{n}:{self.sources.count(n)}" for n in names)
        origin = ", ".join(f"{n} ({PHOTO_SOURCES[n][0]})" for n in names)
        return (f"Natural-photo patches, split {self.split!r}\n"
                f"  patches      {len(self)} of {self.patch_size}x{self.patch_size}, "
                f"{self.patches.shape[1]} channel(s), values in [0, 1]\n"
                f"  photos       {origin}\n"
                f"  per photo    {counts}")

    def __repr__(self) -> str:
        return f"PatchData({self.split}: {len(self)} x {tuple(self.patches.shape[1:])})"


def even_crop(image: torch.Tensor, multiple: int = 4) -> torch.Tensor:
    """Crop a (C, H, W) or (N, C, H, W) image so that its sides are multiples of ``multiple``
    (4 suits :class:`tutorial_lib.mid.Denoiser` and the RGGB mosaic)."""
    h, w = image.shape[-2:]
    return image[..., : h - h % multiple, : w - w % multiple]


def crop_box(height: int, width: int, size: int | tuple[int, int], gen: torch.Generator) -> tuple[int, int]:
    """The top-left corner ``(top, left)`` of a uniformly random ``size`` crop (an int for a square,
    or ``(h, w)``) inside a ``height x width`` image, drawn from ``gen`` (top first, then left).
    Every random crop of the library goes through this one draw."""
    ch, cw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if ch > height or cw > width:
        raise InputShapeError(f"A {ch}x{cw} crop does not fit in a {height}x{width} image.")
    top = int(torch.randint(0, height - ch + 1, (1,), generator=gen))
    left = int(torch.randint(0, width - cw + 1, (1,), generator=gen))
    return top, left


def random_crops(images: Sequence[torch.Tensor], size: int, per_image: int, seed: int,
                 partners: Sequence[torch.Tensor] | None = None):
    """``per_image`` random ``size`` crops from each (C, H, W) image, at the same places in ``partners``.

    Returns an (N, C, size, size) batch, or a pair of batches when ``partners`` is given; the draw
    depends only on ``seed``.
    """
    gen = torch.Generator().manual_seed(int(seed))
    a, b = [], []
    for i, im in enumerate(images):
        h, w = im.shape[-2:]
        if h < size or w < size:
            raise InputShapeError(f"image {i} ({h}x{w}) is smaller than the crop size {size}.")
        for _ in range(per_image):
            top, left = crop_box(h, w, size, gen)
            a.append(im[:, top:top + size, left:left + size])
            if partners is not None:
                b.append(partners[i][:, top:top + size, left:left + size])
    if partners is None:
        return torch.stack(a)
    return torch.stack(a), torch.stack(b)


def photo_patches(split: str | Sequence[str] = "train", patch_size: int = 48, per_image: int = 64,
                  seed: int = 0, gray: bool = False, scale: float = 1.0,
                  min_std: float = 0.0) -> PatchData:
    """Random square patches from the photographs of ``split`` (a split name or a list of photos).

    ``scale`` < 1 downsizes the photos first (so a small patch sees more of the scene); patches
    whose standard deviation is below ``min_std`` (flat sky) are redrawn up to a few times.
    The draw depends only on ``seed``.
    """
    if not isinstance(patch_size, int) or patch_size < 4:
        raise TutorialError(f"patch_size must be an integer >= 4, got {patch_size!r}.")
    photos = load_photos(split)
    gen = torch.Generator().manual_seed(int(seed))
    patches, sources = [], []
    for name, image in photos.items():
        if scale != 1.0:
            image = F.interpolate(image[None], scale_factor=scale, mode="bilinear",
                                  antialias=True, align_corners=False)[0].clamp(0, 1)
        if gray:
            image = rgb_to_gray(image[None])[0]
        _, h, w = image.shape
        if h < patch_size or w < patch_size:
            raise TutorialError(f"Photo {name!r} ({h}x{w}) is smaller than the patch size {patch_size}.")
        for _ in range(per_image):
            for _attempt in range(8):
                top, left = crop_box(h, w, patch_size, gen)
                patch = image[:, top:top + patch_size, left:left + patch_size]
                if float(patch.std()) >= min_std:
                    break
            patches.append(patch)
            sources.append(name)
    label = split if isinstance(split, str) else "+".join(split)
    return PatchData(torch.stack(patches).contiguous(), sources, patch_size, label)


def rgb_to_gray(images: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma of (N, 3, H, W) images, as (N, 1, H, W)."""
    check_images(images, channels=3, name="images")
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype, device=images.device)
    return (images * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)


def model_dtype(model) -> torch.dtype | None:
    """The floating dtype of a module's first floating parameter (``None`` without one)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def check_images(x: torch.Tensor, channels: int | Sequence[int] | None = None, name: str = "x",
                 ndim: int = 4, like=None) -> torch.Tensor:
    """Validate an image batch (N, C, H, W): clear :class:`InputShapeError` instead of a torch traceback.

    ``like`` (a module): ``x`` must have the dtype of its weights (a float64 or half batch for a
    float32 network fails deep inside a convolution otherwise). Devices are not checked here: the
    library's inference functions move their inputs to the model's device themselves.
    """
    if not isinstance(x, torch.Tensor):
        raise InputShapeError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    if x.ndim != ndim:
        want = "(N, C, H, W)" if ndim == 4 else f"{ndim} dimensions"
        raise InputShapeError(f"{name} must have shape {want}, got {tuple(x.shape)}.")
    if channels is not None:
        allowed = (channels,) if isinstance(channels, int) else tuple(channels)
        if x.shape[-3] not in allowed:
            raise InputShapeError(f"{name} must have {' or '.join(map(str, allowed))} channel(s), "
                                  f"got shape {tuple(x.shape)}.")
    if not torch.is_floating_point(x):
        raise InputShapeError(f"{name} must be a floating-point tensor in [0, 1], got dtype {x.dtype}.")
    if like is not None:
        want = model_dtype(like)
        if want is not None and x.dtype != want:
            raise InputShapeError(f"{name} has dtype {x.dtype}, but the model's weights are {want}: convert the "
                                  f"input first ({name}.to({want})) or the model ({type(like).__name__}.to({x.dtype})).")
    return x
