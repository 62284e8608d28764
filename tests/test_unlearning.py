"""Tests for tutorial_lib.unlearning: distances, repulsion losses, PUL, stage 1 and stage 2."""

import math
import pytest
import torch

import tutorial_lib as tl
from tutorial_lib import gan, unlearning


pytestmark = pytest.mark.usefixtures("one_thread")


def small_gan():
    torch.manual_seed(0)
    return gan.Generator(4, (1, 8, 8), (16,)), gan.Discriminator((1, 8, 8), (16,))


def shifted(G, by):
    return {k: v.detach() + by for k, v in G.state_dict().items()}


def test_param_distance_values_and_gradient():
    G, _ = small_gan()
    d = unlearning.param_distance(G, [shifted(G, 1.0)])
    assert float(d.detach()) == pytest.approx(1.0)
    d2 = unlearning.param_distance(G, [shifted(G, 1.0), shifted(G, 3.0)], scale=5.0)
    assert float(d2.detach()) == pytest.approx((1.0 + 9.0) / 2 / 5.0)
    assert float(unlearning.param_distance(G, [shifted(G, 2.0)], reduction="flat").detach()) == pytest.approx(4.0)
    d.backward()
    assert all(p.grad is not None for p in G.parameters())


def test_fast_distance_matches_reference():
    G, _ = small_gan()
    refs = [{k: v + torch.randn_like(v) for k, v in G.state_dict().items()} for _ in range(3)]
    for reduction in ("tensor", "flat"):
        slow = float(unlearning.param_distance(G, refs, 2.0, reduction).detach())
        fast = float(unlearning.fast_distance(G, refs, 2.0, reduction)(G).detach())
        assert fast == pytest.approx(slow, rel=1e-5)


def test_distance_errors():
    G, _ = small_gan()
    with pytest.raises(tl.TutorialError):
        unlearning.param_distance(G, [])
    with pytest.raises(tl.TutorialError):
        unlearning.param_distance(G, [{"x": torch.zeros(1)}])
    bad = {k: torch.zeros(3) for k in G.state_dict()}
    with pytest.raises(tl.InputShapeError):
        unlearning.param_distance(G, [bad])
    with pytest.raises(tl.InputShapeError):
        unlearning.fast_distance(G, [bad])
    with pytest.raises(tl.TutorialError):
        unlearning.param_distance(G, [shifted(G, 1.0)], reduction="median")


def test_repulsion_losses_decrease_with_distance():
    d = torch.tensor([1.0, 2.0, 4.0])
    for kind in unlearning.REPULSIONS:
        values = unlearning.repulsion_loss(kind, d, alpha=0.5)
        assert (values[1:] < values[:-1]).all(), kind
    assert torch.allclose(unlearning.repulsion_loss("IL2", d), 1 / d)
    assert torch.allclose(unlearning.repulsion_loss("nl2", d), -d)
    assert torch.allclose(unlearning.repulsion_loss("EL2", d, 2.0), torch.exp(-2 * d))
    with pytest.raises(tl.TutorialError):
        unlearning.repulsion_loss("L1", d)


def test_pul():
    assert math.isnan(unlearning.pul(0, 3, undefined="nan"))
    assert unlearning.pul(100, 10) == pytest.approx(90.0)
    assert unlearning.pul(50, 50) == 0.0
    assert unlearning.pul(10, 20) == pytest.approx(-100.0)
    with pytest.raises(tl.TutorialError):
        unlearning.pul(0, 0)


class ByBrightness(torch.nn.Module):
    """A stand-in classifier: class 8 if the mean pixel is above 0.5, else class 1."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        bright = (x.flatten(1).mean(1) > 0.5).float()
        logits = torch.zeros(len(x), 10)
        logits[:, 8] = bright
        logits[:, 1] = 1 - bright
        return logits

    def predict(self, x):
        return self(x).argmax(1)


def test_split_generated_and_fallback(capsys):
    G, _ = small_gan()
    clf = ByBrightness()
    neg, pos = unlearning.split_generated(G, clf, 8, n=40, seed=0)
    assert len(neg) + len(pos) == 40
    assert all(float(x.mean()) > 0.5 for x in neg)
    neg2, pos2 = unlearning.split_generated(G, clf, 3, n=40, seed=0, min_negatives=5)
    assert len(neg2) == 5 and len(pos2) == 35
    assert "highest score" in capsys.readouterr().out
    with pytest.raises(tl.TutorialError):
        unlearning.split_generated(G, clf, 11, n=10, seed=0)


class BySoftBrightness(torch.nn.Module):
    """A stand-in classifier whose confidence for class 8 grows smoothly with the mean pixel
    (standardised within the batch, so that any generator gives a spread of confidences)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        m = x.flatten(1).mean(1)
        score = 6.0 * (m - m.mean()) / m.std()
        logits = torch.zeros(len(x), 10)
        logits[:, 8] = score
        logits[:, 1] = -score
        return logits


