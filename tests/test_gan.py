"""Tests for tutorial_lib.gan: networks, training loop, EWC, state-dict arithmetic, the toy."""

import copy

import pytest
import torch

import tutorial_lib as tl
from tutorial_lib import checkpoints, gan, models


pytestmark = pytest.mark.usefixtures("one_thread")


def small_gan(size=8, z_dim=4):
    torch.manual_seed(0)
    return gan.Generator(z_dim, (1, size, size), (16,)), gan.Discriminator((1, size, size), (16,))


def test_generator_and_discriminator_shapes():
    G, D = small_gan()
    x = G(torch.randn(5, 4))
    assert x.shape == (5, 1, 8, 8)
    assert float(x.detach().min()) >= 0 and float(x.detach().max()) <= 1
    assert D(x).shape == (5,)
    toy = gan.Generator(3, (2,), (8,))
    assert toy(torch.randn(7, 3)).shape == (7, 2)


def test_wrong_shapes_raise_clear_errors():
    G, D = small_gan()
    with pytest.raises(tl.InputShapeError):
        G(torch.randn(5, 3))
    with pytest.raises(tl.InputShapeError):
        D(torch.rand(5, 1, 4, 4))
    with pytest.raises(tl.InputShapeError):
        gan.train_gan(G, D, torch.rand(10, 1, 4, 4), steps=1)
    with pytest.raises(tl.InputShapeError):
        gan.mode_stats(torch.randn(10, 3), [0])


def test_train_gan_runs_changes_weights_and_is_deterministic():
    data = torch.rand(32, 1, 8, 8)
    G1, D1 = small_gan()
    before = gan.clone_state(G1)
    hist = gan.train_gan(G1, D1, data, steps=5, batch_size=8, seed=3, desc=None, r1=1.0, ema=0.5)
    assert len(hist.history["d_loss"]) >= 1 and hist.seconds >= 0 and hist.cpu_seconds >= 0
    assert any(not torch.equal(before[k], v) for k, v in G1.state_dict().items())
    G2, D2 = small_gan()
    gan.train_gan(G2, D2, data, steps=5, batch_size=8, seed=3, desc=None, r1=1.0, ema=0.5)
    for k, v in G1.state_dict().items():
        assert torch.allclose(v, G2.state_dict()[k])
    with pytest.raises(tl.TutorialError):
        gan.train_gan(G2, D2, data, steps=1, ema=1.5, desc=None)
    with pytest.raises(tl.TutorialError):
        gan.train_gan(G2, D2, data[:0], steps=1, desc=None)


def test_fisher_and_ewc_penalty():
    G, D = small_gan()
    fisher = gan.fisher_diagonal(G, D, n=4, seed=0)
    assert set(fisher) == {k for k, _ in G.named_parameters()}
    assert all((f >= 0).all() for f in fisher.values())
    ref = gan.clone_state(G)
    assert float(gan.ewc_penalty(G, fisher, ref, 10.0).detach()) == 0.0
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.1)
    expected = 0.5 * 10.0 * sum(float((fisher[k] * 0.01).sum()) for k in fisher)
    assert float(gan.ewc_penalty(G, fisher, ref, 10.0).detach()) == pytest.approx(expected, rel=1e-4)
    bad = {k: v[..., :1] if v.ndim else v for k, v in fisher.items()}
    with pytest.raises(tl.InputShapeError):
        gan.ewc_penalty(G, bad, ref, 1.0)
    with pytest.raises(tl.TutorialError):
        gan.ewc_penalty(G, {}, ref, 1.0)


def test_state_arithmetic():
    a = {"net.0.weight": torch.ones(2, 2), "net.0.bias": torch.zeros(2), "net.2.weight": torch.full((1, 2), 2.0)}
    b = {k: torch.zeros_like(v) for k, v in a.items()}
    d = gan.state_difference(a, b)
    assert torch.equal(d["net.2.weight"], a["net.2.weight"])
    avg = gan.average_states([d, {k: -v for k, v in d.items()}])
    assert all(float(v.abs().max()) == 0 for v in avg.values())
    moved = gan.apply_direction(b, d, -0.5)
    assert torch.allclose(moved["net.0.weight"], -0.5 * torch.ones(2, 2))
    only = gan.apply_direction(b, d, 1.0, only=["net.2"])
    assert float(only["net.0.weight"].abs().max()) == 0 and torch.equal(only["net.2.weight"], a["net.2.weight"])
    assert gan.blocks(a) == ["net.0", "net.2"]
    norms = gan.direction_norms(d)
    assert norms["net.0"] == pytest.approx(2.0) and norms["net.2"] == pytest.approx(8 ** 0.5)
    with pytest.raises(tl.TutorialError):
        gan.apply_direction(b, d, 1.0, only=["net.9"])
    with pytest.raises(tl.TutorialError):
        gan.state_difference(a, {"x": torch.zeros(1)})
    with pytest.raises(tl.InputShapeError):
        gan.state_difference(a, {**b, "net.0.bias": torch.zeros(3)})
    with pytest.raises(tl.TutorialError):
        gan.average_states([])


