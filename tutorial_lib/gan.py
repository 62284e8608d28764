"""Small GANs and parameter-space arithmetic (notebooks 01 and 02, after Tiwary et al., TMLR 2025).

* :class:`Generator` / :class:`Discriminator` - MLPs for 2-D points (the 8-Gaussians toy) and for
  digit images (N, 1, S, S) in [0, 1].
* :func:`train_gan` - one training loop (non-saturating GAN loss, Adam with beta1 = 0.5; one step
  is :func:`gan_step`) used for
  pre-training, negative adaptation (with an EWC penalty), unlearning (with a repulsion penalty),
  plain fine-tuning and retraining from scratch.
* :func:`fisher_diagonal`, :func:`ewc_penalty` - elastic weight consolidation as in the paper:
  the diagonal Fisher of the discriminator's logit D(G(z)) with respect to the generator's
  parameters, computed once.
* State-dict arithmetic: :func:`state_difference`, :func:`average_states`, :func:`apply_direction`
  (theta_G + gamma * Delta, optionally on some blocks only), :func:`direction_norms`, and the
  control :func:`random_direction` (noise with Delta's per-block norms, :func:`match_block_norms`).
* The toy: :func:`eight_gaussians`, :func:`mode_stats`.
* Digits: :func:`digits_gan_config`, :func:`pretrained_digits_gan` (cached through
  :func:`tutorial_lib.checkpoints.load_or_train`, so notebook 02 loads what notebook 01 trained;
  trained on the embedded digits, or on MNIST at ``gpu`` when it has been fetched; the classifier
  that labels its samples is :func:`tutorial_lib.models.pretrained_classifier`),
  :func:`sample_images`, :func:`class_share`.

The unlearning half (repulsion losses, PUL, stage 1 and stage 2) is in :mod:`tutorial_lib.unlearning`.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputShapeError, TutorialError
from .models import TrainRecord, batched_apply, ema_model

State = dict  # name -> tensor


# ------------------------------------------------------------------------------------- networks
def _mlp(sizes: Sequence[int], act: Callable[[], nn.Module]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(a, b), act()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return layers


class Generator(nn.Module):
    """An MLP generator z -> x. ``out_shape`` (2,) for points, (1, S, S) for images (sigmoid output).

    Its blocks are named ``net.0``, ``net.2``, ... (one per linear layer), which
    :func:`direction_norms` and :func:`apply_direction` use to address layers.
    """

    def __init__(self, z_dim: int = 32, out_shape: Sequence[int] = (1, 8, 8),
                 hidden: Sequence[int] = (128, 256), image: bool | None = None):
        super().__init__()
        self.z_dim = int(z_dim)
        self.out_shape = tuple(int(s) for s in out_shape)
        self.image = (len(self.out_shape) == 3) if image is None else bool(image)
        out = math.prod(self.out_shape)
        self.net = nn.Sequential(*_mlp([self.z_dim, *hidden, out], nn.ReLU))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise InputShapeError(f"The generator expects latents of shape (N, {self.z_dim}), got {tuple(z.shape)}.")
        x = self.net(z)
        if self.image:
            x = torch.sigmoid(x)
        return x.view(len(z), *self.out_shape)


class Discriminator(nn.Module):
    """An MLP discriminator x -> real/fake logit (N,)."""

    def __init__(self, in_shape: Sequence[int] = (1, 8, 8), hidden: Sequence[int] = (256, 128)):
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.net = nn.Sequential(*_mlp([math.prod(self.in_shape), *hidden, 1], lambda: nn.LeakyReLU(0.2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.in_shape:
            raise InputShapeError(f"The discriminator expects inputs of shape (N, {', '.join(map(str, self.in_shape))}), "
                                  f"got {tuple(x.shape)}.")
        return self.net(x.flatten(1)).squeeze(1)


def latents(n: int, z_dim: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` standard-normal latents drawn with their own seeded generator (the same for every call)."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn(n, z_dim, generator=gen).to(device)


@torch.no_grad()
def sample(G: Generator, z: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """G(z) in eval mode, in batches, returned on the CPU (``z`` moves to G's device)."""
    if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != G.z_dim:
        raise InputShapeError(f"z must be a (N, {G.z_dim}) tensor of latents, got "
                              f"{tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}.")
    if z.dtype != next(G.parameters()).dtype:
        raise InputShapeError(f"z has dtype {z.dtype}, but the generator's weights are "
                              f"{next(G.parameters()).dtype}: convert it first (z.float()).")
    return batched_apply(G, z, batch_size)


sample_images = sample


# ------------------------------------------------------------------------------------- training
def d_loss_fn(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator loss of the non-saturating GAN: softplus(-D(x)) + softplus(D(G(z)))."""
    return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()


def g_loss_fn(d_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: softplus(-D(G(z)))."""
    return F.softplus(-d_fake).mean()


def gan_step(G: Generator, D: Discriminator, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
             real: torch.Tensor, z: torch.Tensor, *, r1: float = 0.0,
             g_penalty: Callable[[Generator], torch.Tensor] | None = None,
             adversarial: bool = True) -> dict[str, torch.Tensor]:
    """One GAN training step: (1) the critic D on ``real`` against ``G(z)`` (non-saturating loss, plus
    the R1 penalty (r1 / 2) E|grad_x D(x)|^2 on the real batch when ``r1`` > 0); (2) the generator on
    its non-saturating loss against the updated critic, plus ``g_penalty(G)``. ``adversarial=False``
    drops the generator's adversarial term (the critic still trains; an ablation). Returns the
    losses {"d_loss", "g_loss", "penalty"} (tensors, for logging)."""
    fake = G(z)
    if r1 > 0:
        real = real.detach().requires_grad_(True)
    d_real = D(real)
    d_loss = d_loss_fn(d_real, D(fake.detach()))
    if r1 > 0:
        (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
        d_loss = d_loss + 0.5 * r1 * grad.pow(2).flatten(1).sum(1).mean()
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    g_loss = g_loss_fn(D(fake))
    pen = g_penalty(G) if g_penalty is not None else torch.zeros((), device=z.device)
    opt_g.zero_grad(set_to_none=True)
    ((g_loss if adversarial else 0.0) + pen).backward()
    opt_g.step()
    return {"d_loss": d_loss, "g_loss": g_loss, "penalty": pen}


OPTIMIZERS = ("adam", "sgd")


def train_gan(G: Generator, D: Discriminator, data: torch.Tensor, *, steps: int, batch_size: int = 64,
              lr: float = 1e-3, betas: tuple[float, float] = (0.5, 0.999), seed: int = 0,
              device: torch.device | str = "cpu", g_penalty: Callable[[Generator], torch.Tensor] | None = None,
              desc: str | None = "GAN", log_every: int = 50, ema: float | None = None, r1: float = 0.0,
              monitor: Callable[[int, Generator], Mapping[str, float]] | None = None,
              step_fn: Callable | None = None, adversarial: bool = True, optimizer: str = "adam") -> TrainRecord:
    """Train ``G`` and ``D`` in place on ``data`` (a tensor of real samples) for ``steps`` steps.

    Each step draws a batch of real samples and of latents from the generator seeded by ``seed`` and
    runs :func:`gan_step` (or ``step_fn(G, D, opt_g, opt_d, real, z)``, which must return the same
    dict of losses). ``g_penalty(G)`` (EWC, repulsion, ...) is added to the generator's loss. With
    ``ema`` (e.g. 0.999) an exponential moving average of the generator's weights is kept and loaded
    into ``G`` at the end (a standard way to get smoother, better samples from a GAN). ``r1`` > 0
    adds the R1 penalty (r1 / 2) E|grad_x D(x)|^2 on real samples to the discriminator (stabilises
    training, as in StyleGAN2). ``optimizer`` is ``"adam"`` (with ``betas``) or ``"sgd"`` (plain
    gradient steps: with lr 1 a weight's change is minus its gradient, which is how a single step is
    checked). ``monitor(step, G)`` is called at every logged step (without gradients) and returns
    named numbers (a distance, a class share...) that join the history; it sees the live weights,
    not their average, and it draws no random numbers from the training loop. Returns a
    :class:`~tutorial_lib.models.TrainRecord`: the losses every ``log_every`` steps, wall and CPU time.
    """
    from .runtime import progress

    if not isinstance(steps, int) or steps < 0:
        raise TutorialError(f"steps must be a non-negative integer, got {steps!r}.")
    if len(data) == 0:
        raise TutorialError("train_gan needs at least one real sample.")
    if tuple(data.shape[1:]) != D.in_shape:
        raise InputShapeError(f"The data has samples of shape {tuple(data.shape[1:])}, the discriminator "
                              f"expects {D.in_shape}.")
    if optimizer not in OPTIMIZERS:
        raise TutorialError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}.")
    gen = torch.Generator().manual_seed(int(seed))
    G.to(device).train()
    D.to(device).train()
    data = data.to(device)
    if optimizer == "adam":
        opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=betas)
        opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=betas)
    else:
        opt_g = torch.optim.SGD(G.parameters(), lr=lr)
        opt_d = torch.optim.SGD(D.parameters(), lr=lr)
    if ema is not None and not 0.0 <= ema < 1.0:
        raise TutorialError(f"ema must be in [0, 1), got {ema!r}.")
    avg = ema_model(G, ema, steps) if ema else None
    history: dict[str, list[float]] = {"step": [], "d_loss": [], "g_loss": [], "penalty": []}
    started = TrainRecord.clock()
    bar = progress(range(steps), desc=desc) if desc else range(steps)
    for step in bar:
        idx = torch.randint(0, len(data), (batch_size,), generator=gen).to(device)
        real = data[idx]
        z = torch.randn(batch_size, G.z_dim, generator=gen).to(device)
        if step_fn is None:
            losses = gan_step(G, D, opt_g, opt_d, real, z, r1=r1, g_penalty=g_penalty, adversarial=adversarial)
        else:
            losses = step_fn(G, D, opt_g, opt_d, real, z)
        if avg is not None:
            avg.update_parameters(G)  # avg <- ema * avg + (1 - ema) * theta
        if step % log_every == 0 or step == steps - 1:
            history["step"].append(step)
            for name in ("d_loss", "g_loss", "penalty"):
                history[name].append(float(torch.as_tensor(losses[name]).detach()))
            if monitor is not None:
                with torch.no_grad():
                    for name, value in monitor(step, G).items():
                        history.setdefault(name, []).append(float(value))
    if avg is not None:
        G.load_state_dict(avg.module.state_dict())
    G.eval()
    D.eval()
    return TrainRecord.done(history, started)


