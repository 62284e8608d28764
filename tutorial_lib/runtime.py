"""The start of every notebook (:func:`start`): device choice, thread policy, seeds, progress
bars; and the environment report."""

from __future__ import annotations

import os
import platform
import random
import sys
from typing import Iterable, Optional

import numpy as np
import torch

from .errors import TutorialError

_DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def pick_device(device: str | torch.device = "auto", verbose: bool = True) -> torch.device:
    """Resolve ``"auto"`` to CUDA, then Apple MPS, then CPU, and say which one was picked.

    An explicit ``"cuda"``/``"mps"`` that is not available fails with a clear message.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str) or device.split(":")[0] not in _DEVICE_CHOICES:
        raise TutorialError(f"Unknown device {device!r}. Choose one of {', '.join(_DEVICE_CHOICES)}.")
    kind = device.split(":")[0]
    if kind == "auto":
        if torch.cuda.is_available():
            chosen, why = torch.device("cuda"), f"CUDA GPU: {torch.cuda.get_device_name(0)}"
        elif _mps_available():
            chosen, why = torch.device("mps"), "Apple GPU (MPS)"
        else:
            chosen, why = torch.device("cpu"), f"CPU ({torch.get_num_threads()} threads); no GPU found"
    elif kind == "cuda":
        if not torch.cuda.is_available():
            raise TutorialError("DEVICE='cuda' was requested but no CUDA GPU is available; use DEVICE='auto'.")
        chosen, why = torch.device(device), f"CUDA GPU: {torch.cuda.get_device_name(chosen_index(device))}"
    elif kind == "mps":
        if not _mps_available():
            raise TutorialError("DEVICE='mps' was requested but Apple MPS is not available; use DEVICE='auto'.")
        chosen, why = torch.device("mps"), "Apple GPU (MPS)"
    else:
        chosen, why = torch.device("cpu"), f"CPU ({torch.get_num_threads()} threads)"
    if verbose:
        print(f"Device: {chosen} - {why}")
    return chosen


def chosen_index(device: str) -> int:
    return int(device.split(":")[1]) if ":" in device else 0


def seed_everything(seed: int) -> int:
    """Seed Python, NumPy and torch (all devices); return the seed.

    Together with :func:`make_generator` for explicit draws, the same profile and seed give the
    same numbers on the same machine.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TutorialError(f"The seed must be an integer, got {seed!r}.")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    return seed


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch.Generator seeded with ``seed``: pass it to every random draw you want reproducible."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen


_QUIET = {"flag": False}


def set_quiet(flag: bool) -> None:
    """Silence (``True``) or show (``False``) the progress bars of this process; :func:`start` sets
    it from the profile (quiet for ``smoke`` in CI)."""
    _QUIET["flag"] = bool(flag)


def quiet() -> bool:
    """True when progress bars should stay silent: ``TUTORIAL_QUIET=1`` (``0`` shows them whatever
    was set), else what :func:`set_quiet` set last (``False`` before any call)."""
    flag = os.environ.get("TUTORIAL_QUIET", "").strip().lower()
    if flag in ("1", "true", "yes"):
        return True
    if flag in ("0", "false", "no"):
        return False
    return _QUIET["flag"]


def progress(iterable: Optional[Iterable] = None, *, total: Optional[int] = None,
             desc: Optional[str] = None, disable: Optional[bool] = None, **kwargs):
    """A ``tqdm.auto`` progress bar (a widget in JupyterLab, text elsewhere), quiet under smoke in CI."""
    from tqdm.auto import tqdm

    if disable is None:
        disable = quiet()
    return tqdm(iterable, total=total, desc=desc, disable=disable, leave=kwargs.pop("leave", True),
                dynamic_ncols=True, **kwargs)


def start(profiles, profile: str | None = None, *, seed: int = 0, device: str | torch.device = "auto",
          retrain: bool = False, threads: int | None = None):
    """Everything a notebook does before its first experiment, in one call; returns
    ``(cfg, device, run)``.

    In order: apply the course's plotting style; resolve ``profile`` in ``profiles`` (a :class:`~tutorial_lib.profiles.ProfileSet`;
    ``None``: ``TUTORIAL_PROFILE`` or ``laptop``); pick the device (:func:`pick_device`); on a CPU
    with ``threads`` given, use that many torch threads (1 for networks so small that extra
    threads only wait on each other); seed Python, NumPy and torch (:func:`seed_everything`);
    set the checkpoint cache's retrain flag; silence progress bars for ``smoke`` in CI
    (:func:`set_quiet`); open the notebook's :class:`~tutorial_lib.results.Results` (named after
    the profile set), which records every metric and claim of the run.
    """
    from .checkpoints import set_retrain
    from .plots import set_style
    from .results import Results

    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise TutorialError(f"threads must be a positive integer or None, got {threads!r}.")
    set_style()
    cfg = profiles.resolve(profile)
    chosen = pick_device(device)
    if threads is not None and chosen.type == "cpu":
        torch.set_num_threads(threads)
    seed_everything(seed)
    set_retrain(retrain)
    set_quiet(bool(os.environ.get("CI")) and cfg.name == "smoke")
    return cfg, chosen, Results(profiles.notebook, cfg, seed=seed, device=chosen)


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


REPORT_PACKAGES = ("torch", "torchvision", "numpy", "scikit-learn", "scikit-image", "torchmetrics",
                   "kornia", "matplotlib", "seaborn", "ipywidgets", "papermill", "nbval", "tqdm")


def environment_report(device: torch.device | None = None, profile: str | None = None) -> dict[str, str]:
    """Versions of Python and the key packages, the device and the profile, as a dict (and printed)."""
    from . import __version__

    report = {
        "python": sys.version.split()[0],
        "platform": platform.platform(terse=True),
        "tutorial_lib": __version__,
        **{name: _version(name) for name in REPORT_PACKAGES},
        "cuda available": str(torch.cuda.is_available()),
        "cpu threads": str(torch.get_num_threads()),
    }
    if device is not None:
        report["device"] = str(device)
    if profile is not None:
        report["profile"] = profile
    width = max(map(len, report))
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")
    return report


def require_version(minimum: str) -> None:
    """Fail with install instructions when the installed tutorial_lib is older than ``minimum``."""
    from . import __version__

    def parts(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split(".")[:3] if p.isdigit())

    if parts(__version__) < parts(minimum):
        raise TutorialError(
            f"This notebook needs tutorial_lib >= {minimum}, but {__version__} is installed. "
            f"From the repository root run `make env` (or `pip install -e .`) and restart the kernel."
        )
