import os

import pytest
import torch

import tutorial_lib as tl
from tutorial_lib import data, models, runtime


def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "_mps_available", lambda: False)
    assert tl.pick_device("auto") == torch.device("cpu")
    assert "no GPU found" in capsys.readouterr().out
    monkeypatch.setattr(runtime, "_mps_available", lambda: True)
    assert tl.pick_device("auto", verbose=False) == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Fake GPU")
    assert tl.pick_device("auto", verbose=False) == torch.device("cuda")


def test_bad_device_requests(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(tl.TutorialError, match="no CUDA GPU"):
        tl.pick_device("cuda")
    with pytest.raises(tl.TutorialError, match="Unknown device"):
        tl.pick_device("tpu")


def test_seed_everything_makes_draws_repeatable():
    tl.seed_everything(7)
    a = torch.rand(3)
    tl.seed_everything(7)
    assert torch.equal(a, torch.rand(3))
    assert torch.equal(torch.rand(2, generator=tl.make_generator(1)), torch.rand(2, generator=tl.make_generator(1)))
    with pytest.raises(tl.TutorialError):
        tl.seed_everything("7")  # type: ignore[arg-type]


def _train_once(seed: int) -> tuple[float, torch.Tensor]:
    tl.seed_everything(seed)
    digits = data.load_digits()
    net = models.DigitClassifier()
    out = models.train_classifier(net, digits.x_train[:256], digits.y_train[:256], epochs=2, seed=seed)
    return out.history["loss"][-1], net.out.weight.detach().clone()


def test_same_seed_same_numbers():
    loss_a, w_a = _train_once(3)
    loss_b, w_b = _train_once(3)
    assert loss_a == loss_b and torch.equal(w_a, w_b)
    loss_c, _ = _train_once(4)
    assert loss_c != loss_a


def test_progress_is_quiet_under_smoke_in_ci(monkeypatch):
    from tutorial_lib.profiles import ProfileSet

    profiles = ProfileSet("q", smoke={}, laptop={}, gpu={})
    monkeypatch.delenv("TUTORIAL_QUIET", raising=False)
    monkeypatch.setenv("CI", "true")
    tl.start(profiles, "smoke", device="cpu")
    assert runtime.quiet() and tl.progress(range(3)).disable
    profiles.resolve("laptop")  # resolving a profile elsewhere does not change it: start() says
    assert runtime.quiet()
    monkeypatch.delenv("CI")
    tl.start(profiles, "smoke", device="cpu")
    assert not runtime.quiet()
    monkeypatch.setenv("TUTORIAL_QUIET", "1")
    assert runtime.quiet()
    monkeypatch.setenv("CI", "true")
    tl.start(profiles, "laptop", device="cpu")
    monkeypatch.delenv("TUTORIAL_QUIET")
    assert not runtime.quiet()


def test_start_sets_up_a_notebook(monkeypatch, tmp_path):
    from tutorial_lib.profiles import ProfileSet

    monkeypatch.setenv("TUTORIAL_RESULTS_DIR", str(tmp_path))
    threads = torch.get_num_threads()
    profiles = ProfileSet("nb_q", smoke={"steps": 1}, laptop={"steps": 5}, gpu={"steps": 9})
    try:
        cfg, device, run = tl.start(profiles, "laptop", seed=3, device="cpu", threads=1)
        assert (cfg.name, cfg.steps, device.type, torch.get_num_threads()) == ("laptop", 5, "cpu", 1)
        assert run.notebook == "nb_q"
        first = torch.rand(3)
        tl.start(profiles, "laptop", seed=3, device="cpu")
        assert torch.equal(first, torch.rand(3))  # seeded
    finally:
        torch.set_num_threads(threads)
    for bad in (0, 1.5, True):
        with pytest.raises(tl.TutorialError, match="threads"):
            tl.start(profiles, "laptop", device="cpu", threads=bad)
    with pytest.raises(tl.ProfileError):
        tl.start(profiles, "laptopp")


def test_environment_report_and_version_check(capsys):
    report = tl.environment_report(profile="smoke")
    assert report["torch"] == torch.__version__.split("+")[0] or report["torch"].startswith(torch.__version__[:4])
    assert "profile" in capsys.readouterr().out
    tl.require_version("0.0.1")
    with pytest.raises(tl.TutorialError, match="make env"):
        tl.require_version("99.0")


def _smoke_gan_config(exclude=()):
    from tutorial_lib import gan

    cfg = tl.ProfileSet("in_parallel_test", smoke=dict(**gan.DIGITS_GAN_PROFILES["smoke"]),
                        laptop=dict(**gan.DIGITS_GAN_PROFILES["laptop"]),
                        gpu=dict(**gan.DIGITS_GAN_PROFILES["gpu"])).resolve("smoke")
    return dict(gan.digits_gan_config(cfg, 0), steps=60, exclude=list(exclude))


def test_in_parallel_trains_in_workers_what_one_thread_trains_here(monkeypatch, tmp_path):
    from functools import partial

    from tutorial_lib import checkpoints, gan

    monkeypatch.setenv("TUTORIAL_CACHE", str(tmp_path / "parallel"))
    calls = {"GAN": partial(gan.pretrained_digits_gan, _smoke_gan_config()),
             "without 1": partial(gan.pretrained_digits_gan, _smoke_gan_config([1]))}
    out = tl.in_parallel(calls, workers=2, desc=None)
    assert list(out) == ["GAN", "without 1"]
    assert [out[name][2].status for name in out] == ["trained", "trained"]
    # the same calls here, on one thread, into another cache: the same weights to the last bit
    monkeypatch.setenv("TUTORIAL_CACHE", str(tmp_path / "here"))
    here = tl.in_parallel(calls, workers=1, desc=None)
    for name in calls:
        for p, q in zip(out[name][0].parameters(), here[name][0].parameters()):
            assert torch.equal(p, q), name
    # everything cached now: loaded here, without starting a worker process
    monkeypatch.setenv("TUTORIAL_CACHE", str(tmp_path / "parallel"))

    def no_workers(*args, **kwargs):
        raise AssertionError("a worker process was started for a cached model")

    import concurrent.futures
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", no_workers)
    again = tl.in_parallel(calls, workers=2, desc=None)
    assert [again[name][2].status for name in again] == ["loaded", "loaded"]
    assert not checkpoints._cached_only["flag"]  # the load-only mode ends with the call


def test_in_parallel_rejects_bad_calls(monkeypatch, tmp_path):
    monkeypatch.setenv("TUTORIAL_CACHE", str(tmp_path))
    with pytest.raises(tl.TutorialError, match="non-empty mapping"):
        tl.in_parallel({})
    with pytest.raises(tl.TutorialError, match="not callable"):
        tl.in_parallel({"a": 3})
    with pytest.raises(tl.TutorialError, match="workers"):
        tl.in_parallel({"a": len}, workers=0)
    from tutorial_lib import checkpoints

    def make(name):  # a call that must train (nothing cached): a lambda, which no worker can receive
        return lambda: checkpoints.load_or_train(name, {"n": 1}, torch.nn.Linear(1, 1), lambda: None, verbose=False).status

    with pytest.raises(tl.TutorialError, match="cannot be sent to a worker"):
        tl.in_parallel({"a": make("a"), "b": make("b")}, workers=2, desc=None)
    assert tl.in_parallel({"a": make("a"), "b": make("b")}, workers=1, desc=None) == {"a": "trained", "b": "trained"}
    assert tl.in_parallel({"a": make("a"), "b": make("b")}, workers=2, desc=None) == {"a": "loaded", "b": "loaded"}