# ------------------------------------------------------------------------------------------ EWC
def fisher_diagonal(G: Generator, D: Discriminator, n: int = 32, seed: int = 0) -> State:
    """Diagonal Fisher information of the generator: mean over ``n`` latents of the squared gradient
    of the discriminator's logit D(G(z)) with respect to every generator parameter (computed once)."""
    if n < 1:
        raise TutorialError(f"n must be >= 1, got {n}.")
    device = next(G.parameters()).device
    z = latents(n, G.z_dim, seed, device)
    fisher = {k: torch.zeros_like(p) for k, p in G.named_parameters()}
    G.eval()
    D.eval()
    for i in range(n):
        G.zero_grad(set_to_none=True)
        D(G(z[i:i + 1])).sum().backward()
        for k, p in G.named_parameters():
            fisher[k] += p.grad.detach() ** 2 / n
    G.zero_grad(set_to_none=True)
    D.zero_grad(set_to_none=True)
    return fisher


def ewc_penalty(G: nn.Module, fisher: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor],
                lam: float) -> torch.Tensor:
    """(lam / 2) * sum_i F_i (theta_i - theta_ref_i)^2 over the generator's parameters."""
    total = None
    for k, p in G.named_parameters():
        if k not in fisher or k not in reference:
            raise TutorialError(f"The Fisher or reference state has no entry for parameter {k!r}.")
        if fisher[k].shape != p.shape:
            raise InputShapeError(f"Fisher entry {k!r} has shape {tuple(fisher[k].shape)}, parameter {tuple(p.shape)}.")
        term = (fisher[k] * (p - reference[k]) ** 2).sum()
        total = term if total is None else total + term
    return 0.5 * lam * total


