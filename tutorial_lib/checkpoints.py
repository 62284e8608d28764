"""A checkpoint cache that never silently loads the wrong thing.

* Where: ``$TUTORIAL_CACHE`` if set, else ``$XDG_CACHE_HOME/tutorial_lib`` (``~/.cache/tutorial_lib``).
* What: plain ``state_dict`` tensors plus the JSON-able config that produced them, and a few
  extras (training wall time, metrics), in one file written atomically (a temporary file in the
  same folder, flushed, then renamed: an interrupt never leaves a half-written checkpoint).
* How it is read: ``torch.load(..., weights_only=True)``; a file that fails to load is reported as
  corrupt; a file whose stored config differs from the requested one is never reused.

The pattern "load if present and matching, else train, then save" is :func:`load_or_train`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from .errors import CheckpointError

FORMAT = "tutorial_lib.checkpoint/1"
ENV_VAR = "TUTORIAL_CACHE"


def cache_dir() -> Path:
    """The cache folder (created if missing)."""
    root = os.environ.get(ENV_VAR)
    if root:
        path = Path(root).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = Path(base) / "tutorial_lib"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _plain(value: Any) -> Any:
    """Config values as plain JSON data (tuples become lists, torch.device becomes str...)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return value.item()
    return str(value)


def config_key(config: Mapping[str, Any]) -> str:
    """A short stable hash of a config (part of the checkpoint's file name)."""
    text = json.dumps(_plain(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def checkpoint_path(name: str, config: Mapping[str, Any]) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return cache_dir() / f"{safe}-{config_key(config)}.pt"


def _state_of(modules: nn.Module | Mapping[str, nn.Module]) -> dict[str, dict[str, torch.Tensor]]:
    if isinstance(modules, nn.Module):
        modules = {"model": modules}
    return {key: {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}
            for key, m in modules.items()}


def save_checkpoint(path: str | os.PathLike, modules: nn.Module | Mapping[str, nn.Module],
                    config: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``modules``' state dicts, ``config`` and ``extra`` to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "config": _plain(config),
        "extra": _plain(extra or {}),
        "state": _state_of(modules),
    }
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def read_checkpoint(path: str | os.PathLike, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``); check its format and, if given, its config.

    Raises :class:`CheckpointError` for a missing, corrupt or mismatched file.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"No checkpoint at {path}.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # zip/pickle errors differ between torch versions
        raise CheckpointError(
            f"The checkpoint {path} is corrupt or not a tutorial_lib checkpoint "
            f"({type(err).__name__}: {str(err).splitlines()[0][:200]}). Delete it, or let "
            f"load_or_train() rebuild it."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "state" not in payload:
        raise CheckpointError(f"The file {path} is not a {FORMAT} checkpoint.")
    if config is not None:
        stored, wanted = payload.get("config"), _plain(config)
        if stored != wanted:
            keys = sorted(set(stored or {}) | set(wanted))
            differing = [k for k in keys if (stored or {}).get(k) != wanted.get(k)]
            raise CheckpointError(
                f"The checkpoint {path} was made with a different configuration "
                f"(differs in: {', '.join(differing)}); it is not reused."
            )
    return payload


def load_into(modules: nn.Module | Mapping[str, nn.Module], payload: Mapping[str, Any],
              source: str = "checkpoint") -> None:
    """Load a checkpoint payload's state dicts into ``modules``, with a clear error on mismatch."""
    if isinstance(modules, nn.Module):
        modules = {"model": modules}
    state = payload["state"]
    missing = sorted(set(modules) - set(state))
    if missing:
        raise CheckpointError(f"The {source} has no weights for {missing}; it holds {sorted(state)}.")
    for key, module in modules.items():
        own = module.state_dict()
        theirs = state[key]
        problems = [f"missing {k}" for k in own if k not in theirs]
        problems += [f"unexpected {k}" for k in theirs if k not in own]
        problems += [f"{k}: stored {tuple(theirs[k].shape)} vs model {tuple(v.shape)}"
                     for k, v in own.items() if k in theirs and tuple(theirs[k].shape) != tuple(v.shape)]
        if problems:
            shown = "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else "")
            raise CheckpointError(f"The {source} does not fit module {key!r}: {shown}")
        module.load_state_dict(theirs)


@dataclass
class CacheResult:
    """What :func:`load_or_train` did: ``status`` is ``"loaded"`` or ``"trained"``."""

    status: str
    path: Path
    train_seconds: float
    extra: dict = field(default_factory=dict)

    def __str__(self) -> str:
        verb = "loaded from cache" if self.status == "loaded" else "trained and cached"
        return f"{self.path.name}: {verb} (training took {self.train_seconds:.1f} s)"


def load_or_train(name: str, config: Mapping[str, Any],
                  modules: nn.Module | Mapping[str, nn.Module],
                  train: Callable[[], Mapping[str, Any] | None], *,
                  verbose: bool = True) -> CacheResult:
    """Load ``modules`` from the cache if a checkpoint made with ``config`` exists, else train and save.

    ``train()`` trains ``modules`` in place and may return a dict of JSON-able extras (metrics,
    losses) that are stored with the weights and returned on later loads. The training wall time
    is measured here and stored too, so a notebook can report it even when it loads from cache.
    A corrupt or mismatched file is reported and rebuilt, never silently loaded.
    """
    path = checkpoint_path(name, config)
    if path.exists():
        try:
            payload = read_checkpoint(path, config)
            load_into(modules, payload, source=f"cached checkpoint {path.name}")
            extra = dict(payload.get("extra", {}))
            result = CacheResult("loaded", path, float(extra.pop("train_seconds", 0.0)), extra)
            if verbose:
                print(result)
            return result
        except CheckpointError as err:
            warnings.warn(f"{err} Rebuilding it.", stacklevel=2)
    start = time.perf_counter()
    extra = dict(train() or {})
    seconds = time.perf_counter() - start
    save_checkpoint(path, modules, config, {**extra, "train_seconds": seconds})
    result = CacheResult("trained", path, seconds, extra)
    if verbose:
        print(result)
    return result


def clear_cache(prefix: str = "") -> int:
    """Delete cached checkpoints whose name starts with ``prefix``; return how many."""
    count = 0
    for file in cache_dir().glob(f"{prefix}*.pt"):
        file.unlink()
        count += 1
    return count


def list_cache() -> list[tuple[str, float]]:
    """(file name, size in MiB) of every checkpoint in the cache."""
    return sorted((f.name, f.stat().st_size / 2**20) for f in cache_dir().glob("*.pt"))
