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
