"""A checkpoint cache that never silently loads the wrong thing.

* Where: ``$TUTORIAL_CACHE`` if set, else ``$XDG_CACHE_HOME/tutorial_lib`` (``~/.cache/tutorial_lib``).
  ``$TUTORIAL_SHARED_CACHE`` names a second, read-only folder (a lecturer's trained models for a
  whole class): a checkpoint missing from the writable cache is looked up there, and never written there.
* What: plain ``state_dict`` tensors plus the JSON-able config that produced them, and a few
  extras (training wall time, metrics), in one file written atomically (a temporary file in the
  same folder, flushed, then renamed: an interrupt never leaves a half-written checkpoint).
* How it is read: ``torch.load(..., weights_only=True)``; a file that fails to load is reported as
  corrupt; a file whose stored config differs from the requested one is never reused. Loading is
  all or nothing: every module is checked before any is touched.
* What keys it: the configuration, **the code that trains** (the compiled body of the training
  function and of every function and class of this library or of the notebook that it reaches, see
  :func:`code_fingerprint`) and the library version. Edit a training function and the next run
  trains a new model instead of returning the old one.
* ``RETRAIN``: :func:`set_retrain` (the notebooks' ``RETRAIN`` parameter) or the environment
  variable ``TUTORIAL_RETRAIN=1`` ignores the cache: every model is trained again and re-saved.

The pattern "load if present and matching, else train, then save" is :func:`load_or_train`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
import sysconfig
import tempfile
import time
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from .errors import CheckpointError

FORMAT = "tutorial_lib.checkpoint/1"
ENV_VAR = "TUTORIAL_CACHE"
SHARED_ENV_VAR = "TUTORIAL_SHARED_CACHE"
RETRAIN_ENV_VAR = "TUTORIAL_RETRAIN"
_retrain = False
_cached_only = {"flag": False}


class NotCached(Exception):
    """Raised by :func:`load_or_train` inside :func:`cached_only` when it would have to train."""


class cached_only:
    """Inside ``with cached_only():`` :func:`load_or_train` loads what is cached and raises
    :class:`NotCached` instead of training (used by :func:`tutorial_lib.runtime.in_parallel` to send
    only the models that need training to worker processes)."""

    def __enter__(self):
        self._before = _cached_only["flag"]
        _cached_only["flag"] = True
        return self

    def __exit__(self, *exc):
        _cached_only["flag"] = self._before
        return False


def set_retrain(flag: bool) -> bool:
    """Ignore (``True``) or use (``False``) the cache from now on; returns the effective setting.

    The environment variable ``TUTORIAL_RETRAIN=1`` forces retraining whatever the flag."""
    global _retrain
    _retrain = bool(flag)
    return retrain_requested()


def retrain_requested() -> bool:
    """Whether :func:`load_or_train` ignores the cache (``set_retrain(True)`` or ``TUTORIAL_RETRAIN=1``)."""
    return _retrain or os.environ.get(RETRAIN_ENV_VAR, "").strip().lower() in ("1", "true", "yes")


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


def shared_cache_dir() -> Path | None:
    """The read-only shared cache (``$TUTORIAL_SHARED_CACHE``), if set and a folder; never created or written."""
    root = os.environ.get(SHARED_ENV_VAR)
    if not root:
        return None
    path = Path(root).expanduser()
    return path if path.is_dir() else None


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


# ---------------------------------------------------------------------------------------------
# What code made a model
# ---------------------------------------------------------------------------------------------

_INSTALLED = tuple(os.path.realpath(p) for p in {sysconfig.get_paths()[k] for k in ("stdlib", "purelib", "platlib")})


# The cache's own machinery stores and finds models; it cannot change what one learns, so a model
# trained through a function that caches its parts (a pre-trained GAN) keeps its key when it changes.
_CACHE_MACHINERY = ("tutorial_lib.checkpoints", "tutorial_lib.fingerprint")


def _is_own_code(module_name: str | None) -> bool:
    """Code that can change between two runs: this library (but for the cache's own machinery), a
    notebook (``__main__``), or a module of the reader's own (not the standard library, not an
    installed third-party package)."""
    if not module_name or module_name in _CACHE_MACHINERY:
        return False
    if module_name == "__main__" or module_name == "tutorial_lib" or module_name.startswith("tutorial_lib."):
        return True
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if not path:
        return False  # built-in or namespace module
    return not os.path.realpath(path).startswith(_INSTALLED)


def _fingerprint_text(obj: Any) -> str:
    """What identifies a function or class, the same on every Python version (see
    :mod:`tutorial_lib.fingerprint`): for a function, the syntax tree of its source without
    docstrings and comments; for a class, its bases and plain attributes (its methods are followed
    one by one)."""
    from .fingerprint import class_text, function_text

    if isinstance(obj, types.FunctionType):
        return function_text(obj)
    return class_text(obj)


def _code_objects(code: types.CodeType):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _imported(code: types.CodeType, package: str | None) -> list[Any]:
    """What ``import x`` / ``from .x import y`` statements inside a function body bring in."""
    import dis
    import importlib

    found, consts, module = [], [], None
    for ins in dis.get_instructions(code):
        if ins.opname == "LOAD_CONST":
            consts = (consts + [ins.argval])[-2:]
        elif ins.opname == "IMPORT_NAME":
            level = consts[0] if len(consts) == 2 and isinstance(consts[0], int) else 0
            try:
                module = importlib.import_module(("." * level) + ins.argval, package if level else None)
            except (ImportError, TypeError, ValueError):
                module = None
            if module is not None:
                found.append(module)
        elif ins.opname == "IMPORT_FROM" and module is not None and hasattr(module, ins.argval):
            found.append(getattr(module, ins.argval))
    return found


def code_fingerprint(*objects: Any) -> tuple[str, list[str]]:
    """A hash of the code of ``objects`` and of everything of the reader's own that they reach.

    Starting from functions, lambdas, bound methods, classes or modules (``nn.Module`` instances
    count as their class), it follows the names each function's code uses (globals, attributes of
    modules it uses, closure variables) and every method of each class, into this library, the
    notebook and the reader's own modules; the standard library and installed packages are not
    followed (their version is part of the environment, not of the experiment). Returns
    ``(sha256 hex digest, sorted names of what was hashed)``.
    """
    seen: dict[str, str] = {}
    visited: set[int] = set()

    def visit(obj: Any) -> None:
        if isinstance(obj, (types.MethodType,)):
            visit(obj.__func__)
            visit(type(obj.__self__))
            return
        if isinstance(obj, (staticmethod, classmethod)):
            visit(obj.__func__)
            return
        if isinstance(obj, property):
            for f in (obj.fget, obj.fset):
                if f is not None:
                    visit(f)
            return
        if isinstance(obj, nn.Module):
            visit(type(obj))
            return
        if isinstance(obj, types.FunctionType) and hasattr(obj, "__wrapped__"):
            obj = inspect.unwrap(obj)  # a decorated function (torch.no_grad, contextmanager): its own body
        if id(obj) in visited:
            return
        if isinstance(obj, types.FunctionType):
            if not _is_own_code(obj.__module__):
                return
            visited.add(id(obj))
            seen[f"{obj.__module__}.{obj.__qualname__}"] = _fingerprint_text(obj)
            namespace = obj.__globals__
            cells = dict(zip(obj.__code__.co_freevars, obj.__closure__ or ()))
            for code in _code_objects(obj.__code__):
                names = set(code.co_names)
                targets = list(_imported(code, namespace.get("__package__")))
                for name in code.co_freevars:
                    try:
                        targets.append(cells[name].cell_contents)
                    except (KeyError, ValueError):  # a name of an inner function, or an empty cell
                        pass
                targets += [namespace[name] for name in names if name in namespace]
                for target in targets:
                    if isinstance(target, types.ModuleType):
                        if _is_own_code(target.__name__):  # module.attr: follow the attributes used
                            for attr in names & set(vars(target)):
                                visit(vars(target)[attr])
                    else:
                        visit(target)
            return
        if isinstance(obj, type):
            if not _is_own_code(obj.__module__):
                return
            visited.add(id(obj))
            seen[f"{obj.__module__}.{obj.__qualname__}"] = _fingerprint_text(obj)
            for base in obj.__bases__:
                visit(base)
            for member in vars(obj).values():
                visit(member)

    for obj in objects:
        visit(obj)
    text = json.dumps(seen, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest(), sorted(seen)


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
    """Load a checkpoint payload's state dicts into ``modules``, all or nothing.

    Every module is checked against the stored weights (names and shapes) before any is loaded; if
    loading still fails half-way, the modules already loaded are put back as they were. So a
    :class:`CheckpointError` always leaves every module untouched.
    """
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
        problems += [f"{k}: stored {theirs[k].dtype} vs model {v.dtype}"
                     for k, v in own.items() if k in theirs and theirs[k].dtype != v.dtype]
        if problems:
            shown = "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else "")
            raise CheckpointError(f"The {source} does not fit module {key!r}: {shown}")
    backups = {key: {k: v.detach().clone() for k, v in m.state_dict().items()} for key, m in modules.items()}
    try:
        for key, module in modules.items():
            module.load_state_dict(state[key])
    except (RuntimeError, TypeError, ValueError) as err:
        with torch.no_grad():  # every module, the failing one too (it may be half copied), in place
            for name, module in modules.items():
                for k, v in module.state_dict().items():
                    v.copy_(backups[name][k])
        raise CheckpointError(f"The {source} could not be loaded into module {key!r} "
                              f"({str(err).splitlines()[0][:200]}); no module was changed.") from None


@dataclass
class CacheResult:
    """What :func:`load_or_train` did: ``status`` is ``"loaded"`` or ``"trained"``."""

    status: str
    path: Path
    train_seconds: float
    extra: dict = field(default_factory=dict)
    code: list = field(default_factory=list)

    def __str__(self) -> str:
        verb = "loaded from cache" if self.status == "loaded" else "trained and cached"
        return f"{self.path.name}: {verb} (training took {self.train_seconds:.1f} s)"


def cache_key(config: Mapping[str, Any], train: Callable | None = None,
              modules: nn.Module | Mapping[str, nn.Module] | None = None,
              code: tuple | list = ()) -> tuple[dict[str, Any], list[str]]:
    """The full key of a cached result: ``config`` plus the fingerprint of the code that makes it.

    Returns ``(key, names)``: ``key`` is ``config`` with ``_code`` (the hash of ``train``, of the
    modules' classes and of the extra ``code`` objects, see :func:`code_fingerprint`) and
    ``_library`` (the version) added; ``names`` lists what the hash covers.
    """
    from . import __version__

    if isinstance(modules, nn.Module):
        modules = {"model": modules}
    roots = [train] if train is not None else []
    roots += [type(m) for m in (modules or {}).values()]
    roots += list(code)
    digest, names = code_fingerprint(*roots)
    return {**_plain(config), "_code": digest[:16], "_library": __version__}, names


def load_or_train(name: str, config: Mapping[str, Any],
                  modules: nn.Module | Mapping[str, nn.Module],
                  train: Callable[[], Mapping[str, Any] | None], *,
                  code: tuple | list = (), retrain: bool | None = None,
                  verbose: bool = True) -> CacheResult:
    """Load ``modules`` from the cache if this config *and this code* made them, else train and save.

    ``train()`` trains ``modules`` in place and may return a dict of JSON-able extras (metrics,
    losses), or a :class:`~tutorial_lib.models.TrainRecord`, which is stored as its ``as_dict()``;
    they are stored with the weights and returned on later loads. The training wall time
    is measured here and stored too, so a notebook can report it even when it loads from cache.

    The cache key (:func:`cache_key`) is ``config`` plus a hash of the code of ``train``, of
    everything of this library or the notebook that it reaches, of the modules' classes and of
    ``code`` (extra functions that matter but that ``train`` does not call, e.g. the one that
    builds the initial weights). ``retrain=True`` (default: :func:`retrain_requested`) ignores the
    cache. A corrupt or mismatched file is reported and the model is trained from its initial
    weights, never from a half-loaded state.
    """
    key, names = cache_key(config, train, modules, code)
    path = checkpoint_path(name, key)
    retrain = retrain_requested() if retrain is None else bool(retrain)
    shared = shared_cache_dir()
    places = [path] + ([shared / path.name] if shared is not None and shared.resolve() != path.parent.resolve() else [])

    def load() -> CacheResult | None:
        for place in places if not retrain else []:
            if not place.exists():
                continue
            try:
                payload = read_checkpoint(place, key)
                load_into(modules, payload, source=f"cached checkpoint {place.name}")
                extra = dict(payload.get("extra", {}))
                result = CacheResult("loaded", place, float(extra.pop("train_seconds", 0.0)), extra, names)
                if verbose:
                    print(result)
                return result
            except CheckpointError as err:
                warnings.warn(f"{err} {'Rebuilding it.' if place == path else 'Not used (the shared cache is read-only).'}",
                              stacklevel=3)
        return None

    if (result := load()) is not None:
        return result
    if _cached_only["flag"]:
        raise NotCached(name)
    with _training_lock(path) as waited:
        if waited and (result := load()) is not None:  # another process trained it meanwhile
            return result
        if verbose and retrain and path.exists():
            print(f"{path.name}: retraining (the cache is ignored: RETRAIN; the cached file is replaced)")
        start = time.perf_counter()
        out = train()
        extra = out.as_dict() if hasattr(out, "as_dict") else dict(out or {})  # a TrainRecord, or a dict
        seconds = time.perf_counter() - start
        save_checkpoint(path, modules, key, {**extra, "train_seconds": seconds})
    result = CacheResult("trained", path, seconds, extra, names)
    if verbose:
        print(result)
    return result


class _training_lock:
    """An exclusive lock on ``.locks/<checkpoint>.lock`` in the cache folder while a model is trained,
    so that two processes that need the same model (two notebooks run side by side by ``runner --jobs
    2``, or a worker of :func:`~tutorial_lib.runtime.in_parallel`) train it once: the second waits,
    then loads it. Entering gives True when it had to wait. Where ``fcntl`` is missing (Windows) it
    does nothing."""

    def __init__(self, path: Path):
        self.path = Path(path).parent / ".locks" / (Path(path).name + ".lock")
        self.handle = None

    def __enter__(self) -> bool:
        try:
            import fcntl
        except ImportError:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            print(f"{self.path.stem}: another process is training this model; waiting for it to finish", flush=True)
            fcntl.flock(self.handle, fcntl.LOCK_EX)
            return True

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            self.handle.close()  # closing releases the lock; the empty .lock file stays (harmless)


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