def ewc_lambda(fisher: Mapping[str, torch.Tensor], strength: float) -> float:
    """lambda = strength / mean(F): the EWC weight that puts ``strength`` on a parameter of average
    importance. The raw Fisher values depend on the scale of the discriminator's logits (they are
    ~1e-6 for a discriminator trained with R1, ~1e-3 without), so a fixed lambda would mean a different
    penalty for every network; this rule does not."""
    if strength < 0:
        raise TutorialError(f"The EWC strength must be >= 0, got {strength!r}.")
    mean = float(torch.cat([f.detach().flatten().float() for f in fisher.values()]).mean())
    if not mean > 0:
        raise TutorialError("The Fisher diagonal is zero: the discriminator gives no gradient to the generator.")
    return float(strength) / mean


# ------------------------------------------------------------------------- state-dict arithmetic
def clone_state(module_or_state: nn.Module | Mapping[str, torch.Tensor]) -> State:
    state = module_or_state.state_dict() if isinstance(module_or_state, nn.Module) else module_or_state
    return {k: v.detach().clone() for k, v in state.items()}


def _same_keys(a: Mapping, b: Mapping, what: str) -> None:
    if set(a) != set(b):
        raise TutorialError(f"{what}: the state dicts hold different parameters "
                            f"(only in first: {sorted(set(a) - set(b))[:3]}, only in second: {sorted(set(b) - set(a))[:3]}).")
    for k in a:
        if a[k].shape != b[k].shape:
            raise InputShapeError(f"{what}: {k!r} has shape {tuple(a[k].shape)} vs {tuple(b[k].shape)}.")


