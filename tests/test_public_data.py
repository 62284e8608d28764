import hashlib
import struct
import urllib.error

import numpy as np
import pytest
import torch

import tutorial_lib as tl
from tutorial_lib import data, gan, models
from tutorial_lib import public_data as pd_

# The unpacked files torchvision.datasets.MNIST reads from <root>/MNIST/raw.
RAW_NAMES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def _idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file (MNIST's format): magic 0x0000 0x08 ndim, big-endian sizes, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _fake_mnist(root, n_train=20, n_test=10):
    """A tiny MNIST-format folder: <root>/MNIST/raw with the four unpacked IDX files."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28)),
        "train_labels": np.arange(n_train) % 10,
        "test_images": rng.integers(0, 256, (n_test, 28, 28)),
        "test_labels": rng.permutation(np.arange(n_test) % 10),
    }
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for key, name in RAW_NAMES.items():
        (raw / name).write_bytes(_idx_bytes(arrays[key]))
    return arrays


def test_fixture_names_are_what_torchvision_reads():
    from torchvision.datasets import MNIST

    assert {name.removesuffix(".gz") for name, _ in MNIST.resources} == set(RAW_NAMES.values())


def test_load_mnist_reads_the_torchvision_layout(tmp_path):
    arrays = _fake_mnist(tmp_path)
    assert pd_.mnist_available(tmp_path) and pd_.mnist_dir(tmp_path) == tmp_path / "MNIST" / "raw"
    d = pd_.load_mnist(tmp_path)
    assert isinstance(d, data.DigitsData) and d.size == 28 and d.classes == tuple(range(10))
    assert d.x_train.shape == (20, 1, 28, 28) and d.x_test.shape == (10, 1, 28, 28)
    assert d.x_train.dtype == torch.float32 and 0.0 <= float(d.x_train.min()) and float(d.x_train.max()) <= 1.0
    assert torch.equal(d.y_train, torch.from_numpy(arrays["train_labels"].astype(np.int64)))
    assert torch.equal(d.y_test, torch.from_numpy(arrays["test_labels"].astype(np.int64)))
    assert float(d.x_train[3, 0, 5, 7]) == pytest.approx(arrays["train_images"][3, 5, 7] / 255)
    assert "MNIST" in d.source and str(tmp_path) in d.source and "train / test 20 / 10" in d.describe()
    small = pd_.load_mnist(tmp_path, size=16)
    assert small.x_train.shape == (20, 1, 16, 16) and small.x_test.shape == (10, 1, 16, 16)
    assert 0.0 <= float(small.x_train.min()) and float(small.x_train.max()) <= 1.0 and "16x16" in small.source
    assert small.x_train.mean() == pytest.approx(float(d.x_train.mean()), abs=0.02)  # a resize, not a crop


def test_load_mnist_default_root_is_under_tutorial_data(tmp_path, monkeypatch):
    monkeypatch.setenv(pd_.ENV_VAR, str(tmp_path))
    assert pd_.data_dir() == tmp_path and pd_.mnist_root() == tmp_path / "mnist"
    _fake_mnist(tmp_path / "mnist")
    assert len(pd_.load_mnist().y_train) == 20


def test_missing_mnist_says_how_to_fetch(tmp_path):
    assert not pd_.mnist_available(tmp_path)
    with pytest.raises(tl.DatasetMissing, match="python data_scripts/fetch_mnist.py") as info:
        pd_.load_mnist(tmp_path)
    assert str(tmp_path / "MNIST" / "raw") in str(info.value)
    arrays = _fake_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / RAW_NAMES["test_labels"]).unlink()  # one file short is still missing
    with pytest.raises(tl.DatasetMissing, match="fetch_mnist"):
        pd_.load_mnist(tmp_path)
    assert arrays  # the other files were there


def test_corrupt_mnist_file_is_a_clear_error(tmp_path):
    _fake_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / RAW_NAMES["train_images"]).write_bytes(b"\x00\x00\x01\x03garbage")
    with pytest.raises(tl.TutorialError, match="(?s)corrupt.*fetch_mnist"):
        pd_.load_mnist(tmp_path)


def test_fetch_mnist_uses_torchvision_and_fails_clearly_offline(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    class Offline:
        resources, mirrors = torchvision.datasets.MNIST.resources, torchvision.datasets.MNIST.mirrors

        def __init__(self, root, train=True, download=False):
            calls.append((root, train, download))
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://x/, got:\n"
                               "<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    with pytest.raises(tl.DatasetMissing) as info:
        pd_.fetch_mnist(tmp_path)
    message = str(info.value)
    assert calls == [(str(tmp_path), True, True)]
    assert "name resolution" in message and str(tmp_path / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte.gz" in message and "need no download" in message

    class Works:
        resources, mirrors = Offline.resources, Offline.mirrors

        def __init__(self, root, train=True, download=False):
            calls.append((root, train, download))

    calls.clear()
    monkeypatch.setattr(torchvision.datasets, "MNIST", Works)
    assert pd_.fetch_mnist(tmp_path) == tmp_path / "MNIST" / "raw"
    assert calls == [(str(tmp_path), True, True), (str(tmp_path), False, True)]


# --------------------------------------------------------------------------- training digits
def test_training_digits_fall_back_to_embedded_digits(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(pd_.ENV_VAR, str(tmp_path))
    d = data.load_training_digits("mnist", 28, exclude=[3])
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "MNIST not found in" in out and str(tmp_path / "mnist") in out
    assert "embedded digits upsampled to 28×28" in out and "python data_scripts/fetch_mnist.py" in out
    reference = data.load_digits(size=28, exclude=[3])
    assert torch.equal(d.x_train, reference.x_train) and 3 not in d.classes
    assert data.training_dataset("mnist", 28, verbose=False) == "digits" and capsys.readouterr().out == ""
    data.load_training_digits("digits", 8)
    assert capsys.readouterr().out == ""  # the embedded digits asked for: nothing to say


def test_training_digits_use_mnist_when_present(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(pd_.ENV_VAR, str(tmp_path))
    _fake_mnist(tmp_path / "mnist")
    assert data.training_dataset("mnist") == "mnist"
    d = data.load_training_digits("mnist", 16)
    assert capsys.readouterr().out == "" and d.source.startswith("MNIST")
    assert d.x_train.shape == (20, 1, 16, 16)
    some = data.load_training_digits("mnist", 28, exclude=[0], classes=[0, 1, 2])
    assert some.classes == (1, 2) and set(some.y_train.tolist()) == {1, 2} and set(some.y_test.tolist()) == {1, 2}
    assert len(some.y_train) == 4 and some.x_train.shape[1:] == (1, 28, 28)
    with pytest.raises(tl.TutorialError, match="0-9"):
        data.load_training_digits("mnist", 28, exclude=[10])


def test_unknown_training_dataset_lists_the_valid_ones():
    with pytest.raises(tl.TutorialError, match="(?s)'fashion'.*'digits'.*'mnist'"):
        data.load_training_digits("fashion", 28)
    with pytest.raises(tl.TutorialError, match="'digits', 'mnist'"):
        models.pretrained_classifier(8, 1, 0, dataset="MNIST", verbose=False)


def test_cache_config_names_the_data_actually_used(tmp_path, monkeypatch, capsys):
    from tutorial_lib import checkpoints

    monkeypatch.setenv(checkpoints.ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.setenv(pd_.ENV_VAR, str(tmp_path / "data"))
    assert gan.DIGITS_GAN_PROFILES["gpu"]["dataset"] == "mnist" and gan.DIGITS_GAN_PROFILES["gpu"]["digit_size"] == 28
    assert {gan.DIGITS_GAN_PROFILES[p]["dataset"] for p in ("smoke", "laptop")} == {"digits"}
    prof = dict(dataset="mnist", digit_size=8, z_dim=4, g_hidden=[8], d_hidden=[8], gan_steps=2, gan_batch=8,
                gan_lr=1e-3, gan_ema=0.0, gan_r1=0.0)
    config = gan.digits_gan_config(prof, seed=0)
    assert config["dataset"] == "mnist"
    _, _, fallback = gan.pretrained_digits_gan(config, verbose=True)
    assert "MNIST not found" in capsys.readouterr().out
    assert checkpoints.read_checkpoint(fallback.path)["config"]["dataset"] == "digits"
    _fake_mnist(tmp_path / "data" / "mnist")
    _, _, real = gan.pretrained_digits_gan(config, verbose=False)
    assert real.status == "trained" and real.path != fallback.path
    assert checkpoints.read_checkpoint(real.path)["config"]["dataset"] == "mnist"
    assert models.classifier_config(8, 2, 0, "mnist") != models.classifier_config(8, 2, 0)


# --------------------------------------------------------------------------------- weights
def test_sha256_prefix_check_accepts_good_and_rejects_corrupt(tmp_path):
    payload = b"hello tutorial"
    digest = hashlib.sha256(payload).hexdigest()
    good = tmp_path / f"weights-{digest[:8]}.pth"
    good.write_bytes(payload)
    assert pd_.check_sha256_prefix(good, digest[:8]) == digest
    assert pd_.download("https://example.invalid/x.pth", tmp_path, digest[:8], good.name) == good  # kept, no network
    good.write_bytes(payload + b"!")
    with pytest.raises(tl.TutorialError, match="corrupt"):
        pd_.check_sha256_prefix(good, digest[:8])
    with pytest.raises(tl.TutorialError, match="corrupt"):
        pd_.download("https://example.invalid/x.pth", tmp_path, digest[:8], good.name)


def test_download_through_torch_hub_and_offline_message(tmp_path, monkeypatch):
    payload = b"pretend weights"
    prefix = hashlib.sha256(payload).hexdigest()[:8]
    url = f"https://download.pytorch.org/models/net-{prefix}.pth"
    seen = []

    def copy(src_url, dst, hash_prefix=None, progress=True):
        seen.append((src_url, hash_prefix))
        with open(dst, "wb") as handle:
            handle.write(payload)

    monkeypatch.setattr(torch.hub, "download_url_to_file", copy)
    path = pd_.download(url, tmp_path / "hub", prefix)
    assert path == tmp_path / "hub" / f"net-{prefix}.pth" and path.read_bytes() == payload
    assert seen == [(url, prefix)]

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(tl.DatasetMissing) as info:
        pd_.download(url.replace("net-", "other-"), tmp_path / "offline", prefix)
    message = str(info.value)
    assert "name resolution" in message and "offline" in message and url.replace("net-", "other-") in message
    assert str(tmp_path / "offline") in message and prefix in message

    def bad_hash(*args, **kwargs):
        raise RuntimeError(f'invalid hash value (expected "{prefix}", got "0000")')

    monkeypatch.setattr(torch.hub, "download_url_to_file", bad_hash)
    with pytest.raises(tl.DatasetMissing, match="checksum"):
        pd_.download(url.replace("net-", "third-"), tmp_path / "bad", prefix)
    assert list((tmp_path / "bad").iterdir()) == []


def test_pretrained_weights_fetch_through_torch_hub(tmp_path, monkeypatch):
    from tutorial_lib import isp

    spec = isp.PRETRAINED_FILES["alexnet"]
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        def corrupt_copy(url, dst, hash_prefix=None, progress=True):
            with open(dst, "wb") as handle:
                handle.write(b"not the published weights")

        monkeypatch.setattr(torch.hub, "download_url_to_file", corrupt_copy)
        assert spec.fetch() == isp.hub_checkpoint_dir() / spec.filename
        with pytest.raises(tl.TutorialError, match="(?s)corrupt.*fetch_feature_weights"):
            isp.pretrained_path("alexnet")  # the re-check refuses what a real download would have refused
    finally:
        torch.hub.set_dir(old)
