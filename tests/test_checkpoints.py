import hashlib
import importlib.util
import io
import os
import time
from pathlib import Path

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
    first = checkpoints.load_or_train("toy", {"lr": 0.1}, net, lambda: None, verbose=False)
    again = checkpoints.load_or_train("toy", {"lr": 0.2}, net, lambda: None, verbose=False)
    assert again.status == "trained" and again.path != first.path
    with pytest.raises(tl.CheckpointError, match="different configuration.*lr"):
        checkpoints.read_checkpoint(first.path, checkpoints.cache_key({"lr": 0.2}, lambda: None, net)[0])


def test_corrupt_checkpoint_is_reported_and_rebuilt():
    net = _net()
    cfg = {"lr": 0.1}

    def train():
        return None

    path = checkpoints.load_or_train("toy", cfg, net, train, verbose=False).path
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(tl.CheckpointError, match="corrupt"):
        checkpoints.read_checkpoint(path)
    with pytest.warns(UserWarning, match="corrupt.*Rebuilding"):
        result = checkpoints.load_or_train("toy", cfg, net, train, verbose=False)
    assert result.status == "trained" and result.path == path
    checkpoints.read_checkpoint(path, checkpoints.cache_key(cfg, train, net)[0])  # healthy again


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


def _write_module(folder, name, body):
    """A module of the reader's own, on disk, so that its functions have source."""
    import importlib
    import sys

    (folder / f"{name}.py").write_text(body)
    sys.path.insert(0, str(folder))
    try:
        sys.modules.pop(name, None)
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))


def test_editing_a_training_function_retrains(tmp_path):
    """The cache key covers the source of the training code, also of the functions it calls."""
    net = _net()
    body = "def step(net):\n    return {{'loss': {loss}}}\n\n\ndef train(net):\n    return step(net)\n"
    v1 = _write_module(tmp_path, "reader_code_v1", body.format(loss=1.0))
    v1_again = _write_module(tmp_path, "reader_code_v1", body.format(loss=1.0))   # re-imported, unchanged
    v2 = _write_module(tmp_path, "reader_code_v1", body.format(loss=12.5))   # the callee edited
    first = checkpoints.load_or_train("toy", {"steps": 1}, net, lambda: v1.train(net), verbose=False)
    again = checkpoints.load_or_train("toy", {"steps": 1}, net, lambda: v1_again.train(net), verbose=False)
    edited = checkpoints.load_or_train("toy", {"steps": 1}, net, lambda: v2.train(net), verbose=False)
    assert (first.status, again.status, edited.status) == ("trained", "loaded", "trained")
    assert edited.path != first.path and edited.extra == {"loss": 12.5}
    assert {"reader_code_v1.step", "reader_code_v1.train"} <= set(first.code)


def test_code_fingerprint_follows_library_callees_and_model_classes():
    from tutorial_lib import gan

    digest, names = checkpoints.code_fingerprint(gan.pretrained_digits_gan)
    assert "tutorial_lib.gan.train_gan" in names and "tutorial_lib.gan.build_gan" in names
    assert "tutorial_lib.gan.Generator" in names and "tutorial_lib.data.load_digits" in names
    assert not any(n.startswith("torch") for n in names)
    # it caches the GAN through load_or_train: the cache's own code is not part of the key
    assert not any(n.startswith(("tutorial_lib.checkpoints.", "tutorial_lib.fingerprint.")) for n in names)
    assert checkpoints.code_fingerprint(gan.pretrained_digits_gan)[0] == digest  # deterministic


def test_retrain_switch_ignores_the_cache(monkeypatch):
    calls = []
    net = _net()

    def train():
        calls.append(1)

    checkpoints.load_or_train("toy", {"a": 1}, net, train, verbose=False)
    assert checkpoints.load_or_train("toy", {"a": 1}, net, train, verbose=False).status == "loaded"
    assert checkpoints.load_or_train("toy", {"a": 1}, net, train, retrain=True, verbose=False).status == "trained"
    monkeypatch.setenv("TUTORIAL_RETRAIN", "1")
    assert checkpoints.retrain_requested()
    assert checkpoints.load_or_train("toy", {"a": 1}, net, train, verbose=False).status == "trained"
    monkeypatch.delenv("TUTORIAL_RETRAIN")
    try:
        assert checkpoints.set_retrain(True) is True
        assert checkpoints.load_or_train("toy", {"a": 1}, net, train, verbose=False).status == "trained"
    finally:
        checkpoints.set_retrain(False)
    assert checkpoints.load_or_train("toy", {"a": 1}, net, train, verbose=False).status == "loaded"
    assert len(calls) == 4


