import copy

import pytest
import torch

import tutorial_lib as tl
from tutorial_lib import degradations as dg
from tutorial_lib import restoration as R


@pytest.fixture(scope="module")
def pairs():
    x = torch.rand((6, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    return dg.make_pairs(x, seed=0)


def small_model(seed=0):
    torch.manual_seed(seed)
    return R.AllInOneRestorer(width=4, n_prompts=2, prompt_dim=4, depth=1)


def test_model_shapes_and_prompt_weights():
    m = small_model()
    x = torch.rand(2, 3, 16, 16)
    assert m(x).shape == x.shape
    w = m.prompt_weights(x)
    assert w.shape == (2, 2) and torch.allclose(w.sum(1), torch.ones(2))
    out = m.restore(x)
    assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_model_rejects_bad_inputs():
    m = small_model()
    with pytest.raises(tl.InputShapeError):
        m(torch.rand(2, 1, 16, 16))
    with pytest.raises(tl.InputShapeError):
        m(torch.rand(2, 3, 18, 18))
    with pytest.raises(tl.InputShapeError):
        m(torch.rand(3, 16, 16))
    with pytest.raises(tl.TutorialError):
        R.AllInOneRestorer(width=2)


def test_training_lowers_the_loss(pairs):
    m = small_model()
    before = R.evaluate(m, pairs)
    out = R.train_restorer(m, pairs, steps=40, batch_size=8, lr=3e-3, log_every=10)
    after = R.evaluate(m, pairs)
    assert len(out.history["loss"]) == 4
    assert out.history["loss"][-1] < out.history["loss"][0]
    assert set(after) == set(dg.TASKS)
    assert sum(after[t]["psnr"] for t in dg.TASKS) > sum(before[t]["psnr"] for t in dg.TASKS)
    with pytest.raises(tl.TutorialError):
        R.train_restorer(m, pairs, steps=0)
    with pytest.raises(tl.TutorialError):
        R.train_restorer(m, "not pairs")


def test_pgd_stays_in_budget_and_increases_gap(pairs):
    m = small_model(0)
    ref = copy.deepcopy(m)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = pairs.degraded[:4]
    hist = []
    xa = R.pgd_attack(m, ref, x, eps=4 / 255, steps=3, gen=torch.Generator().manual_seed(0), history=hist)
    assert float((xa - x).abs().max()) <= 4 / 255 + 1e-6
    assert float(xa.min()) >= 0 and float(xa.max()) <= 1
    assert len(hist) == 3
    start = R.pgd_attack(m, ref, x, eps=4 / 255, steps=0, gen=torch.Generator().manual_seed(0))
    gap = lambda z: float((m(z) - ref(z)).abs().mean())  # noqa: E731
    with torch.no_grad():
        assert gap(xa) > gap(start)
    with pytest.raises(tl.TutorialError):
        R.pgd_attack(m, ref, x, eps=-1.0)


def test_bounded_ascent_is_zero_beyond_the_input_error(pairs):
    m = small_model()
    x, y = pairs.degraded[:4], pairs.clean[:4]
    identity = lambda z: z  # noqa: E731  the output equals the input: error == input error
    assert float(R.bounded_ascent_loss(identity, x, y)) == pytest.approx(0.0, abs=1e-7)
    perfect = lambda z: y  # noqa: E731
    assert float(R.bounded_ascent_loss(perfect, x, y)) == pytest.approx(float(R.per_image_rmse(x, y).mean()), rel=1e-4)
    assert float(R.identity_forget_loss(identity, x)) == 0.0
    assert float(R.plain_ascent_loss(m, x, y).detach()) < 0


@pytest.mark.parametrize("method", R.FORGET_METHODS)
def test_forget_runs_every_method(pairs, method):
    m = small_model()
    calls = []
    out = R.forget(m, pairs.select("haze"), pairs.select(["noise", "rain"]), method, steps=3,
                   batch_size=4, monitor=lambda s, mod: calls.append(s), monitor_every=1)
    assert len(out["losses"]) == 3 and out["seconds"] > 0
    assert calls == [0, 1, 2, 3]


def test_forget_rejects_unknown_method(pairs):
    with pytest.raises(tl.TutorialError):
        R.forget(small_model(), pairs.select("haze"), pairs.select("rain"), "magic")
    with pytest.raises(tl.TutorialError):
        R.forget(small_model(), pairs.select("haze"), None, "finetune")


def test_forget_runs_the_readers_loss_and_pgd_step(pairs):
    calls = {"loss": 0, "pgd": 0}

    def my_loss(model, x_f, y_f, margin):
        calls["loss"] += 1
        return R.bounded_ascent_loss(model, x_f, y_f, margin)

    def my_step(x, delta, grad, eps, alpha):
        calls["pgd"] += 1
        return R.pgd_step(x, delta, grad, eps, alpha)

    a, b = small_model(), small_model()
    R.forget(a, pairs.select("haze"), pairs.select(["noise", "rain"]), "bounded_ga", steps=2, batch_size=4)
    R.forget(b, pairs.select("haze"), pairs.select(["noise", "rain"]), "bounded_ga", steps=2, batch_size=4,
             bounded_loss_fn=my_loss, pgd_step_fn=my_step)
    assert calls == {"loss": 2, "pgd": 2}
    assert all(torch.allclose(p, q) for p, q in zip(a.parameters(), b.parameters()))   # the same method


def test_forget_stops_before_applying_a_non_finite_loss(pairs):
    m = small_model()
    before = [p.detach().clone() for p in m.parameters()]

    def nan_loss(model, x_f, y_f, margin):
        return model(x_f).sum() * float("nan")

    with pytest.warns(UserWarning, match="stopping before this step is applied"):
        out = R.forget(m, pairs.select("haze"), pairs.select(["noise", "rain"]), "bounded_ga", steps=3,
                       batch_size=4, bounded_loss_fn=nan_loss)
    assert len(out["losses"]) == 1
    assert all(torch.equal(p, q) for p, q in zip(before, m.parameters()))


def test_forget_records_its_terms_and_timed_seconds(pairs):
    out = R.forget(small_model(), pairs.select("haze"), pairs.select(["noise", "rain"]), "bounded_ga", steps=3,
                   batch_size=4)
    assert [sorted(k for k, v in t.items() if v is not None) for t in out["terms"]] == [["adv", "forget"]] * 3
    assert all(abs(t["forget"] + t["adv"] - loss) < 1e-5 for t, loss in zip(out["terms"], out["losses"]))
    assert out["elapsed"] == sorted(out["elapsed"]) and out["elapsed"][-1] == pytest.approx(out["seconds"])
    ft = R.forget(small_model(), pairs.select("haze"), pairs.select(["noise", "rain"]), "finetune", steps=2,
                  batch_size=4)
    assert all(t["forget"] is None and t["adv"] is None and t["retain"] > 0 for t in ft["terms"])


def test_forget_rejects_bad_settings(pairs):
    f, r = pairs.select("haze"), pairs.select(["noise", "rain"])
    for bad in (dict(steps=0), dict(batch_size=0), dict(lr=0.0), dict(adv_source="test")):
        with pytest.raises(tl.TutorialError):
            R.forget(small_model(), f, r, "bounded_ga", **bad)


def test_adversarial_examples_from_forget_inputs_stay_near_them(pairs, monkeypatch):
    seen = []
    real = R.pgd_attack

    def spy(model, reference, x, **kw):
        seen.append(x.clone())
        return real(model, reference, x, **kw)

    monkeypatch.setattr(R, "pgd_attack", spy)
    f, r = pairs.select("haze"), pairs.select(["noise", "rain"])
    R.forget(small_model(), f, r, "bounded_ga", steps=1, batch_size=len(f), adv_source="forget")
    assert torch.equal(seen[0].sort(0).values, f.degraded.sort(0).values)   # the forget batch itself


def test_membership_accuracy_separates_a_memorising_model(pairs):
    members, non_members = pairs.select("haze"), pairs.select("rain")

    class Oracle(torch.nn.Module):  # perfect on members, returns the input otherwise
        def restore(self, x):
            hit = (x[:, None] == members.degraded[None]).flatten(2).all(2).any(1)
            out = x.clone()
            for i in torch.nonzero(hit).flatten():
                j = (x[i][None] == members.degraded).flatten(1).all(1).nonzero()[0, 0]
                out[i] = members.clean[j]
            return out

    assert R.membership_accuracy(Oracle(), members, non_members) >= 5 / 6   # 6 held-out pairs
    same = R.membership_accuracy(small_model(), members, members, seed=1)
    assert 0.0 <= same <= 1.0
    with pytest.raises(tl.TutorialError):
        R.membership_accuracy(small_model(), members.select("haze"), pair_set_of_one(pairs))


def pair_set_of_one(pairs):
    idx = torch.tensor([0])
    return type(pairs)(pairs.degraded[idx], pairs.clean[idx], pairs.task[idx], pairs.tasks)