def test_split_generated_clear_positives_only():
    G, _ = small_gan()
    clf = BySoftBrightness()
    neg, pos = unlearning.split_generated(G, clf, 8, n=200, seed=0)
    neg_c, pos_c = unlearning.split_generated(G, clf, 8, n=200, seed=0, positive_max_prob=0.01)
    assert torch.equal(neg, neg_c)                      # negatives do not change
    assert 0 < len(pos_c) < len(pos)                    # the unsure ones are dropped
    x = gan.sample(G, gan.latents(200, G.z_dim, 0))
    prob = torch.softmax(clf(x), 1)
    assert torch.equal(pos_c, x[(prob.argmax(1) != 8) & (prob[:, 8] < 0.01)])
    with pytest.raises(tl.TutorialError, match="positive_max_prob"):
        unlearning.split_generated(G, clf, 8, n=20, seed=0, positive_max_prob=0.0)
    with pytest.raises(tl.TutorialError, match="clear positive"):
        unlearning.split_generated(G, ByBrightness(), 8, n=20, seed=0, positive_max_prob=0.05)


def test_stage1_and_stage2_run_and_leave_inputs_unchanged():
    G, D = small_gan()
    before = gan.clone_state(G)
    data = torch.rand(20, 1, 8, 8)
    s1 = unlearning.adapt_to_negatives(G, D, data, k=2, steps=3, lam=1.0, batch_size=4, seed=0, desc=None)
    assert len(s1["states"]) == 2 and set(s1["fisher"]) == {k for k, _ in G.named_parameters()}
    assert any(not torch.equal(s1["states"][0][k], before[k]) for k in before)
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())
    for kind in (*unlearning.REPULSIONS, None):
        out = unlearning.unlearn(G, D, data, s1["states"], kind=kind, gamma=1.0, steps=3, batch_size=4,
                                 desc=None, ema=0.5 if kind else None, r1=1.0,
                                 ewc=(s1["fisher"], 1.0) if kind is None else None)
        assert out["d0"] > 0 and out["seconds"] >= 0 and out["cpu_seconds"] >= 0
        assert isinstance(out["G"], gan.Generator)
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())
    with pytest.raises(tl.TutorialError):
        unlearning.unlearn(G, D, data, s1["states"], kind="XL2", gamma=1.0, steps=1, desc=None)
    with pytest.raises(tl.TutorialError):
        unlearning.adapt_to_negatives(G, D, data[:1], k=1, steps=1, lam=0.0, desc=None)
    with pytest.raises(tl.TutorialError):
        unlearning.adapt_to_negatives(G, D, data, k=0, steps=1, lam=0.0, desc=None)


def test_stage2_runs_the_readers_distance_and_repulsion():
    G, D = small_gan()
    data = torch.rand(20, 1, 8, 8)
    s1 = unlearning.adapt_to_negatives(G, D, data, k=2, steps=2, lam=1.0, batch_size=4, seed=0, desc=None)
    calls = {"d": 0, "rep": 0}

    def my_distance(generator, references, scale=1.0):
        calls["d"] += 1
        return unlearning.param_distance(generator, references, scale)

    def my_repulsion(kind, d, alpha=1.0):
        calls["rep"] += 1
        return unlearning.repulsion_loss(kind, d, alpha)

    base = unlearning.unlearn(G, D, data, s1["states"], kind="NL2", gamma=1.0, steps=3, batch_size=4, desc=None)
    mine = unlearning.unlearn(G, D, data, s1["states"], kind="NL2", gamma=1.0, steps=3, batch_size=4, desc=None,
                              distance_fn=my_distance, repulsion_fn=my_repulsion)
    assert calls["d"] >= 3 and calls["rep"] >= 3
    for (name, p), q in zip(base["G"].named_parameters(), mine["G"].parameters()):
        assert torch.allclose(p, q, atol=1e-5), name    # the same method, computed by the reader's functions


def test_split_generated_positive_fallback_and_bad_counts(capsys):
    G, _ = small_gan()
    clf = BySoftBrightness()
    neg, pos = unlearning.split_generated(G, clf, 8, n=200, seed=0, positive_max_prob=1e-9, min_positives=50)
    assert len(pos) == 50 and "lowest probability" in capsys.readouterr().out
    with pytest.raises(tl.TutorialError, match="min_negatives"):
        unlearning.split_generated(G, clf, 8, n=10, seed=0, min_negatives=11)
    with pytest.raises(tl.TutorialError, match="min_positives"):
        unlearning.split_generated(G, clf, 8, n=10, seed=0, min_negatives=5, min_positives=6)


def test_stages_refuse_empty_inputs_and_zero_steps():
    G, D = small_gan()
    data = torch.rand(20, 1, 8, 8)
    with pytest.raises(tl.TutorialError, match="steps must be >= 1"):
        unlearning.adapt_to_negatives(G, D, data, k=1, steps=0, lam=0.0, desc=None)
    s1 = unlearning.adapt_to_negatives(G, D, data, k=1, steps=1, lam=0.0, desc=None)
    with pytest.raises(tl.TutorialError, match="positive samples"):
        unlearning.unlearn(G, D, data[:0], s1["states"], kind="NL2", gamma=1.0, steps=1, desc=None)
    with pytest.raises(tl.TutorialError, match="steps must be >= 1"):
        unlearning.unlearn(G, D, data, s1["states"], kind="NL2", gamma=1.0, steps=0, desc=None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: checks that every tensor of both "
                                                          "stages follows the training device when G stays on the CPU")
