import pytest
import torch
from torch import nn

import tutorial_lib as tl
from tutorial_lib import checkpoints


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUTORIAL_CACHE", str(tmp_path / "cache"))


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def test_cache_dir_follows_environment(tmp_path):
    assert checkpoints.cache_dir() == tmp_path / "cache" and (tmp_path / "cache").is_dir()


def test_load_or_train_trains_once_then_loads():
    calls = []

    def train():
        calls.append(1)
        with torch.no_grad():
            net[0].weight.fill_(0.5)
        return {"loss": 0.25}

    net = _net()
    first = checkpoints.load_or_train("toy", {"lr": 0.1, "steps": 3}, net, train, verbose=False)
    assert first.status == "trained" and first.extra == {"loss": 0.25} and len(calls) == 1
    other = _net(1)
    second = checkpoints.load_or_train("toy", {"lr": 0.1, "steps": 3}, other, train, verbose=False)
    assert second.status == "loaded" and len(calls) == 1
    assert torch.equal(other[0].weight, torch.full((4, 3), 0.5))
    assert second.extra == {"loss": 0.25} and second.train_seconds == pytest.approx(first.train_seconds, abs=1e-6)


def test_different_config_is_not_reused():
    net = _net()
    checkpoints.load_or_train("toy", {"lr": 0.1}, net, lambda: None, verbose=False)
    again = checkpoints.load_or_train("toy", {"lr": 0.2}, net, lambda: None, verbose=False)
    assert again.status == "trained"
    path = checkpoints.checkpoint_path("toy", {"lr": 0.1})
    with pytest.raises(tl.CheckpointError, match="different configuration.*lr"):
        checkpoints.read_checkpoint(path, {"lr": 0.2})


def test_corrupt_checkpoint_is_reported_and_rebuilt():
    net = _net()
    cfg = {"lr": 0.1}
    checkpoints.load_or_train("toy", cfg, net, lambda: None, verbose=False)
    path = checkpoints.checkpoint_path("toy", cfg)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(tl.CheckpointError, match="corrupt"):
        checkpoints.read_checkpoint(path)
    with pytest.warns(UserWarning, match="corrupt.*Rebuilding"):
        result = checkpoints.load_or_train("toy", cfg, net, lambda: None, verbose=False)
    assert result.status == "trained"
    checkpoints.read_checkpoint(path, cfg)  # healthy again


def test_foreign_file_and_missing_file():
    path = checkpoints.cache_dir() / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(tl.CheckpointError, match="not a tutorial_lib"):
        checkpoints.read_checkpoint(path)
    with pytest.raises(tl.CheckpointError, match="No checkpoint"):
        checkpoints.read_checkpoint(path.with_name("absent.pt"))


def test_checkpoint_that_does_not_fit_the_model():
    path = checkpoints.save_checkpoint(checkpoints.cache_dir() / "small.pt", _net(), {"a": 1})
    bigger = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(tl.CheckpointError, match=r"0.weight: stored \(4, 3\) vs model \(8, 3\)"):
        checkpoints.load_into(bigger, checkpoints.read_checkpoint(path))
    checkpoints.load_or_train("small", {"a": 1}, _net(), lambda: None, verbose=False)
    with pytest.warns(UserWarning, match="does not fit.*Rebuilding"):
        result = checkpoints.load_or_train("small", {"a": 1}, bigger, lambda: None, verbose=False)
    assert result.status == "trained"


def test_atomic_write_leaves_no_partial_file(monkeypatch):
    target = checkpoints.cache_dir() / "atomic.pt"

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", explode)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.save_checkpoint(target, _net(), {"a": 1})
    assert not target.exists() and list(checkpoints.cache_dir().iterdir()) == []


def test_several_modules_and_weights_only_loading():
    g, d = _net(0), _net(1)
    path = checkpoints.save_checkpoint(checkpoints.cache_dir() / "gan.pt", {"G": g, "D": d}, {"k": (1, 2)})
    payload = torch.load(path, weights_only=True)
    assert payload["config"] == {"k": [1, 2]}
    g2, d2 = _net(5), _net(6)
    checkpoints.load_into({"G": g2, "D": d2}, payload)
    assert torch.equal(g2[0].weight, g[0].weight) and torch.equal(d2[2].bias, d[2].bias)
    with pytest.raises(tl.CheckpointError, match="no weights for"):
        checkpoints.load_into({"E": g2}, payload)
    assert checkpoints.clear_cache("gan") == 1
