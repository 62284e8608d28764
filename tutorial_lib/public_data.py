"""Public data sets and weights: download with SHA-256 verification, clear messages offline.

The notebooks run offline at ``smoke`` and ``laptop`` on embedded data (:mod:`tutorial_lib.data`).
The larger public sets used at ``gpu`` are fetched once by the scripts in ``data_scripts/``::

    python data_scripts/fetch_mnist.py            # MNIST, 4 files, about 11 MB

and read from ``$TUTORIAL_DATA`` (default ``~/.cache/tutorial_lib/data``). A missing set raises
:class:`DatasetMissing` with the exact command (and the manual steps when there is no network).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DatasetMissing, TutorialError

ENV_VAR = "TUTORIAL_DATA"


def data_dir() -> Path:
    """Where public data sets live: ``$TUTORIAL_DATA`` or ``~/.cache/tutorial_lib/data``."""
    root = os.environ.get(ENV_VAR)
    if root:
        return Path(root).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tutorial_lib" / "data"


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file: where it comes from and the SHA-256 it must have.

    ``sha256`` is the full digest; where only a prefix is published (torchvision's weight files
    carry the first hex digits of their SHA-256 in their name), give that prefix.
    """

    name: str
    urls: tuple[str, ...]
    sha256: str

    def matches(self, digest: str) -> bool:
        return digest.startswith(self.sha256.lower())


def verify(path: str | os.PathLike, remote: RemoteFile) -> None:
    digest = sha256_of(path)
    if not remote.matches(digest):
        raise TutorialError(
            f"Checksum mismatch for {Path(path).name}: SHA-256 {digest} does not match the expected "
            f"{remote.sha256}. The file is corrupt or not the published one; delete it and fetch again."
        )


def fetch(remote: RemoteFile, folder: str | os.PathLike, timeout: float = 60.0) -> Path:
    """Download ``remote`` into ``folder`` (trying each mirror), verify its SHA-256, return the path.

    An existing file with the right checksum is kept. Without network, raise :class:`DatasetMissing`
    with the manual steps.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / remote.name
    if target.exists():
        verify(target, remote)
        return target
    errors = []
    for url in remote.urls:
        fd, tmp = tempfile.mkstemp(prefix=remote.name + ".", suffix=".part", dir=folder)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                shutil.copyfileobj(response, out)
            verify(tmp, remote)
            os.replace(tmp, target)
            return target
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            errors.append(f"{url}: {getattr(err, 'reason', err)}")
        except TutorialError as err:
            errors.append(f"{url}: {err}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise DatasetMissing(
        f"Could not download {remote.name}.\n  " + "\n  ".join(errors) +
        f"\nIf this machine is offline, download the file on a connected machine from one of\n  "
        + "\n  ".join(remote.urls) +
        f"\nand copy it to {target} (its SHA-256 must start with {remote.sha256})."
    )


# --------------------------------------------------------------------------------------- MNIST
_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                  "https://storage.googleapis.com/cvdf-datasets/mnist/")
MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz",
                     "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train_labels": ("train-labels-idx1-ubyte.gz",
                     "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "test_images": ("t10k-images-idx3-ubyte.gz",
                    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz",
                    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}


def mnist_remote_files() -> list[RemoteFile]:
    return [RemoteFile(name, tuple(m + name for m in _MNIST_MIRRORS), sha)
            for name, sha in MNIST_FILES.values()]


def mnist_dir(root: str | os.PathLike | None = None) -> Path:
    """Where the four MNIST files live: the layout torchvision's ``MNIST`` class uses (``mnist/MNIST/raw``)."""
    return Path(root or data_dir()) / "mnist" / "MNIST" / "raw"


def fetch_mnist(root: str | os.PathLike | None = None) -> Path:
    """Download MNIST through torchvision first, else from the mirrors directly; verify every SHA-256.

    torchvision's downloader checks MD5 sums; the files it keeps are then checked against the
    published SHA-256 sums here, so both routes end with the same guarantee.
    """
    folder = mnist_dir(root)
    remotes = mnist_remote_files()
    if not all((folder / r.name).exists() for r in remotes):
        try:
            from torchvision.datasets import MNIST

            for train in (True, False):
                MNIST(str(folder.parent.parent), train=train, download=True)
        except Exception as err:  # offline, mirror down, or an old torchvision: use our own downloader
            print(f"torchvision could not download MNIST ({type(err).__name__}: {err}); trying the mirrors directly.")
    for remote in remotes:
        try:
            fetch(remote, folder)  # verifies a present file, downloads a missing one
        except DatasetMissing as err:
            names = ", ".join(r.name for r in remotes)
            raise DatasetMissing(f"{err}\nMNIST needs all four files in that folder: {names} "
                                 f"(SHA-256 sums in tutorial_lib/public_data.py).") from None
    return folder


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (MNIST's format; plain or gzip), validating its header."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as err:
        raise TutorialError(f"Cannot read {path}: {err}") from None
    if len(data) < 4:
        raise TutorialError(f"{path} is too short to be an IDX file.")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise TutorialError(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()}).")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise TutorialError(f"{path} is truncated: header says {shape}, found {body.size} values.")
    return body.reshape(shape)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write a uint8 array as an IDX file (gzip if the name ends in .gz); used by the tests."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as handle:
        handle.write(header + array.tobytes())
    return path


def load_mnist(root: str | os.PathLike | None = None, size: int = 28, verify_checksums: bool = True):
    """MNIST as a :class:`tutorial_lib.data.DigitsData` (values in [0, 1]).

    Raises :class:`DatasetMissing` with the fetch command when the files are not there.
    """
    import torch.nn.functional as F

    from .data import DigitsData

    folder = mnist_dir(root)
    paths = {key: folder / name for key, (name, _) in MNIST_FILES.items()}
    missing = [p.name for p in paths.values() if not p.exists()]
    if missing:
        raise DatasetMissing(
            f"MNIST is not in {folder} (missing: {', '.join(missing)}). Fetch it once with\n"
            f"    python data_scripts/fetch_mnist.py\n"
            f"or use the embedded digits (tutorial_lib.data.load_digits), which need no download."
        )
    if verify_checksums:
        for key, (name, sha) in MNIST_FILES.items():
            verify(paths[key], RemoteFile(name, (), sha))
    arrays = {key: read_idx(p) for key, p in paths.items()}
    for split in ("train", "test"):
        if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
            raise TutorialError(f"MNIST {split}: {len(arrays[f'{split}_images'])} images but "
                                f"{len(arrays[f'{split}_labels'])} labels.")

    def images(a: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1)
        if size != x.shape[-1]:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                              align_corners=False).clamp(0, 1)
        return x

    return DigitsData(images(arrays["train_images"]), torch.from_numpy(arrays["train_labels"].astype(np.int64)),
                      images(arrays["test_images"]), torch.from_numpy(arrays["test_labels"].astype(np.int64)),
                      size, tuple(range(10)), source=f"MNIST ({folder})")
