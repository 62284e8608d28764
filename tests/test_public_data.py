import urllib.error

import numpy as np
import pytest
import torch

import tutorial_lib as tl
from tutorial_lib import public_data as pd_


def _fake_mnist(folder, n_train=12, n_test=5):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28)),
        "train_labels": rng.integers(0, 10, n_train),
        "test_images": rng.integers(0, 256, (n_test, 28, 28)),
        "test_labels": rng.integers(0, 10, n_test),
    }
    for key, (name, _) in pd_.MNIST_FILES.items():
        pd_.write_idx(folder / name, arrays[key])
    return arrays


def test_idx_round_trip_and_validation(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("x.idx", "x.gz"):
        assert np.array_equal(pd_.read_idx(pd_.write_idx(tmp_path / name, arr)), arr)
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x02ab")
    with pytest.raises(tl.TutorialError, match="unsigned-byte IDX"):
        pd_.read_idx(bad)
    short = tmp_path / "short.idx"
    short.write_bytes(pd_.write_idx(tmp_path / "ok.idx", arr).read_bytes()[:-5])
    with pytest.raises(tl.TutorialError, match="truncated"):
        pd_.read_idx(short)


def test_load_mnist_reads_real_format(tmp_path):
    arrays = _fake_mnist(pd_.mnist_dir(tmp_path))
    d = pd_.load_mnist(tmp_path, verify_checksums=False)
    assert d.x_train.shape == (12, 1, 28, 28) and d.x_test.shape == (5, 1, 28, 28)
    assert torch.equal(d.y_train, torch.from_numpy(arrays["train_labels"].astype(np.int64)))
    assert float(d.x_train[0, 0, 0, 0]) == pytest.approx(arrays["train_images"][0, 0, 0] / 255)
    assert pd_.load_mnist(tmp_path, size=16, verify_checksums=False).x_train.shape[-1] == 16
    with pytest.raises(tl.TutorialError, match="Checksum mismatch"):
        pd_.load_mnist(tmp_path)  # generated files are not the published ones


def test_missing_mnist_says_how_to_fetch(tmp_path):
    with pytest.raises(tl.DatasetMissing, match="data_scripts/fetch_mnist.py"):
        pd_.load_mnist(tmp_path)


def test_fetch_mnist_offline_fails_clearly(tmp_path, monkeypatch):
    import torchvision.datasets

    class Offline:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("Network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    monkeypatch.setattr(pd_.urllib.request, "urlopen", no_network)
    with pytest.raises(tl.DatasetMissing, match="(?s)Network is unreachable.*copy it to"):
        pd_.fetch_mnist(tmp_path)


def test_fetch_mnist_keeps_verified_files(tmp_path, monkeypatch):
    """Files already in place are verified, not downloaded again (here they fail the published checksum)."""
    _fake_mnist(pd_.mnist_dir(tmp_path))
    monkeypatch.setattr(pd_.urllib.request, "urlopen", lambda *a, **k: pytest.fail("no download expected"))
    with pytest.raises(tl.TutorialError, match="Checksum mismatch"):
        pd_.fetch_mnist(tmp_path)


def test_fetch_verifies_and_fails_clearly_offline(tmp_path, monkeypatch):
    payload = b"hello tutorial"
    import hashlib

    good = hashlib.sha256(payload).hexdigest()
    src = tmp_path / "src.bin"
    src.write_bytes(payload)
    remote = pd_.RemoteFile("file.bin", (src.as_uri(),), good)
    path = pd_.fetch(remote, tmp_path / "dl")
    assert path.read_bytes() == payload and pd_.fetch(remote, tmp_path / "dl") == path
    prefix = pd_.RemoteFile("p.bin", (src.as_uri(),), good[:8])
    assert pd_.fetch(prefix, tmp_path / "dl").exists()

    wrong = pd_.RemoteFile("wrong.bin", (src.as_uri(),), "0" * 64)
    with pytest.raises(tl.DatasetMissing, match="Checksum mismatch"):
        pd_.fetch(wrong, tmp_path / "dl")
    assert not (tmp_path / "dl" / "wrong.bin").exists()

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(pd_.urllib.request, "urlopen", offline)
    with pytest.raises(tl.DatasetMissing, match="(?s)offline.*copy it to"):
        pd_.fetch(pd_.mnist_remote_files()[0], tmp_path / "offline")
    assert list((tmp_path / "offline").iterdir()) == []
