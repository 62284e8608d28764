"""All-in-one image restoration and forgetting one of its tasks.

* :class:`AllInOneRestorer` - a small residual encoder-decoder with PromptIR-style learned prompts:
  the network looks at its own input (global average of encoder features), predicts softmax weights
  over ``n_prompts`` learned prompt vectors, and the mixed prompt modulates the bottleneck
  (scale and shift). The task label is never given to it: it must recognise the degradation.
* :func:`train_restorer` - L1 training on degraded/clean pairs (Adam, cosine schedule).
* :func:`evaluate` - per-task PSNR / SSIM, next to the degraded input's.
* :func:`pgd_attack` - L-infinity PGD on the inputs that maximises the distance between the current
  model's output and a reference model's output.
* Forgetting losses: :func:`bounded_ascent_loss` (gradient ascent clipped at the input's own RMS error),
  :func:`identity_forget_loss` (output should equal the degraded input), :func:`plain_ascent_loss`,
  :func:`neggrad_plus_loss`, :func:`adversarial_regulariser`; :func:`forget` runs any of them.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .data import check_images
from .degradations import PairSet
from .errors import InputShapeError, TutorialError
from .models import TrainRecord, batched_apply, evaluating

# name -> (forgetting term, uses the adversarial regulariser)
FORGET_METHODS = {
    "bounded_ga": ("bounded", True),        # ours: bounded ascent + adversarial regulariser
    "ga_adv": ("ascent", True),             # closest to the paper: unbounded ascent + regulariser
    "bounded_ga_only": ("bounded", False),  # ablation: no regulariser
    "adv_only": (None, True),               # ablation: no forgetting term
    "identity": ("identity", True),         # identity target + regulariser
    "plain_ga": ("ascent", False),          # NegGrad: unbounded ascent on the forget set only
    "neggrad_plus": ("neggrad_plus", False),
    "finetune": ("retain", False),          # L1 on the retain set only
}
ADV_SOURCES = ("retain", "forget")


# ------------------------------------------------------------------------------------------ model
class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.c1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.c2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return x + self.c2(F.gelu(self.c1(x)))


class PromptBlock(nn.Module):
    """PromptIR-style prompt: softmax weights over learned prompts, predicted from the features."""

    def __init__(self, ch: int, n_prompts: int, prompt_dim: int):
        super().__init__()
        self.prompts = nn.Parameter(torch.randn(n_prompts, prompt_dim) * 0.5)
        self.select = nn.Linear(ch, n_prompts)
        self.film = nn.Linear(prompt_dim, 2 * ch)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def weights(self, feat: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.select(feat.mean(dim=(2, 3))), dim=1)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        prompt = self.weights(feat) @ self.prompts
        scale, shift = self.film(prompt).chunk(2, dim=1)
        return feat * (1 + scale[..., None, None]) + shift[..., None, None]


class AllInOneRestorer(nn.Module):
    """Residual U-Net-like restorer (two scales) with a degradation-aware prompt at the bottleneck.

    ``forward(x)`` returns ``x + residual(x)`` (not clamped, so gradients flow everywhere);
    :meth:`restore` clamps to [0, 1] and works in batches without gradients.
    """

    def __init__(self, width: int = 24, n_prompts: int = 4, prompt_dim: int = 32, depth: int = 2):
        super().__init__()
        if width < 4 or n_prompts < 1 or depth < 1:
            raise TutorialError(f"need width >= 4, n_prompts >= 1, depth >= 1; got {width}, {n_prompts}, {depth}.")
        w = width
        self.head = nn.Conv2d(3, w, 3, padding=1)
        self.enc1 = ResBlock(w)
        self.down1 = nn.Conv2d(w, 2 * w, 3, stride=2, padding=1)
        self.enc2 = ResBlock(2 * w)
        self.down2 = nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1)
        self.mid = nn.Sequential(*[ResBlock(4 * w) for _ in range(depth)])
        self.prompt = PromptBlock(4 * w, n_prompts, prompt_dim)
        self.mid2 = ResBlock(4 * w)
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = ResBlock(2 * w)
        self.up1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.dec1 = ResBlock(w)
        self.tail = nn.Conv2d(w, 3, 3, padding=1)

    def _check(self, x: torch.Tensor) -> None:
        check_images(x, channels=3, name="restorer input")
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise InputShapeError(f"The restorer needs height and width divisible by 4, got {tuple(x.shape[-2:])}.")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self.mid(self.down2(self.enc2(self.down1(self.enc1(self.head(x))))))

    def prompt_weights(self, x: torch.Tensor) -> torch.Tensor:
        """(N, n_prompts) prompt mixing weights the model chooses for each input."""
        return self.prompt.weights(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        e1 = self.enc1(self.head(x))
        e2 = self.enc2(self.down1(e1))
        m = self.mid2(self.prompt(self.mid(self.down2(e2))))
        d2 = self.dec2(self.up2(m) + e2)
        d1 = self.dec1(self.up1(d2) + e1)
        return x + self.tail(d1)

    @torch.no_grad()
    def restore(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """The restored batch (eval mode, no gradients, in batches on the model's device), on the CPU."""
        check_images(x, channels=3, name="x", like=self)
        return batched_apply(self, x, batch_size, fn=lambda xb: self(xb).clamp(0, 1))


# --------------------------------------------------------------------------------------- training
def batch_indices(n: int, batch_size: int, gen: torch.Generator):
    """Endless index batches: a fresh permutation of ``range(n)`` per epoch (from ``gen``), cut into
    ``batch_size`` pieces; the incomplete last piece of an epoch is dropped."""
    if n < 1 or not 1 <= batch_size <= n:
        raise TutorialError(f"need 1 <= batch_size <= n, got batch_size={batch_size}, n={n}.")
    while True:
        order = torch.randperm(n, generator=gen)
        for i in range(0, n - batch_size + 1, batch_size):
            yield order[i:i + batch_size]


def _check_pairs(pairs: PairSet, name: str = "pairs") -> None:
    if not isinstance(pairs, PairSet):
        raise TutorialError(f"{name} must be a PairSet (degradations.make_pairs), got {type(pairs).__name__}.")
    if len(pairs) == 0:
        raise TutorialError(f"{name} is empty.")


def train_restorer(model: nn.Module, pairs: PairSet, *, steps: int = 1000, batch_size: int = 16,
                   lr: float = 2e-3, seed: int = 0, device: torch.device | str = "cpu",
                   desc: str = "training", log_every: int = 50) -> TrainRecord:
    """L1 training on ``pairs`` with Adam and a cosine learning-rate schedule.

    Returns a :class:`~tutorial_lib.models.TrainRecord` (the mean L1 of every ``log_every`` steps)."""
    from .runtime import progress

    _check_pairs(pairs)
    if steps < 1 or batch_size < 1:
        raise TutorialError(f"steps and batch_size must be >= 1, got {steps}, {batch_size}.")
    batch_size = min(batch_size, len(pairs))
    gen = torch.Generator().manual_seed(int(seed))
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * 0.05)
    batches = batch_indices(len(pairs), batch_size, gen)
    history: dict[str, list[float]] = {"step": [], "loss": []}
    running = 0.0
    started = TrainRecord.clock()
    for step in progress(range(steps), desc=desc):
        idx = next(batches)
        x, y = pairs.degraded[idx].to(device), pairs.clean[idx].to(device)
        loss = F.l1_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running += loss.item()
        if (step + 1) % log_every == 0:
            history["step"].append(step)
            history["loss"].append(running / log_every)
            running = 0.0
    model.eval()
    return TrainRecord.done(history, started)


