"""The start of every notebook (:func:`start`): device choice, thread policy, seeds, progress
bars; and the environment report."""

from __future__ import annotations

import os
import platform
import random
import sys
from typing import Any, Callable, Iterable, Mapping, Optional

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


def available_cpus() -> int:
    """The CPU cores this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _call_in_worker(call: Callable[[], Any], retrain: bool) -> tuple[Any, str, float]:
    """Run ``call`` in a worker process on one thread; return (result, what it printed, seconds)."""
    import contextlib
    import io
    import time

    from .checkpoints import set_retrain

    torch.set_num_threads(1)
    set_retrain(retrain)
    set_quiet(True)  # a worker's progress bars would not reach the notebook
    printed = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        result = call()
    return result, printed.getvalue(), time.perf_counter() - started


def in_parallel(calls: Mapping[str, Callable[[], Any]], *, workers: int | None = None,
                desc: str | None = "in parallel") -> dict[str, Any]:
    """Run independent calls (e.g. ``functools.partial(gan.pretrained_digits_gan, config)``) at
    the same time, one worker process per CPU core, each on one torch thread; returns
    ``{name: result}`` in the order of ``calls``.

    Meant for models that do not depend on each other (a classifier, a GAN, a GAN retrained without
    a class): on a CPU with two cores, two trainings take the time of one. Every call runs on one
    thread whether it runs in a worker or here, so the results are the same either way (and the
    same as a notebook with ``threads=1`` gets). What the checkpoint cache already holds is loaded
    here first, without starting a worker; only the calls that must train go to workers
    (``workers`` of them at most, default: the CPU cores). With fewer than two workers or fewer
    than two calls to train, they run here, one after another. Each call's
    printed lines are shown when it finishes, with its wall time. Workers start with ``spawn``
    (a fresh interpreter: a few seconds each), so ``calls`` must be picklable: library functions
    and ``functools.partial`` of them, not lambdas or functions defined in a notebook; in a script,
    call it under ``if __name__ == "__main__":``.
    """
    import concurrent.futures as futures
    import multiprocessing
    import pickle
    import time

    from .checkpoints import NotCached, cached_only, retrain_requested

    if not isinstance(calls, Mapping) or not calls:
        raise TutorialError("in_parallel needs a non-empty mapping {name: callable}.")
    for name, call in calls.items():
        if not callable(call):
            raise TutorialError(f"in_parallel: {name!r} is not callable (got {type(call).__name__}).")
    if workers is None:
        workers = available_cpus()
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise TutorialError(f"workers must be a positive integer or None, got {workers!r}.")
    results: dict[str, Any] = {}
    to_train = dict(calls)
    with cached_only():  # what is cached is loaded here, at once; only the rest goes to workers
        for name, call in calls.items():
            try:
                results[name] = call()
                del to_train[name]
            except NotCached:
                pass
    if workers < 2 or len(to_train) < 2:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for name, call in to_train.items():
                started = time.perf_counter()
                results[name] = call()
                print(f"{name}: {time.perf_counter() - started:.1f} s")
        finally:
            torch.set_num_threads(threads)
        return {name: results[name] for name in calls}
    for name, call in to_train.items():
        try:
            pickle.dumps(call)
        except Exception as err:  # noqa: BLE001 - any pickling failure means the same thing here
            raise TutorialError(f"in_parallel: {name!r} cannot be sent to a worker process ({err}); pass a library "
                                "function or a functools.partial of one, not a lambda or a notebook function.") from None
    retrain = retrain_requested()
    context = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(max_workers=min(workers, len(to_train)), mp_context=context) as pool:
        pending = {pool.submit(_call_in_worker, call, retrain): name for name, call in to_train.items()}
        for done in progress(futures.as_completed(pending), total=len(pending), desc=desc):
            name = pending[done]
            try:
                result, printed, seconds = done.result()
            except futures.process.BrokenProcessPool:
                raise TutorialError(
                    "in_parallel: a worker process stopped before finishing. In a Python script, put the code that "
                    "calls in_parallel under `if __name__ == \"__main__\":` (worker processes import the script "
                    "again); or run the calls one after another with workers=1.") from None
            lines = [line for line in printed.splitlines() if line.strip()]
            print(f"{name}: {seconds:.1f} s" + "".join(f"\n    {line}" for line in lines))
            results[name] = result
    return {name: results[name] for name in calls}


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
