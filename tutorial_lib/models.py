"""Small networks shared by several notebooks."""

from __future__ import annotations

import torch
from torch import nn

from .data import check_images
from .errors import InputShapeError


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

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        was = self.training
        self.eval()
        device = next(self.parameters()).device
        labels = torch.cat([self(x[i:i + batch_size].to(device)).argmax(1).cpu()
                            for i in range(0, len(x), batch_size)])
        self.train(was)
        return labels


def train_classifier(model: DigitClassifier, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 20,
                     batch_size: int = 64, lr: float = 2e-3, seed: int = 0, augment: bool = False,
                     device: torch.device | str = "cpu", desc: str = "classifier") -> dict:
    """Train ``model`` with Adam and cross-entropy (``augment``: random one-pixel shifts of each batch).

    Returns ``{"final_loss": ...}``. Every random draw uses a generator seeded with ``seed``.
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
    bar = progress(range(epochs), desc=desc)
    for _ in bar:
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
    model.eval()
    return {"final_loss": last}


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    pred = model.predict(x) if hasattr(model, "predict") else model(x).argmax(1)
    return float((pred.cpu() == y.cpu()).float().mean())