@torch.no_grad()
def evaluate(model: nn.Module, pairs: PairSet, outputs: torch.Tensor | None = None, ssim: bool = True) -> dict:
    """Per-task metrics: ``{task: {"psnr", "ssim", "input_psnr", "input_ssim", "gain", "psnr_to_input"}}``
    (dB). ``ssim=False`` skips the two SSIM entries (a cheaper check inside training loops)."""
    from . import metrics

    _check_pairs(pairs)
    out = model.restore(pairs.degraded) if outputs is None else outputs
    result = {}
    for i, task in enumerate(pairs.tasks):
        keep = pairs.task == i
        if not keep.any():
            continue
        y, x, o = pairs.clean[keep], pairs.degraded[keep], out[keep]
        p, pin = float(metrics.psnr(o, y)), float(metrics.psnr(x, y))
        result[task] = {"psnr": p, "input_psnr": pin, "gain": p - pin, "psnr_to_input": float(metrics.psnr(o, x))}
        if ssim:
            result[task].update(ssim=float(metrics.ssim(o, y)), input_ssim=float(metrics.ssim(x, y)))
    return result


# ------------------------------------------------------------------------------------------- PGD
def pgd_step(x: torch.Tensor, delta: torch.Tensor, grad: torch.Tensor, eps: float, alpha: float) -> torch.Tensor:
    """One L-infinity PGD step: move ``delta`` by ``alpha`` along the gradient's sign, project it on the
    ball ``|delta| <= eps``, then keep the image ``x + delta`` in [0, 1]."""
    delta = (delta + alpha * grad.sign()).clamp(-eps, eps)
    return (x + delta).clamp(0, 1) - x


