"""The `gpu` profile's cost per training step, measured on the CPU: how many tensor operations a step
dispatches (on a GPU each is at least one kernel launch) and how many floating-point operations it
does, for the step of each notebook's main training loop at its `gpu` sizes.

    python docs/gpu_budget.py

Networks this small are bound by launches, not by arithmetic, on a GPU: at a few microseconds of
host time per launch, a step's operations times the number of steps bounds the time from below,
whatever the GPU. The README's `gpu` estimate multiplies these counts by the steps each notebook
trains (from its `gpu` profile).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from tutorial_lib import gan, isp, mid
from tutorial_lib import restoration as R
from tutorial_lib.degradations import PairSet


class OpCount(TorchDispatchMode):
    """Counts the aten operations dispatched inside it."""

    def __init__(self):
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


def per_step(step, flop_step=None, warmup: int = 2, steps: int = 3) -> tuple[float, float]:
    """(operations, GFLOP) of one call of ``step`` (the mean over ``steps`` calls after ``warmup``).
    The FLOPs are counted on ``flop_step`` when given (the counter cannot follow a double backward)."""
    for _ in range(warmup):
        step()
    with OpCount() as count:
        for _ in range(steps):
            step()
    with FlopCounterMode(display=False) as flops:
        (flop_step or step)()
    return count.ops / steps, flops.get_total_flops() / 1e9


def gan_step(r1: bool = True):
    cfg = gan.DIGITS_GAN_PROFILES["gpu"]
    G, D = gan.build_gan({"size": 28, "z_dim": cfg["z_dim"], "g_hidden": cfg["g_hidden"],
                          "d_hidden": cfg["d_hidden"], "seed": 0})
    opt_g, opt_d = (torch.optim.Adam(m.parameters(), lr=5e-4, betas=(0.5, 0.999)) for m in (G, D))
    real, z = torch.rand(cfg["gan_batch"], 1, 28, 28), torch.randn(cfg["gan_batch"], cfg["z_dim"])
    return lambda: gan.gan_step(G, D, opt_g, opt_d, real, z, r1=cfg["gan_r1"] if r1 else 0.0)


def l1_step(model, x, y, lr):
    """One supervised step of ``model`` (L1 to ``y``, Adam), as the notebooks' training loops take it."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step():
        loss = F.l1_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def restorer_step(width=32, patch=64, batch=32):
    return l1_step(R.AllInOneRestorer(width=width, n_prompts=4), torch.rand(batch, 3, patch, patch),
                   torch.rand(batch, 3, patch, patch), lr=1e-3)


def forget_step(width=32, patch=64, batch=32, pgd_steps=2):
    model = R.AllInOneRestorer(width=width, n_prompts=4)
    pairs = PairSet(torch.rand(batch, 3, patch, patch), torch.rand(batch, 3, patch, patch),
                    torch.zeros(batch, dtype=torch.long), ("noise",))
    return lambda: R.forget(model, pairs, pairs, "bounded_ga", steps=1, batch_size=batch, pgd_steps=pgd_steps,
                            desc=None)


def denoiser_step(width=48, patch=48, batch=32, alpha=0.75):
    model = mid.Denoiser(3, width)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    x, n = torch.rand(batch, 3, patch, patch), 0.05 * torch.randn(batch, 3, patch, patch)
    gen = torch.Generator().manual_seed(0)

    def step():
        loss = mid.mid_loss(model, x, n, alpha, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def isp_step(patch=64, batch=32):
    return l1_step(isp.EfficientISP(12, seed=0), torch.rand(batch, 4, patch // 2, patch // 2),
                   torch.rand(batch, 3, patch, patch), lr=5e-3)


STEPS = {
    "GAN step (01, 02; MLP, batch 128, R1)": gan_step,
    "restorer training step (03; width 32, 64 px, batch 32)": restorer_step,
    "forgetting step (03; ours, 2 PGD steps)": forget_step,
    "MID denoiser step (04; width 48, 48 px, batch 32)": denoiser_step,
    "paired ISP step (05; 64 px, batch 32)": isp_step,
}

if __name__ == "__main__":
    torch.manual_seed(0)
    print(f"{'step':58s} {'ops':>6s} {'GFLOP':>8s}  (the GAN's FLOPs without its R1 term)")
    for name, make in STEPS.items():
        ops, gflop = per_step(make(), gan_step(r1=False) if make is gan_step else None)
        print(f"{name:58s} {ops:6.0f} {gflop:8.2f}")
