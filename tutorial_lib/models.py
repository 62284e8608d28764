"""Small networks shared by several notebooks, and the two helpers every module uses to run a
model for evaluation: :func:`evaluating` (eval mode, restored afterwards even on an error) and
:func:`batched_apply` (no gradients, in batches, on the model's device)."""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import nn

from .data import check_images
from .errors import InputShapeError, TutorialError


@dataclass
class TrainRecord:
    """What every training function of the library returns (the loops themselves stay in their
    modules, written out): ``history`` maps a logged quantity to its values (``"step"`` holds the
    steps, or epochs, at which they were logged), ``seconds`` is the wall time and ``cpu_seconds``
    the CPU time of this process (robust to other load on the machine). :meth:`as_dict` is the
    JSON form the checkpoint cache stores with the weights."""

    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    @classmethod
    def clock(cls) -> tuple[float, float]:
        """The start of a timing: (wall clock, CPU clock); pass it to :meth:`done`."""
        return time.perf_counter(), time.process_time()

    @classmethod
    def done(cls, history: dict[str, list[float]], started: tuple[float, float]) -> "TrainRecord":
        return cls(history, time.perf_counter() - started[0], time.process_time() - started[1])

    def as_dict(self) -> dict:
        return {"history": self.history, "seconds": self.seconds, "cpu_seconds": self.cpu_seconds}


@contextmanager
def evaluating(*models: nn.Module) -> Iterator[None]:
    """Put ``models`` in eval mode for the ``with`` block, then give each back the mode it had
    (also when the block raises)."""
    modes = [m.training for m in models]
    try:
        for m in models:
            m.eval()
        yield
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (the CPU for a model without parameters)."""
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


@torch.no_grad()
def batched_apply(model: nn.Module, x: torch.Tensor, batch_size: int = 256,
                  fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  out_device: torch.device | str | None = "cpu") -> torch.Tensor:
    """``fn(chunk)`` (default: ``model(chunk)``) over ``x`` in chunks of ``batch_size``, with
    ``model`` in eval mode and no gradients; each chunk moves to the model's device and each result
    to ``out_device`` (``None``: left where it is); the results are concatenated along dim 0."""
    if batch_size < 1:
        raise TutorialError(f"batch_size must be >= 1, got {batch_size!r}.")
    fn = model if fn is None else fn
    device = model_device(model)
    with evaluating(model):
        outs = [fn(x[i:i + batch_size].to(device)) for i in range(0, len(x), batch_size)]
    if out_device is not None:
        outs = [o.to(out_device) for o in outs]
    return torch.cat(outs)


def ema_model(model: nn.Module, decay: float, steps: int | None = None) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of ``model``'s weights (``torch.optim.swa_utils.AveragedModel``
    with ``get_ema_multi_avg_fn``), started at its current weights: after each optimiser step call
    ``avg.update_parameters(model)``, which does ``avg <- decay * avg + (1 - decay) * weights``;
    ``avg.module`` is the averaged network.

    The average forgets its start over about 1 / (1 - decay) updates. With ``steps`` (the updates
    that will follow) below that horizon, a warning says how much of the starting weights the final
    average still holds (decay ** steps)."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    if not 0.0 <= decay < 1.0:
        raise TutorialError(f"The EMA decay must be in [0, 1), got {decay!r}.")
    avg = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
    avg.update_parameters(model)  # the first update copies: the average starts at the current weights
    if steps is not None and steps < 1.0 / (1.0 - decay):
        warnings.warn(f"An EMA with decay {decay} averages over about {1 / (1 - decay):.0f} steps, but only {steps} "
                      f"follow: the final average still holds {decay ** steps:.0%} of the starting weights.",
                      stacklevel=2)
    return avg


def fused_adam(device: torch.device | str) -> bool | None:
    """``fused`` for ``torch.optim.Adam``: True where a fused kernel exists (CPU, CUDA), else None (the
    default). One kernel updates every parameter: the same update, rounded differently, faster for
    the many small tensors of these networks."""
    return True if torch.device(device).type in ("cpu", "cuda") else None


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


class DigitClassifier(nn.Module):
    """A small CNN for (N, 1, S, S) digit images in [0, 1]; ``features`` gives the penultimate layer.

    It labels generated digits and provides the feature space of the classifier-feature Frechet
    distance.
    """

    def __init__(self, size: int = 8, num_classes: int = 10, width: int = 32, feature_dim: int = 64):
        super().__init__()
        self.size = size
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
        )
        pooled = width * 16
        self.head_features = nn.Sequential(nn.Linear(pooled, feature_dim), nn.ReLU())
        self.out = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, channels=1, name="digit images")
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            raise InputShapeError(f"This classifier expects {self.size}x{self.size} images, "
                                  f"got {tuple(x.shape[-2:])}.")
        return self.head_features(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))

    def predict(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Predicted labels (eval mode, no gradients, in batches), on the CPU."""
        return batched_apply(self, x, batch_size, fn=lambda xb: self(xb).argmax(1))