def state_difference(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> State:
    """a - b, key by key (e.g. Delta = theta_N - theta_G)."""
    _same_keys(a, b, "state_difference")
    return {k: a[k].detach() - b[k].detach() for k in a}


def average_states(states: Sequence[Mapping[str, torch.Tensor]]) -> State:
    """The key-by-key mean of several state dicts (e.g. the K deltas)."""
    if len(states) == 0:
        raise TutorialError("average_states needs at least one state dict.")
    for s in states[1:]:
        _same_keys(states[0], s, "average_states")
    return {k: torch.stack([s[k].detach().float() for s in states]).mean(0) for k in states[0]}


def block_of(key: str) -> str:
    """The block a parameter belongs to: 'net.2.weight' -> 'net.2'."""
    return key.rsplit(".", 1)[0]


def blocks(state: Mapping[str, torch.Tensor]) -> list[str]:
    """The blocks of a state dict, in order."""
    out: list[str] = []
    for k in state:
        b = block_of(k)
        if b not in out:
            out.append(b)
    return out


def apply_direction(base: Mapping[str, torch.Tensor], delta: Mapping[str, torch.Tensor], gamma: float,
                    only: Iterable[str] | None = None) -> State:
    """theta_G + gamma * Delta; with ``only`` (block names such as 'net.0') just those blocks move."""
    _same_keys(base, delta, "apply_direction")
    chosen = None if only is None else set(only)
    if chosen is not None:
        unknown = chosen - set(blocks(base))
        if unknown:
            raise TutorialError(f"Unknown block(s) {sorted(unknown)}; blocks are {blocks(base)}.")
    return {k: (base[k] + gamma * delta[k]) if chosen is None or block_of(k) in chosen else base[k].clone()
            for k in base}


def direction_norms(delta: Mapping[str, torch.Tensor], base: Mapping[str, torch.Tensor] | None = None) -> dict[str, float]:
    """The L2 norm of Delta per block; with ``base``, relative to the norm of those weights."""
    out = {}
    for b in blocks(delta):
        keys = [k for k in delta if block_of(k) == b]
        norm = math.sqrt(sum(float((delta[k].float() ** 2).sum()) for k in keys))
        if base is not None:
            ref = math.sqrt(sum(float((base[k].float() ** 2).sum()) for k in keys))
            norm = norm / max(ref, 1e-12)
        out[b] = norm
    return out


def gaussian_like(state: Mapping[str, torch.Tensor], seed: int) -> State:
    """Standard normal noise with the keys and shapes of ``state`` (float32, on the CPU), drawn
    tensor by tensor in the state's order from a generator seeded by ``seed``."""
    gen = torch.Generator().manual_seed(int(seed))
    return {k: torch.randn(v.shape, generator=gen) for k, v in state.items()}


def match_block_norms(noise: Mapping[str, torch.Tensor], delta: Mapping[str, torch.Tensor]) -> State:
    """``noise`` rescaled block by block so that every block has the L2 norm that ``delta`` has there
    (the weight and the bias of a layer together): a random direction with Delta's per-block norms."""
    _same_keys(noise, delta, "match_block_norms")
    target = direction_norms(delta)
    have = direction_norms(noise)
    out = {}
    for k, v in noise.items():
        b = block_of(k)
        if have[b] == 0:
            raise TutorialError(f"match_block_norms: the noise is zero in block {b!r}; it has no direction to scale.")
        out[k] = v.to(delta[k].device, delta[k].dtype) * (target[b] / have[b])
    return out


def random_direction(delta: Mapping[str, torch.Tensor], seed: int) -> State:
    """A random direction with the same per-block norms as ``delta`` (the control of notebook 01)."""
    return match_block_norms(gaussian_like(delta, seed), delta)


def load_state(G: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    G.load_state_dict({k: v.to(next(G.parameters()).device) for k, v in state.items()})
    return G


def sweep(G: Generator, base: Mapping[str, torch.Tensor], delta: Mapping[str, torch.Tensor],
          gammas: Sequence[float], z: torch.Tensor, measure: Callable[[torch.Tensor], Mapping[str, float]],
          only: Iterable[str] | None = None, keep_images: int = 0, desc: str | None = None) -> list[dict]:
    """For each gamma: load theta_G + gamma * Delta into a copy of ``G``, generate from the fixed
    latents ``z``, and record ``measure(images)``; optionally keep the first ``keep_images`` samples."""
    from .runtime import progress

    work = copy.deepcopy(G)
    rows = []
    for gamma in (progress(gammas, desc=desc) if desc else gammas):
        load_state(work, apply_direction(base, delta, float(gamma), only))
        images = sample(work, z)
        row = {"gamma": float(gamma), **measure(images)}
        if keep_images:
            row["images"] = images[:keep_images]
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------- the toy
def mode_centres(n_modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    angles = torch.arange(n_modes, dtype=torch.float32) * (2 * math.pi / n_modes)
    return radius * torch.stack([angles.cos(), angles.sin()], 1)


def eight_gaussians(n: int, seed: int = 0, std: float = 0.05, radius: float = 2.0, n_modes: int = 8,
                    modes: Iterable[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points from a mixture of ``n_modes`` Gaussians on a circle; returns (points, mode index)."""
    gen = torch.Generator().manual_seed(int(seed))
    allowed = torch.tensor(sorted(set(range(n_modes)) if modes is None else sorted(set(modes))))
    which = allowed[torch.randint(0, len(allowed), (n,), generator=gen)]
    pts = mode_centres(n_modes, radius)[which] + std * torch.randn(n, 2, generator=gen)
    return pts, which


def mode_stats(points: torch.Tensor, negative: Iterable[int], n_modes: int = 8, radius: float = 2.0,
               threshold: float = 0.3, min_share: float = 0.02) -> dict[str, float]:
    """Where generated 2-D points land: share in the negative modes, coverage of the other modes
    (fraction of positive modes holding at least ``min_share`` of the samples), share off all modes."""
    if points.ndim != 2 or points.shape[1] != 2:
        raise InputShapeError(f"points must be (N, 2), got {tuple(points.shape)}.")
    dist = torch.cdist(points.float(), mode_centres(n_modes, radius))
    nearest = dist.argmin(1)
    close = dist.min(1).values < threshold
    neg = sorted(set(negative))
    pos = [m for m in range(n_modes) if m not in neg]
    share = [float(((nearest == m) & close).float().mean()) for m in range(n_modes)]
    return {
        "negative_share": sum(share[m] for m in neg),
        "positive_coverage": sum(share[m] >= min_share for m in pos) / max(len(pos), 1),
        "off_mode_share": float((~close).float().mean()),
    }


# --------------------------------------------------------------------------- digits: configs
_REQUIRED = object()


def _get(cfg: Any, key: str, default: Any = _REQUIRED) -> Any:
    try:
        return cfg[key] if isinstance(cfg, Mapping) else getattr(cfg, key)
    except (KeyError, AttributeError):
        if default is _REQUIRED:
            raise
        return default


# The settings of the pre-trained digits GAN and classifier for each profile. Notebooks 01 and 02
# both build their profiles from these, so that they share (and cache) the same models. ``dataset``
# is what they train on (tutorial_lib.data.load_training_digits): at gpu, MNIST when it has been
# fetched, else the embedded digits upsampled to 28x28.
DIGITS_GAN_PROFILES: dict[str, dict[str, Any]] = {
    "smoke": dict(dataset="digits", digit_size=8, classifier_epochs=3, z_dim=32, g_hidden=[128, 256],
                  d_hidden=[256, 128], gan_steps=300, gan_batch=64, gan_lr=5e-4, gan_ema=0.9, gan_r1=1.0),
    "laptop": dict(dataset="digits", digit_size=8, classifier_epochs=40, z_dim=32, g_hidden=[128, 256],
                   d_hidden=[256, 128], gan_steps=16000, gan_batch=64, gan_lr=5e-4, gan_ema=0.995, gan_r1=1.0),
    "gpu": dict(dataset="mnist", digit_size=28, classifier_epochs=60, z_dim=64, g_hidden=[256, 512],
                d_hidden=[512, 256], gan_steps=20000, gan_batch=128, gan_lr=5e-4, gan_ema=0.995, gan_r1=1.0),
}


def digits_gan_config(profile_cfg: Any, seed: int) -> dict:
    """The configuration of the pre-trained digits GAN (shared by notebooks 01 and 02, so they share
    the cached checkpoint). ``profile_cfg`` needs digit_size, z_dim, g_hidden, d_hidden, gan_steps,
    gan_batch, gan_lr, gan_ema, gan_r1, and may give dataset ("digits", the default, or "mnist")."""
    return {
        "model": "mlp_gan", "dataset": str(_get(profile_cfg, "dataset", "digits")),
        "size": int(_get(profile_cfg, "digit_size")), "z_dim": int(_get(profile_cfg, "z_dim")),
        "g_hidden": list(_get(profile_cfg, "g_hidden")), "d_hidden": list(_get(profile_cfg, "d_hidden")),
        "steps": int(_get(profile_cfg, "gan_steps")), "batch": int(_get(profile_cfg, "gan_batch")),
        "lr": float(_get(profile_cfg, "gan_lr")), "loss": "non-saturating", "betas": [0.5, 0.999],
        "ema": float(_get(profile_cfg, "gan_ema")), "r1": float(_get(profile_cfg, "gan_r1")),
        "seed": int(seed), "exclude": [],
    }


def build_gan(config: Mapping[str, Any]) -> tuple[Generator, Discriminator]:
    """A fresh (G, D) for ``config``; the initial weights depend only on ``config['seed']``."""
    shape = (1, config["size"], config["size"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(config.get("seed", 0)))
        return (Generator(config["z_dim"], shape, config["g_hidden"]), Discriminator(shape, config["d_hidden"]))


def pretrained_digits_gan(config: Mapping[str, Any], device: torch.device | str = "cpu", name: str = "digits_gan",
                          verbose: bool = True):
    """Load the digits GAN of ``config`` from the cache, or train it on ``config['dataset']`` (minus
    ``config['exclude']``; see :func:`tutorial_lib.data.load_training_digits`) and cache it.

    The cached configuration names the data actually used: "mnist" falls back to "digits" (with a
    message when ``verbose``) when MNIST is not on disk. Returns (G, D, CacheResult).
    """
    from . import checkpoints
    from .data import load_training_digits, training_dataset

    used = training_dataset(config.get("dataset", "digits"), config["size"], verbose=verbose)  # what train() loads
    config = dict(config, dataset=used)
    G, D = build_gan(config)

    def train():
        digits = load_training_digits(config["dataset"], config["size"], exclude=config.get("exclude", []))
        hist = train_gan(G, D, digits.x_train, steps=config["steps"], batch_size=config["batch"], lr=config["lr"],
                         betas=tuple(config["betas"]), seed=config["seed"], device=device, ema=config.get("ema") or None,
                         r1=float(config.get("r1", 0.0)),
                         desc="GAN " + ("without " + ",".join(map(str, config["exclude"])) if config.get("exclude") else "pre-training"))
        return {"final_d_loss": hist.history["d_loss"][-1], "final_g_loss": hist.history["g_loss"][-1],
                "cpu_seconds": hist.cpu_seconds}

    res = checkpoints.load_or_train(name, config, {"G": G, "D": D}, train, code=[build_gan], verbose=verbose)
    G.to(device).eval()
    D.to(device).eval()
    return G, D, res


def class_share(classifier, images: torch.Tensor, cls: int) -> float:
    """Fraction of ``images`` that ``classifier`` labels as ``cls``."""
    if len(images) == 0:
        raise TutorialError("class_share needs at least one image.")
    return float((classifier.predict(images) == int(cls)).float().mean())


def class_histogram(classifier, images: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """Fraction of images per predicted class."""
    return torch.bincount(classifier.predict(images), minlength=num_classes).float() / max(len(images), 1)