def pgd_attack(model: nn.Module, reference: nn.Module, x: torch.Tensor, *, eps: float = 4 / 255,
               alpha: float | None = None, steps: int = 2, gen: torch.Generator | None = None,
               history: list | None = None, step_fn: Callable | None = None) -> torch.Tensor:
    """L-infinity PGD: find ``x + delta`` (``|delta| <= eps``, image kept in [0, 1]) that maximises
    ``L1(model(x + delta), reference(x + delta))``, starting from a uniform random ``delta``.

    ``alpha`` (step size) defaults to ``2.5 * eps / steps``. If ``history`` is a list, each step
    appends ``{"step", "loss", "delta_linf"}``. ``step_fn(x, delta, grad, eps, alpha)`` replaces
    :func:`pgd_step` (e.g. by a reader's own). Returns the perturbed inputs (detached).
    """
    check_images(x, channels=3, name="x")
    if eps < 0 or steps < 0:
        raise TutorialError(f"eps and steps must be >= 0, got {eps}, {steps}.")
    alpha = 2.5 * eps / max(steps, 1) if alpha is None else alpha
    if gen is None:
        delta = (torch.rand_like(x) * 2 - 1) * eps
    else:
        delta = ((torch.rand(x.shape, generator=gen) * 2 - 1) * eps).to(x.device)
    delta = ((x + delta).clamp(0, 1) - x).detach()
    with evaluating(model):
        for step in range(steps):
            delta.requires_grad_(True)
            xa = x + delta
            # the gradient flows through both networks: we want the input direction that
            # separates them, not the one that changes the model's output (which the reference shares)
            loss = F.l1_loss(model(xa), reference(xa))
            grad, = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                delta = (step_fn or pgd_step)(x, delta, grad, eps, alpha)
            if history is not None:
                history.append({"step": step + 1, "loss": loss.item(), "delta_linf": float(delta.abs().max())})
    return (x + delta).detach()


# ------------------------------------------------------------------------------ forgetting losses
def per_image_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().flatten(1).mean(1)


def per_image_rmse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Root-mean-square difference per image (the error PSNR measures, in intensity units)."""
    return (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-12).sqrt()


def plain_ascent_loss(model: nn.Module, x_f: torch.Tensor, y_f: torch.Tensor) -> torch.Tensor:
    """Unbounded gradient ascent: minimise ``-L1(model(x_f), y_f)`` (diverges)."""
    return -F.l1_loss(model(x_f), y_f)


def bounded_ascent_loss(model: nn.Module, x_f: torch.Tensor, y_f: torch.Tensor,
                        margin: float = 1.0) -> torch.Tensor:
    """Gradient ascent clipped at the input's own error, per image:
    ``mean_i relu(margin * RMSE(x_i, y_i) - RMSE(model(x_i), y_i))``; zero gradient once the output is
    as far from the clean image as the degraded input is. The error is the root-mean-square one, the
    quantity PSNR measures, so "as far" means "no better PSNR than the input" (an L1 bound stops
    earlier on sparse degradations such as rain, whose L1 error is small for its PSNR)."""
    bound = margin * per_image_rmse(x_f, y_f)
    return F.relu(bound - per_image_rmse(model(x_f), y_f)).mean()


def identity_forget_loss(model: nn.Module, x_f: torch.Tensor) -> torch.Tensor:
    """``L1(model(x_f), x_f)``: on the forgotten degradation the model should return its input."""
    return F.l1_loss(model(x_f), x_f)


def neggrad_plus_terms(model: nn.Module, x_r, y_r, x_f, y_f,
                       beta: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """NegGrad+'s two terms: ``(beta * L1(retain), -(1 - beta) * L1(forget))``."""
    return beta * F.l1_loss(model(x_r), y_r), -(1 - beta) * F.l1_loss(model(x_f), y_f)