def train_classifier(model: DigitClassifier, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 20,
                     batch_size: int = 64, lr: float = 2e-3, seed: int = 0, augment: bool = False,
                     device: torch.device | str = "cpu", desc: str = "classifier") -> TrainRecord:
    """Train ``model`` with Adam and cross-entropy (``augment``: random one-pixel shifts of each batch).

    Returns a :class:`TrainRecord` whose history holds the last batch's loss of every epoch. Every
    random draw uses a generator seeded with ``seed``.
    """
    from .runtime import progress

    check_images(x, channels=1, name="x")
    if len(x) != len(y):
        raise InputShapeError(f"x has {len(x)} images but y has {len(y)} labels.")
    gen = torch.Generator().manual_seed(seed)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    last = float("nan")
    history: dict[str, list[float]] = {"step": [], "loss": []}
    started = TrainRecord.clock()
    bar = progress(range(epochs), desc=desc)
    for epoch in bar:
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            xb, yb = x[idx], y[idx]
            if augment:
                shifts = torch.randint(-1, 2, (2,), generator=gen).tolist()
                xb = torch.roll(xb, shifts=shifts, dims=(2, 3))
            loss = loss_fn(model(xb.to(device)), yb.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            last = loss.item()
        bar.set_postfix(loss=f"{last:.3f}")
        history["step"].append(epoch)
        history["loss"].append(last)
    model.eval()
    return TrainRecord.done(history, started)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    pred = model.predict(x) if hasattr(model, "predict") else model(x).argmax(1)
    return float((pred.cpu() == y.cpu()).float().mean())


def classifier_config(size: int, epochs: int, seed: int, dataset: str = "digits") -> dict:
    """The digit classifier's cache config (on the embedded digits the same as notebook 00's, so
    the file is shared). ``dataset`` is the data set it is trained on ("digits" or "mnist")."""
    return {"model": "DigitClassifier", "dataset": str(dataset), "size": int(size), "epochs": int(epochs),
            "seed": int(seed)}


def pretrained_classifier(size: int, epochs: int, seed: int, device: torch.device | str = "cpu", verbose: bool = True,
                          dataset: str = "digits"):
    """The digit classifier trained on ``dataset`` ("digits" or "mnist", which falls back to the
    digits as in :func:`tutorial_lib.gan.pretrained_digits_gan`), cached under the name 'digit_classifier'; returns
    (model, CacheResult)."""
    from . import checkpoints
    from .data import load_training_digits, training_dataset

    with torch.random.fork_rng(devices=[]):  # the initial weights depend on `seed` only, not on what ran before
        torch.manual_seed(seed)
        model = DigitClassifier(size=size)
    config = classifier_config(size, epochs, seed, training_dataset(dataset, size, verbose=verbose))

    def train():
        digits = load_training_digits(config["dataset"], size)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one thread whoever trains it: the weights do not depend on the caller's thread count
        try:
            return train_classifier(model, digits.x_train, digits.y_train, epochs=epochs, seed=seed, device=device)
        finally:
            torch.set_num_threads(threads)

    # code=: this function builds the initial weights, so a change to it makes a new cache entry
    res = checkpoints.load_or_train("digit_classifier", config, model, train, code=(pretrained_classifier,),
                                    verbose=verbose)
    model.to(device).eval()
    return model, res