def test_sweep_gamma_zero_reproduces_generator():
    G, _ = small_gan()
    theta = gan.clone_state(G)
    delta = {k: torch.randn_like(v) for k, v in theta.items()}
    z = gan.latents(6, 4, seed=1)
    rows = gan.sweep(G, theta, delta, [0.0, 1.0], z, lambda x: {"mean": float(x.mean())}, keep_images=2)
    assert rows[0]["mean"] == pytest.approx(float(gan.sample(G, z).mean()))
    assert rows[0]["images"].shape == (2, 1, 8, 8)
    assert rows[1]["mean"] != rows[0]["mean"]
    # the sweep does not modify G
    assert all(torch.equal(theta[k], v) for k, v in G.state_dict().items())


def test_latents_are_reproducible():
    assert torch.equal(gan.latents(3, 2, 5), gan.latents(3, 2, 5))
    assert not torch.equal(gan.latents(3, 2, 5), gan.latents(3, 2, 6))


def test_eight_gaussians_and_mode_stats():
    pts, mode = gan.eight_gaussians(800, seed=0)
    assert pts.shape == (800, 2) and set(mode.tolist()) == set(range(8))
    stats = gan.mode_stats(pts, [0, 1])
    assert stats["negative_share"] == pytest.approx(0.25, abs=0.06)
    assert stats["positive_coverage"] == 1.0 and stats["off_mode_share"] < 0.01
    only_neg, _ = gan.eight_gaussians(200, seed=0, modes=[0, 1])
    assert gan.mode_stats(only_neg, [0, 1])["negative_share"] == pytest.approx(1.0)


def test_configs_and_cached_pretraining(tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoints.ENV_VAR, str(tmp_path))
    prof = dict(digit_size=8, z_dim=4, g_hidden=[8], d_hidden=[8], gan_steps=3, gan_batch=8, gan_lr=1e-3,
                gan_ema=0.0, gan_r1=1.0)
    config = gan.digits_gan_config(prof, seed=0)
    assert config["size"] == 8 and config["exclude"] == [] and config["r1"] == 1.0
    G, D, res = gan.pretrained_digits_gan(config, verbose=False)
    assert res.status == "trained"
    G2, _, res2 = gan.pretrained_digits_gan(config, verbose=False)
    assert res2.status == "loaded" and res2.train_seconds == pytest.approx(res.train_seconds)
    for k, v in G.state_dict().items():
        assert torch.equal(v, G2.state_dict()[k])
    # the same config builds the same initial weights whatever the global RNG state
    torch.manual_seed(123)
    a, _ = gan.build_gan(config)
    torch.manual_seed(456)
    b, _ = gan.build_gan(config)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert config["dataset"] == "digits"  # the default when the profile names no dataset
    assert models.classifier_config(8, 40, 0) == {"model": "DigitClassifier", "dataset": "digits", "size": 8,
                                               "epochs": 40, "seed": 0}


def test_class_share_and_histogram():
    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def predict(self, x):
            return torch.tensor([8, 8, 1, 2])

    clf = Fixed()
    x = torch.rand(4, 1, 8, 8)
    assert gan.class_share(clf, x, 8) == 0.5
    hist = gan.class_histogram(clf, x)
    assert hist.shape == (10,) and float(hist.sum()) == pytest.approx(1.0)
    with pytest.raises(tl.TutorialError):
        gan.class_share(clf, x[:0], 8)


def test_ewc_lambda_scales_with_fisher():
    fisher = {"a": torch.full((4,), 2e-6), "b": torch.full((2,), 2e-6)}
    assert gan.ewc_lambda(fisher, 0.1) == pytest.approx(0.1 / 2e-6)
    assert gan.ewc_lambda({k: v * 1000 for k, v in fisher.items()}, 0.1) == pytest.approx(0.1 / 2e-3)
    with pytest.raises(tl.TutorialError):
        gan.ewc_lambda({"a": torch.zeros(3)}, 1.0)
    with pytest.raises(tl.TutorialError):
        gan.ewc_lambda(fisher, -1.0)


def test_the_classifier_does_not_depend_on_what_ran_before(tmp_path, monkeypatch):
    # The cached classifier is shared by notebooks 00-02: whichever trains it first, it must be the same.
    monkeypatch.setenv(checkpoints.ENV_VAR, str(tmp_path / "a"))
    torch.manual_seed(123)
    a, res_a = models.pretrained_classifier(8, 2, seed=0, verbose=False)
    monkeypatch.setenv(checkpoints.ENV_VAR, str(tmp_path / "b"))
    torch.manual_seed(456)
    torch.rand(17)
    b, res_b = models.pretrained_classifier(8, 2, seed=0, verbose=False)
    assert res_a.status == res_b.status == "trained"
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    # nor on the thread count of the notebook that trains it (00 runs with the default, 01 and 02 with one)
    monkeypatch.setenv(checkpoints.ENV_VAR, str(tmp_path / "c"))
    threads = torch.get_num_threads()
    torch.set_num_threads(2 if threads == 1 else 1)
    try:
        c, _ = models.pretrained_classifier(8, 2, seed=0, verbose=False)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())