def neggrad_plus_loss(model: nn.Module, x_r, y_r, x_f, y_f, beta: float = 0.95) -> torch.Tensor:
    """NegGrad+: ``beta * L1(retain) - (1 - beta) * L1(forget)``."""
    retain, forget_term = neggrad_plus_terms(model, x_r, y_r, x_f, y_f, beta)
    return retain + forget_term


def adversarial_regulariser(model: nn.Module, reference: nn.Module, x_adv: torch.Tensor) -> torch.Tensor:
    """``L1(model(x_adv), reference(x_adv))``: keep the original behaviour near the retained inputs."""
    with torch.no_grad():
        target = reference(x_adv)
    return F.l1_loss(model(x_adv), target)


def forget(model: nn.Module, forget_pairs: PairSet, retain_pairs: PairSet, method: str, *,
           steps: int = 60, batch_size: int = 16, lr: float = 5e-4, seed: int = 0,
           adv_weight: float = 1.0, eps: float = 4 / 255, pgd_steps: int = 1, margin: float = 1.0,
           beta: float = 0.95, device: torch.device | str = "cpu",
           monitor: Callable[[int, nn.Module], None] | None = None, monitor_every: int = 0,
           desc: str | None = None, bounded_loss_fn: Callable | None = None,
           pgd_step_fn: Callable | None = None, adv_source: str = "retain") -> dict:
    """Make ``model`` (in place) forget the degradation of ``forget_pairs``.

    ``method`` (see ``FORGET_METHODS``): ``"bounded_ga"`` (bounded ascent + adversarial
    regulariser, ours), ``"ga_adv"`` (unbounded ascent + regulariser, closest to the paper),
    ``"bounded_ga_only"`` and ``"adv_only"`` (ablations: one of the two terms), ``"identity"``
    (identity target + regulariser), ``"plain_ga"`` (NegGrad: unbounded ascent on the forget set
    only), ``"neggrad_plus"``, ``"finetune"`` (L1 on the retain set only). A frozen copy of the model
    at entry is the reference of the adversarial regulariser. ``adv_source``: the adversarial
    examples start from retained inputs (``"retain"``, ours) or from forget inputs (``"forget"``,
    as L2UL does, which needs no retained data).

    Returns ``{"seconds", "losses", "terms", "elapsed"}``: total timed seconds, the loss of every
    applied step, its terms (``{"forget", "adv", "retain"}``, each ``None`` when unused) and the
    timed seconds elapsed after each step. ``monitor(step, model)`` is called every
    ``monitor_every`` steps (and at step 0); its time is not counted.
    ``bounded_loss_fn(model, x_f, y_f, margin)`` and ``pgd_step_fn(x, delta, grad, eps, alpha)`` replace :func:`bounded_ascent_loss` and
    :func:`pgd_step` (e.g. by a reader's own). A non-finite loss stops the run *before* its step is
    applied, with a warning.
    """
    from .runtime import progress

    if method not in FORGET_METHODS:
        raise TutorialError(f"Unknown forgetting method {method!r}; choose one of {', '.join(FORGET_METHODS)}.")
    if adv_source not in ADV_SOURCES:
        raise TutorialError(f"adv_source must be one of {ADV_SOURCES}, got {adv_source!r}.")
    if steps < 1 or batch_size < 1 or not lr > 0:
        raise TutorialError(f"steps and batch_size must be >= 1 and lr > 0, got {steps}, {batch_size}, {lr}.")
    _check_pairs(forget_pairs, "forget_pairs")
    _check_pairs(retain_pairs, "retain_pairs")
    term_kind, use_adv = FORGET_METHODS[method]
    gen = torch.Generator().manual_seed(int(seed))
    model.to(device)
    reference = copy.deepcopy(model).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    bf = batch_indices(len(forget_pairs), min(batch_size, len(forget_pairs)), gen)
    br = batch_indices(len(retain_pairs), min(batch_size, len(retain_pairs)), gen)
    losses, records, elapsed, seconds = [], [], [], 0.0
    if monitor is not None and monitor_every:
        monitor(0, model)
    for step in progress(range(steps), desc=desc or f"forget ({method})"):
        start = time.perf_counter()
        model.train()
        i_f, i_r = next(bf), next(br)
        x_f, y_f = forget_pairs.degraded[i_f].to(device), forget_pairs.clean[i_f].to(device)
        x_r, y_r = retain_pairs.degraded[i_r].to(device), retain_pairs.clean[i_r].to(device)
        terms = {"forget": None, "adv": None, "retain": None}
        if term_kind == "bounded":
            terms["forget"] = (bounded_loss_fn or bounded_ascent_loss)(model, x_f, y_f, margin)
        elif term_kind == "ascent":
            terms["forget"] = plain_ascent_loss(model, x_f, y_f)
        elif term_kind == "identity":
            terms["forget"] = identity_forget_loss(model, x_f)
        elif term_kind == "retain":
            terms["retain"] = F.l1_loss(model(x_r), y_r)
        elif term_kind == "neggrad_plus":
            terms["retain"], terms["forget"] = neggrad_plus_terms(model, x_r, y_r, x_f, y_f, beta)
        if use_adv:
            x_src = x_r if adv_source == "retain" else x_f
            x_adv = pgd_attack(model, reference, x_src, eps=eps, steps=pgd_steps, gen=gen, step_fn=pgd_step_fn)
            terms["adv"] = adv_weight * adversarial_regulariser(model, reference, x_adv)
        loss = sum(v for v in terms.values() if v is not None)
        if not math.isfinite(loss.item()):
            warnings.warn(f"forget ({method}): the loss is {loss.item()} at step {step + 1}; stopping before "
                          f"this step is applied (the model keeps its weights of step {step}).", stacklevel=2)
            losses.append(loss.item())  # recorded, never applied
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seconds += time.perf_counter() - start
        losses.append(loss.item())
        records.append({k: (None if v is None else v.item()) for k, v in terms.items()})
        elapsed.append(seconds)
        if monitor is not None and monitor_every and (step + 1) % monitor_every == 0:
            monitor(step + 1, model)
    model.eval()
    return {"seconds": seconds, "losses": losses, "terms": records, "elapsed": elapsed}