def test_two_module_checkpoint_with_one_bad_module_loads_neither(tmp_path):
    a, b = _net(0), _net(1)
    path = checkpoints.save_checkpoint(tmp_path / "two.pt", {"a": a, "b": b}, {"k": 1})
    payload = checkpoints.read_checkpoint(path)
    payload["state"]["b"]["0.weight"] = torch.zeros(5, 3)      # the second module no longer fits
    fresh_a, fresh_b = _net(2), _net(3)
    before = [p.clone() for p in (*fresh_a.parameters(), *fresh_b.parameters())]
    with pytest.raises(tl.CheckpointError, match="'b'"):
        checkpoints.load_into({"a": fresh_a, "b": fresh_b}, payload)
    after = list((*fresh_a.parameters(), *fresh_b.parameters()))
    assert all(torch.equal(x, y) for x, y in zip(before, after))   # the first module was not loaded either
    payload["state"]["b"]["0.weight"] = torch.zeros(4, 3, dtype=torch.complex64)   # never cast silently
    with pytest.raises(tl.CheckpointError, match="complex64"):
        checkpoints.load_into({"a": fresh_a, "b": fresh_b}, payload)
    payload["state"]["b"]["0.weight"] = torch.zeros(4, 3)

    def broken_load(*args, **kwargs):   # copies part of the weights, then fails
        with torch.no_grad():
            fresh_b[0].weight.zero_()
        raise RuntimeError("disk read error")

    fresh_b.load_state_dict = broken_load   # fits in every check, fails while loading: a is put back
    with pytest.raises(tl.CheckpointError, match="no module was changed"):
        checkpoints.load_into({"a": fresh_a, "b": fresh_b}, payload)
    assert all(torch.equal(x, y) for x, y in zip(before, (*fresh_a.parameters(), *fresh_b.parameters())))


def test_a_shared_cache_is_read_but_never_written(tmp_path, monkeypatch):
    """A lecturer's read-only cache serves every student; what a student trains goes to their own cache."""
    from torch import nn

    def train_into(net):
        def train():
            with torch.no_grad():
                net.weight.fill_(0.5)
            return {"trained": True}
        return train

    shared, own = tmp_path / "shared", tmp_path / "own"
    monkeypatch.setenv("TUTORIAL_CACHE", str(shared))
    monkeypatch.delenv("TUTORIAL_SHARED_CACHE", raising=False)
    net = nn.Linear(2, 2)
    assert checkpoints.load_or_train("lin", {"a": 1}, net, train_into(net), verbose=False).status == "trained"
    before = sorted((p.name, p.stat().st_mtime_ns) for p in shared.iterdir())
    monkeypatch.setenv("TUTORIAL_CACHE", str(own))
    monkeypatch.setenv("TUTORIAL_SHARED_CACHE", str(shared))
    fresh = nn.Linear(2, 2)
    result = checkpoints.load_or_train("lin", {"a": 1}, fresh, train_into(fresh), verbose=False)
    assert result.status == "loaded" and result.path.parent == shared and float(fresh.weight[0, 0].detach()) == 0.5
    other = nn.Linear(2, 2)  # a configuration the shared cache lacks: trained into the student's own cache
    result = checkpoints.load_or_train("lin", {"a": 2}, other, train_into(other), verbose=False)
    assert result.status == "trained" and result.path.parent == own
    assert sorted((p.name, p.stat().st_mtime_ns) for p in shared.iterdir()) == before


FINGERPRINT_FIXTURE = '''
import functools


def helper(x, scale=0.5):
    """A docstring."""
    # a comment
    table = {k: v for k, v in zip("ab", (1, 2))}
    return [scale * x ** 2 + table["a"], f"{x:.3f}", (lambda y: y - 1)(x)]


@functools.lru_cache(maxsize=None)
def cached(n):
    def inner(m):
        """Inner docstring."""
        return m + n
    return inner(3)
'''


def _fixture_module(tmp_path, name, source):
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fingerprint_ignores_docstrings_and_comments_and_sees_constants_and_operators(tmp_path):
    from tutorial_lib import fingerprint

    base = _fixture_module(tmp_path, "fp_base", FINGERPRINT_FIXTURE)
    text = fingerprint.function_text(base.helper)
    assert text.startswith('["ast"')
    for i, (edit, same) in enumerate([
            (('"""A docstring."""', '"""Another docstring, longer."""'), True),
            (("# a comment", "# another comment"), True),
            (("scale * x ** 2", "scale * x**2"), True),                 # formatting
            (("scale=0.5", "scale=0.25"), False),                       # a constant
            (("scale * x ** 2 +", "scale * x ** 2 -"), False),          # an operator
            (('f"{x:.3f}"', 'f"{x:.4f}"'), False)]):                     # inside an f-string
        edited = _fixture_module(tmp_path, f"fp_edit{i}", FINGERPRINT_FIXTURE.replace(*edit))
        assert (fingerprint.function_text(edited.helper) == text) is same, edit
    # the pinned value: the same code gives the same key on every machine and Python version
    assert hashlib.sha256(text.encode()).hexdigest()[:16] == FINGERPRINT_PIN


