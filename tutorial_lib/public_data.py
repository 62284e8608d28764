"""Public data sets and weights through torchvision and torch, with clear messages offline.

The notebooks run offline at ``smoke`` and ``laptop`` on embedded data (:mod:`tutorial_lib.data`).
The larger public sets used at ``gpu`` are fetched once by the scripts in ``data_scripts/``::

    python data_scripts/fetch_mnist.py            # MNIST, 4 files, about 11 MB

* MNIST is read and downloaded by ``torchvision.datasets.MNIST`` (which checks its files' MD5
  sums when it downloads them), in torchvision's layout ``<root>/MNIST/raw``; ``root`` defaults to
  ``$TUTORIAL_DATA/mnist`` (``$TUTORIAL_DATA`` defaults to ``~/.cache/tutorial_lib/data``).
* Weight files are downloaded by ``torch.hub.download_url_to_file``, which checks the SHA-256
  prefix that torchvision's file names embed; :func:`check_sha256_prefix` re-checks a file on disk.

A missing set or file raises :class:`DatasetMissing` with the exact command, or with the address
and the folder to copy the file into by hand when there is no network.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from .errors import DatasetMissing, TutorialError

ENV_VAR = "TUTORIAL_DATA"
FETCH_MNIST = "python data_scripts/fetch_mnist.py"


def data_dir() -> Path:
    """Where public data sets live: ``$TUTORIAL_DATA`` or ``~/.cache/tutorial_lib/data``."""
    root = os.environ.get(ENV_VAR)
    if root:
        return Path(root).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tutorial_lib" / "data"


# --------------------------------------------------------------------------------------- weights
def check_sha256_prefix(path: str | os.PathLike, prefix: str, chunk: int = 1 << 20) -> str:
    """Check that the SHA-256 of ``path`` starts with ``prefix``; return the digest.

    torchvision's weight files carry that prefix in their name (``alexnet-owt-7be5be79.pth``).
    A mismatch raises :class:`TutorialError`: the file is corrupt or not the published one.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    value = digest.hexdigest()
    if not value.startswith(prefix.lower()):
        raise TutorialError(
            f"{path} has SHA-256 {value[:16]}..., expected a digest starting with {prefix}: the file is "
            f"corrupt or not the published one. Delete it and fetch it again."
        )
    return value


def download(url: str, folder: str | os.PathLike, hash_prefix: str, filename: str | None = None) -> Path:
    """Download ``url`` into ``folder`` with ``torch.hub.download_url_to_file``, which checks that
    the file's SHA-256 starts with ``hash_prefix`` before moving it into place; return the path.

    A file already there is re-checked, not downloaded again (a corrupt one raises
    :class:`TutorialError`). A failed download (no network, or a checksum mismatch) raises
    :class:`DatasetMissing` with the URL and the folder to copy the file into by hand.
    """
    folder = Path(folder)
    target = folder / (filename or url.rsplit("/", 1)[-1])
    if target.exists():
        check_sha256_prefix(target, hash_prefix)
        return target
    folder.mkdir(parents=True, exist_ok=True)
    manual = (f"download the file on a connected machine and copy it to\n    {target}\n"
              f"(its SHA-256 must start with {hash_prefix}).")
    try:
        torch.hub.download_url_to_file(url, str(target), hash_prefix=hash_prefix)
    except RuntimeError as err:  # torch.hub's checksum test: the partial file is already deleted
        raise DatasetMissing(f"Downloaded {url}, but the file failed its checksum ({err}); nothing was "
                             f"kept. Try again, or {manual}") from None
    except OSError as err:  # no network (URLError), HTTP error, disk full
        reason = getattr(err, "reason", None) or err
        raise DatasetMissing(f"Could not download {url}: {reason}\n"
                             f"If this machine is offline, {manual}") from None
    return target


# --------------------------------------------------------------------------------------- MNIST
def mnist_root(root: str | os.PathLike | None = None) -> Path:
    """The ``root`` that ``torchvision.datasets.MNIST`` gets: ``root`` or ``$TUTORIAL_DATA/mnist``.

    The files themselves are in ``<root>/MNIST/raw`` (torchvision's layout).
    """
    return Path(root).expanduser() if root is not None else data_dir() / "mnist"