# ------------------------------------------------------------------------------- membership test
def per_image_loss(model: nn.Module, pairs: PairSet) -> torch.Tensor:
    """Per-image L1 error of the model's restored output (the attacker's only feature)."""
    _check_pairs(pairs)
    return per_image_l1(model.restore(pairs.degraded), pairs.clean)


def membership_accuracy(model: nn.Module, members: PairSet, non_members: PairSet, seed: int = 0) -> float:
    """Held-out accuracy of a logistic-regression attacker that tells ``members`` (training pairs) from
    ``non_members`` by the per-image loss: ``n = min(len(members), len(non_members))`` of each, in a
    seeded random order; the attacker is fitted on the first half (standardised by its mean and std)
    and scored on the second.
    About 0.5: the model behaves alike on both; near 1: it still carries a trace of its training set."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    n = min(len(members), len(non_members))
    if n < 2:
        raise TutorialError(f"need at least 2 members and 2 non-members, got {len(members)} and {len(non_members)}.")
    a = rng.permutation(per_image_loss(model, members).numpy())[:n]
    b = rng.permutation(per_image_loss(model, non_members).numpy())[:n]
    x = np.concatenate([a, b])[:, None]
    y = np.concatenate([np.ones(n), np.zeros(n)])
    order = rng.permutation(2 * n)
    x, y = x[order], y[order]
    x = (x - x[:n].mean()) / (x[:n].std() + 1e-12)   # losses are ~0.01: standardise for the attacker
    clf = LogisticRegression().fit(x[:n], y[:n])
    return float(clf.score(x[n:], y[n:]))