FINGERPRINT_PIN = "da4c352f5aa64d13"


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_fingerprint_is_the_same_under_other_python_versions(tmp_path, version):
    """The fingerprint module needs only the standard library: run it under another interpreter."""
    import shutil
    import subprocess

    from tutorial_lib import fingerprint

    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = sorted(str(p / "bin" / "python3") for p in pyenv_root.glob(f"{version}.*"))
    candidates.append(shutil.which(f"python{version}"))

    def works(c):
        try:
            return bool(c) and subprocess.run([c, "-c", "pass"], capture_output=True, timeout=30).returncode == 0
        except OSError:
            return False
    python = next((c for c in candidates if works(c)), None)
    if python is None:
        pytest.skip(f"no Python {version} on this machine")
    (tmp_path / "fp_fixture.py").write_text(FINGERPRINT_FIXTURE)
    script = (f"import importlib.util, sys; sys.path.insert(0, {str(tmp_path)!r})\n"
              f"spec = importlib.util.spec_from_file_location('fp', {fingerprint.__file__!r})\n"
              "fp = importlib.util.module_from_spec(spec); spec.loader.exec_module(fp)\n"
              "import fp_fixture\n"
              "print(fp.function_text(fp_fixture.helper)); print(fp.function_text(fp_fixture.cached.__wrapped__))\n")
    out = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=60, check=True,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}).stdout.splitlines()
    here = _fixture_module(tmp_path, "fp_fixture_here", FINGERPRINT_FIXTURE)
    assert out == [fingerprint.function_text(here.helper), fingerprint.function_text(here.cached.__wrapped__)]


def test_a_class_cache_is_packed_with_checksums_unpacked_and_read_as_the_shared_cache(tmp_path, monkeypatch, capsys):
    from tutorial_lib import classcache

    lecturer, students, own = tmp_path / "lecturer", tmp_path / "class", tmp_path / "own"
    monkeypatch.setenv("TUTORIAL_CACHE", str(lecturer))
    monkeypatch.delenv("TUTORIAL_SHARED_CACHE", raising=False)

    def train_into(net):
        def train():
            with torch.no_grad():
                net.weight.fill_(0.25)
        return train

    net = nn.Linear(2, 2)
    checkpoints.load_or_train("toy", {"a": 1}, net, train_into(net), verbose=False)
    archive = tmp_path / "class-cache.tar.gz"
    assert classcache.main(["pack", str(lecturer), str(archive)]) == 0
    assert classcache.main(["unpack", str(archive), str(students)]) == 0
    assert "TUTORIAL_SHARED_CACHE=" in capsys.readouterr().out
    monkeypatch.setenv("TUTORIAL_CACHE", str(own))
    monkeypatch.setenv("TUTORIAL_SHARED_CACHE", str(students))
    fresh = nn.Linear(2, 2)
    result = checkpoints.load_or_train("toy", {"a": 1}, fresh, train_into(fresh), verbose=False)
    assert result.status == "loaded" and result.path.parent == students
    assert float(fresh.weight[0, 0].detach()) == 0.25 and not any(own.glob("*.pt"))
    # a damaged archive is refused and leaves nothing behind
    import tarfile
    damaged = tmp_path / "damaged.tar.gz"
    with tarfile.open(archive) as src, tarfile.open(damaged, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name.endswith(".pt"):
                data = data[:-1] + bytes([data[-1] ^ 1])
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    with pytest.raises(tl.TutorialError, match="checksum"):
        classcache.unpack(damaged, tmp_path / "elsewhere")
    assert not any((tmp_path / "elsewhere").glob("*.pt"))
    with pytest.raises(tl.TutorialError, match="No checkpoints"):
        classcache.pack(tmp_path / "empty", tmp_path / "x.tar.gz")


def _train_in_process(cache, log, delay):
    """A process that needs the 'shared' model: trains it (slowly, logging it) unless the cache has it."""
    import time as _time

    os.environ["TUTORIAL_CACHE"] = cache
    net = _net()

    def train():
        with open(log, "a") as handle:
            handle.write("trained\n")
        _time.sleep(delay)
        with torch.no_grad():
            net[0].weight.fill_(0.25)

    return checkpoints.load_or_train("shared", {"steps": 1}, net, train, verbose=False).status


def test_two_processes_that_need_the_same_model_train_it_once(tmp_path):
    import concurrent.futures as futures
    import multiprocessing

    log = tmp_path / "log.txt"
    context = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        first = pool.submit(_train_in_process, str(tmp_path / "cache"), str(log), 3.0)
        deadline = time.monotonic() + 60
        while not log.exists() and time.monotonic() < deadline:  # the first process holds the lock and trains
            time.sleep(0.05)
        second = pool.submit(_train_in_process, str(tmp_path / "cache"), str(log), 0.0)
        statuses = sorted([first.result(timeout=60), second.result(timeout=60)])
    assert statuses == ["loaded", "trained"] and log.read_text() == "trained\n"
    # one checkpoint; the lock file lives in .locks/, out of the way of listing, packing and clearing
    assert len(checkpoints.list_cache()) == 1 and [p.name for p in (tmp_path / "cache").iterdir()
                                                   if not p.name.startswith(".")] == [checkpoints.list_cache()[0][0]]