def test_stages_train_on_cuda_with_the_generator_on_the_cpu():
    G, D = small_gan()
    data = torch.rand(20, 1, 8, 8)
    s1 = unlearning.adapt_to_negatives(G, D, data, k=1, steps=2, lam=1.0, desc=None, device="cuda")
    out = unlearning.unlearn(G, D, data, s1["states"], kind="NL2", gamma=1.0, steps=2, desc=None, device="cuda",
                             ewc=(s1["fisher"], 1.0))
    assert next(out["G"].parameters()).device.type == "cuda" and next(G.parameters()).device.type == "cpu"


def test_stage2_monitor_records_without_changing_training():
    G, D = small_gan()
    data = torch.rand(20, 1, 8, 8)
    s1 = unlearning.adapt_to_negatives(G, D, data, k=2, steps=2, lam=1.0, batch_size=4, seed=0, desc=None)
    refs = s1["states"]
    z = gan.latents(8, G.z_dim, seed=5)
    seen = []

    def monitor(step, g):
        seen.append((step, torch.is_grad_enabled()))
        return {"d": unlearning.param_distance(g, refs), "mean pixel": g(z).mean()}

    kwargs = dict(kind="EL2", gamma=2.0, steps=7, batch_size=4, desc=None, ema=0.5)
    plain = unlearning.unlearn(G, D, data, refs, **kwargs)
    watched = unlearning.unlearn(G, D, data, refs, log_every=3, monitor=monitor, **kwargs)
    assert [s for s, _ in seen] == [0, 3, 6] == watched["history"]["step"]
    assert not any(grad for _, grad in seen)                     # called without gradients
    assert len(watched["history"]["d"]) == len(watched["history"]["mean pixel"]) == 3
    assert watched["history"]["d"][-1] > watched["history"]["d"][0] > 0   # EL2 pushes away from theta_N
    for p, q in zip(plain["G"].parameters(), watched["G"].parameters()):
        assert torch.equal(p, q)                                 # watching does not change the run


def test_one_step_gives_gradients_and_the_ablations_change_what_they_should():
    G, D = small_gan()
    data = torch.rand(20, 1, 8, 8)
    refs = unlearning.adapt_to_negatives(G, D, data, k=2, steps=2, lam=1.0, batch_size=4, seed=0, desc=None)["states"]
    paper = unlearning.one_step(G, D, data, refs, "NL2", 1.0, 1.0, 1.0, 3)
    assert set(paper) == {"losses", "generator", "critic"} and paper["losses"]["penalty"] == pytest.approx(-1.0)
    # plain SGD with lr 1: the change of a weight is its gradient; recompute the generator's by hand
    gen = torch.Generator().manual_seed(3)
    idx = torch.randint(0, len(data), (32,), generator=gen)
    z = torch.randn(32, G.z_dim, generator=gen)
    D2 = __import__("copy").deepcopy(D)
    opt_d = torch.optim.SGD(D2.parameters(), lr=1.0)
    real = data[idx].requires_grad_(True)
    d_real = D2(real)
    (g,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
    d_loss = gan.d_loss_fn(d_real, D2(G(z).detach())) + 0.5 * g.pow(2).flatten(1).sum(1).mean()
    opt_d.zero_grad(); d_loss.backward(); opt_d.step()
    G.zero_grad()
    (gan.g_loss_fn(D2(G(z))) - unlearning.param_distance(G, refs) / unlearning.param_distance(G, refs).detach()).backward()
    for name, p in G.named_parameters():
        assert torch.allclose(paper["generator"][name], p.grad, atol=1e-5), name
    G.zero_grad()
    no_adv = unlearning.unlearn(G, D, data, refs, kind="NL2", gamma=1.0, steps=1, desc=None, adversarial=False,
                                optimizer="sgd", lr=1.0, batch_size=32, seed=3)
    # without the adversarial term the generator's gradient is the repulsion term's alone
    d_grad = {k: v for k, v in zip([n for n, _ in G.named_parameters()],
                                   torch.autograd.grad(-unlearning.param_distance(G, refs) /
                                                       unlearning.param_distance(G, refs).detach(), list(G.parameters())))}
    for name, p in no_adv["G"].named_parameters():
        assert torch.allclose(G.state_dict()[name] - p.detach(), d_grad[name], atol=1e-5), name
    with pytest.raises(tl.TutorialError, match="step_fn"):
        unlearning.unlearn(G, D, data, refs, kind=None, gamma=0.0, steps=1, desc=None, step_fn=unlearning.stage2_step)
    with pytest.raises(tl.TutorialError, match="optimizer"):
        gan.train_gan(G, D, data, steps=1, desc=None, optimizer="rmsprop")