def mnist_dir(root: str | os.PathLike | None = None) -> Path:
    """The folder that holds the four MNIST files: ``<root>/MNIST/raw``."""
    return mnist_root(root) / "MNIST" / "raw"


def mnist_available(root: str | os.PathLike | None = None) -> bool:
    """Whether the MNIST files that ``torchvision.datasets.MNIST`` reads are on disk."""
    from torchvision.datasets import MNIST

    raw = mnist_dir(root)
    # torchvision reads the unpacked files: the names of its resources without ".gz"
    return all((raw / Path(name).stem).is_file() for name, _ in MNIST.resources)


def _missing_message(root: Path) -> str:
    return (f"MNIST is not in {root / 'MNIST' / 'raw'}. Fetch it once with\n"
            f"    {FETCH_MNIST}\n"
            f"or use the embedded digits (tutorial_lib.data.load_digits), which need no download.")


def fetch_mnist(root: str | os.PathLike | None = None) -> Path:
    """Download MNIST with ``torchvision.datasets.MNIST(root, download=True)`` (both splits; torchvision
    checks the MD5 sums); return the folder of the files. Offline, raise :class:`DatasetMissing`."""
    from torchvision.datasets import MNIST

    root = mnist_root(root)
    for train in (True, False):
        try:
            MNIST(str(root), train=train, download=True)
        except (RuntimeError, OSError) as err:  # torchvision reports failed downloads as RuntimeError
            lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
            detail = "\n    ".join(lines[:8] + (["..."] if len(lines) > 8 else []))
            names = ", ".join(name for name, _ in MNIST.resources)
            mirrors = " or ".join(MNIST.mirrors)
            raise DatasetMissing(
                f"Could not download MNIST with torchvision:\n    {detail}\n"
                f"If this machine is offline, download {names} from {mirrors} on a connected machine, "
                f"copy them to\n    {root / 'MNIST' / 'raw'}\nand run {FETCH_MNIST} again (torchvision checks "
                f"their MD5 sums and unpacks them).\n"
                f"The embedded digits (tutorial_lib.data.load_digits) need no download."
            ) from None
    return mnist_dir(root)


def load_mnist(root: str | os.PathLike | None = None, size: int = 28):
    """MNIST (60,000 train / 10,000 test) as a :class:`tutorial_lib.data.DigitsData`, values in [0, 1].

    Read by ``torchvision.datasets.MNIST(root, train=..., download=False)``. ``size`` != 28 resizes
    bilinearly with antialiasing. Raises :class:`DatasetMissing` with the fetch command when the
    files are not there.
    """
    import torch.nn.functional as F
    from torchvision.datasets import MNIST

    from .data import DigitsData

    if not isinstance(size, int) or size < 4:
        raise TutorialError(f"size must be an integer >= 4, got {size!r}.")
    root = mnist_root(root)
    if not mnist_available(root):
        raise DatasetMissing(_missing_message(root))
    splits = {}
    for train in (True, False):
        try:
            dataset = MNIST(str(root), train=train, download=False)
        except RuntimeError:  # "Dataset not found"
            raise DatasetMissing(_missing_message(root)) from None
        except (AssertionError, ValueError, TypeError, OSError) as err:
            raise TutorialError(f"Cannot read MNIST in {root / 'MNIST' / 'raw'} ({type(err).__name__}: {err}): "
                                f"a file is truncated or corrupt. Delete the folder and run {FETCH_MNIST}.") from None
        x = dataset.data.to(torch.float32).div(255.0).unsqueeze(1)
        y = dataset.targets.to(torch.int64)
        if len(x) != len(y):
            raise TutorialError(f"MNIST {'train' if train else 'test'}: {len(x)} images but {len(y)} labels.")
        if size != x.shape[-1]:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        splits[train] = (x.contiguous(), y)
    resized = "" if size == 28 else f", resized to {size}x{size} (bilinear, antialiased)"
    return DigitsData(*splits[True], *splits[False], size, tuple(range(10)),
                      source=f"MNIST via torchvision.datasets.MNIST ({root}; 28x28, 256 grey levels{resized})",
                      x_val=torch.empty(0, 1, size, size))
