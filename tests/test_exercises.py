"""The graded exercises: known mistakes named, the reference unavailable to the reader's function,
hints one at a time, a JSON record per check, and every notebook's check cells wired to the registry."""

import json
import re
from pathlib import Path

import nbformat
import pytest
import torch

from conftest import ROOT
from tutorial_lib import exercises, metrics, student
from tutorial_lib.errors import TutorialError

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
_G = torch.Generator().manual_seed(0)
CLEAN = torch.rand(3, 3, 8, 8, generator=_G)
NOISY = (CLEAN + 0.1 * torch.randn(3, 3, 8, 8, generator=_G)).clamp(0, 1)
PSNR_CASES = [(NOISY[i:i + 1], CLEAN[i:i + 1]) for i in range(3)]


@pytest.fixture(autouse=True)
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("TUTORIAL_RESULTS_DIR", str(tmp_path))
    return tmp_path


def good_psnr(p, t):
    return 10 * torch.log10(1 / ((p - t) ** 2).mean())


def record(results, exercise):
    return json.loads((results / "exercises" / f"{exercise}.json").read_text())


def test_a_correct_function_passes_and_is_recorded(results):
    result = exercises.check("nb00.psnr", good_psnr, PSNR_CASES, verbose=False)
    assert result and result.status == "passed" and result.points == 1 == result.max_points
    saved = record(results, "nb00.psnr")
    assert saved["passed"] and saved["status"] == "passed" and saved["points"] == 1 and saved["mistake"] is None


def test_an_untouched_stub_is_not_attempted(results):
    def stub(p, t):
        raise NotImplementedError

    result = exercises.check("nb00.psnr", stub, PSNR_CASES, verbose=False)
    assert not result and result.status == "not attempted" and result.points == 0
    assert record(results, "nb00.psnr")["status"] == "not attempted" and result.hints == []


def test_known_mistakes_are_named():
    cases = {
        "20·log10 of the mean squared error": lambda p, t: 20 * torch.log10(1 / ((p - t) ** 2).mean()),
        "a missing sign": lambda p, t: 10 * torch.log10(((p - t) ** 2).mean()),
        "root of the error instead of its square": lambda p, t: 10 * torch.log10(1 / ((p - t) ** 2).mean().sqrt()),
    }
    for name, fn in cases.items():
        result = exercises.check("nb00.psnr", fn, PSNR_CASES, verbose=False)
        assert result.status == "failed" and result.mistake == name, (name, result.mistake)
        assert name in result.message


def test_the_l1_bound_of_notebook_03_is_named_and_the_rms_one_passes():
    g = torch.Generator().manual_seed(1)
    y = torch.rand(4, 3, 8, 8, generator=g)
    x = (y + 0.2 * torch.randn(4, 3, 8, 8, generator=g)).clamp(0, 1)
    x[:, :, ::3] = y[:, :, ::3]  # sparse errors, as rain streaks are: L1 and RMS bounds differ
    halfway = [lambda z, y=y[i:i + 2]: (z + y) / 2 for i in (0, 2)]  # a model that removes half the error
    cases = [(halfway[0], x[:2], y[:2], 1.0), (halfway[1], x[2:], y[2:], 1.0)]

    def rms(a, b):
        return (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-12).sqrt()

    def l1_bound(m, x, y, margin):
        return torch.relu(margin * (x - y).abs().flatten(1).mean(1) - (m(x) - y).abs().flatten(1).mean(1)).mean()

    def rms_bound(m, x, y, margin):
        return torch.relu(margin * rms(x, y) - rms(m(x), y)).mean()

    assert exercises.check("nb03.bounded_loss", l1_bound, cases, verbose=False).mistake == \
        "the L1 error instead of the RMS error"
    assert exercises.check("nb03.bounded_loss", rms_bound, cases, verbose=False).passed
    for hint in exercises.get("nb03.bounded_loss").hints:  # the hints lead to the RMS error, never to L1
        assert ".abs()" not in hint and "L1" not in hint


def test_a_detached_output_and_a_square_of_the_mean_are_named():
    from tutorial_lib import gan

    G, D = gan.Generator(z_dim=4, out_shape=(1, 4, 4), hidden=(8,)), gan.Discriminator((1, 4, 4), hidden=(8,))
    refs = [{k: v + 0.1 for k, v in G.state_dict().items()}]
    detached = exercises.check("nb02.distance", lambda g, r: torch.tensor(float(sum(
        ((p - r[0][k]) ** 2).mean() for k, p in g.named_parameters()) / len(list(g.parameters())))),
        [(G, refs)], verbose=False)
    assert detached.mistake == "detached output"

    def batch_fisher(G, D, n, seed):
        z = gan.latents(n, G.z_dim, seed)
        G.zero_grad(set_to_none=True)
        D(G(z)).mean().backward()
        out = {k: p.grad.detach() ** 2 for k, p in G.named_parameters()}
        G.zero_grad(set_to_none=True)
        return out

    result = exercises.check("nb01.fisher", batch_fisher, [(G, D, 4, 0), (G, D, 3, 1)], verbose=False)
    assert result.mistake == "square of the mean, not mean of squares"


def test_a_wrong_answer_that_needs_autograd_is_named_too():
    """Known mistakes are computed with autograd on: the dynamic weights differentiate each term."""
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))

    def toy():
        return {"big": 100 * (w ** 2).sum(), "small": 0.01 * w.sum()}, [w]

    def squared_norm_weights(make, scales):
        losses, params = make()
        weights, total = {}, [torch.zeros_like(p) for p in params]
        for name, loss in losses.items():
            grads = torch.autograd.grad(loss, params, retain_graph=True)
            weights[name] = 1.0 / (float(sum(g.pow(2).sum() for g in grads)) + 1e-8)
            for t, g in zip(total, grads):
                t.add_(g, alpha=scales.get(name, 1.0) * weights[name])
        return weights, total

    result = exercises.check("nb05.dynamic_weights", squared_norm_weights,
                             [(toy, {"small": 1.0}), (toy, {"small": 0.3})], verbose=False)
    assert result.mistake == "weights 1/‖g‖² instead of 1/‖g‖"


def test_calling_the_reference_fails_with_a_clear_message_and_the_library_comes_back():
    from tutorial_lib.metrics import psnr as imported_earlier

    for cheat in (lambda p, t: metrics.psnr(p, t), lambda p, t: imported_earlier(p, t), metrics.psnr):
        result = exercises.check("nb00.psnr", cheat, PSNR_CASES, verbose=False)
        assert not result and result.mistake == "calls the reference" and "metrics.psnr" in result.message
    assert float(metrics.psnr(NOISY, CLEAN)) > 10  # restored after the check
    with pytest.raises(exercises.ReferenceUnavailable, match="unavailable while the check runs"):
        with exercises.unavailable(["tutorial_lib.metrics.psnr"]):
            metrics.psnr(NOISY, CLEAN)
    assert float(metrics.psnr(NOISY, CLEAN)) > 10  # restored after an error too


def test_every_guarded_function_can_be_made_unavailable_decorated_ones_included():
    """mid.denoise is wrapped by @torch.no_grad(): the guard follows the wrapper to the function it runs."""
    import importlib

    for ex in exercises.REGISTRY.values():
        for qualified in ex.guarded:
            module, _, name = qualified.rpartition(".")
            fn = getattr(importlib.import_module(module), name)
            with exercises.unavailable([qualified]):
                with pytest.raises(exercises.ReferenceUnavailable, match=name):
                    fn()
            assert exercises._resolve(qualified).__code__.co_name == name  # restored


def test_hints_come_one_at_a_time_after_failed_attempts(results):
    ex = exercises.get("nb00.psnr")
    wrong = lambda p, t: ((p - t) ** 2).mean()  # noqa: E731
    seen = []
    for attempt in range(1, len(ex.hints) + 2):
        result = exercises.check("nb00.psnr", wrong, PSNR_CASES, verbose=False)
        seen.append(len(result.hints))
        assert result.hints == list(ex.hints[:min(attempt, len(ex.hints))])
        assert f"Hint {len(result.hints)} of {len(ex.hints)}" in result.message
    assert seen == [1, 2, 3, 3]
    assert exercises.hints("nb00.psnr") == list(ex.hints)
    assert record(results, "nb00.psnr")["failures"] == 4


def test_every_hint_points_the_way_without_the_solution_line():
    """A hint never contains a solution's line of code (checked against the notebooks' solutions)."""
    solutions = []
    for path in NOTEBOOKS:
        nb = nbformat.read(str(path), as_version=4)
        for cell in nb.cells:
            for block in student.solution_blocks(cell.source):
                solutions += [line.strip() for line in block.splitlines() if len(line.strip()) > 12]
    for ex in exercises.REGISTRY.values():
        assert 2 <= len(ex.hints) <= 4, ex.id
        for hint in ex.hints:
            for line in solutions:
                code = line.split("#")[0].strip()
                assert len(code) < 13 or code not in hint, (ex.id, code)


def test_unknown_exercise_and_empty_cases_are_clear_errors():
    with pytest.raises(TutorialError, match="no exercise 'nb09.x'"):
        exercises.check("nb09.x", good_psnr, PSNR_CASES)
    with pytest.raises(TutorialError, match="at least one case"):
        exercises.check("nb00.psnr", good_psnr, [])


def test_require_raises_only_when_the_check_did_not_pass():
    exercises.check("nb00.psnr", good_psnr, PSNR_CASES, verbose=False).require()
    with pytest.raises(AssertionError, match="nb00.psnr"):
        exercises.check("nb00.psnr", lambda p, t: p.mean(), PSNR_CASES, verbose=False).require()


def test_a_read_only_results_folder_does_not_break_the_check(tmp_path, monkeypatch):
    target = tmp_path / "file"
    target.write_text("not a folder")
    monkeypatch.setenv("TUTORIAL_RESULTS_DIR", str(target))
    assert exercises.check("nb00.psnr", good_psnr, PSNR_CASES, verbose=False).passed


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_exercise_is_three_cells_with_a_locked_check_of_its_own(path):
    nb = nbformat.read(str(path), as_version=4)
    cells = nb.cells
    number = path.name[:2]
    checked = []
    for i, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        meta = cell.metadata
        if "exercise-check" in meta.get("tags", []):
            ex = meta["tutorial"]["exercise"]
            checked.append(ex)
            assert re.search(rf'exercises\.check\(\s*"{re.escape(ex)}"', cell.source), f"{path.name} cell {i}"
            assert student.BEGIN not in cell.source and meta.get("editable") is False
            assert meta.get("deletable") is False
            assert student.BEGIN in cells[i - 1].source, f"{path.name} cell {i}: the solution cell comes first"
            assert ".choose(" in cells[i + 1].source and "exercises.check" not in cells[i + 1].source
        else:
            assert "exercises.check(" not in cell.source and "check_function(" not in cell.source, \
                f"{path.name} cell {i}: a check outside a check cell"
            assert "hint=" not in cell.source, f"{path.name} cell {i}: hints live in the library"
    assert checked == [e.id for e in exercises.of_notebook(number)]
    assert len(checked) == student.count_exercises(nb)


def test_nbgrader_source_edition_metadata():
    nb = nbformat.read(str(NOTEBOOKS[0]), as_version=4)
    out = student.make_nbgrader_source(nb)
    graded = [c for c in out.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert [c.metadata["nbgrader"]["grade_id"] for c in graded] == ["nb00_psnr", "nb00_frechet"]
    assert all(c.metadata["nbgrader"]["locked"] and c.source.rstrip().splitlines()[-1].endswith(
        "fails when the check does not pass") for c in graded)
    assert sum(c.metadata["nbgrader"]["points"] for c in graded) == sum(e.points for e in exercises.of_notebook("00"))
    solutions = [c for c in out.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert len(solutions) == 2 and all(student.BEGIN in c.source for c in solutions)


def _small_gan_and_references():
    from tutorial_lib import gan, unlearning

    G, D = gan.build_gan({"size": 8, "z_dim": 8, "g_hidden": [16], "d_hidden": [16], "seed": 0})
    data = torch.rand(48, 1, 8, 8)
    refs = unlearning.adapt_to_negatives(G, D, data[:16], k=2, steps=3, lam=0.0, desc=None)["states"]
    return G, D, data, refs


def test_the_stage2_step_exercise_passes_the_paper_step_and_names_its_mistakes():
    import torch.nn.functional as F

    G, D, data, refs = _small_gan_and_references()
    cases = [(G, D, data, refs, kind, gamma, 0.3, 1.0, 5) for kind, gamma in (("IL2", 30.0), ("NL2", 0.003),
                                                                                  ("EL2", 100.0))]

    def step(G, D, opt_g, opt_d, real, z, distance, kind, gamma, alpha, r1, r1_on=True, sign=1.0):
        fake = G(z)
        real = real.detach().requires_grad_(True)
        d_real = D(real)
        d_loss = F.softplus(-d_real).mean() + F.softplus(D(fake.detach())).mean()
        if r1_on:
            (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
            d_loss = d_loss + 0.5 * r1 * grad.pow(2).flatten(1).sum(1).mean()
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = F.softplus(-D(fake)).mean()
        d = distance(G)
        pen = sign * gamma * {"IL2": 1 / d, "NL2": -d, "EL2": torch.exp(-alpha * d)}[kind]
        opt_g.zero_grad()
        (g_loss + pen).backward()
        opt_g.step()
        return {"d_loss": d_loss, "g_loss": g_loss, "penalty": pen}

    def through(fn):
        return lambda *case: unlearning_one_step(*case, step_fn=fn)

    from tutorial_lib.unlearning import one_step as unlearning_one_step
    assert exercises.check("nb02.stage2_step", through(step), cases, verbose=False).passed
    no_r1 = exercises.check("nb02.stage2_step", through(lambda *a: step(*a, r1_on=False)), cases, verbose=False)
    assert no_r1.mistake == "no R1 penalty on the discriminator"
    flipped = exercises.check("nb02.stage2_step", through(lambda *a: step(*a, sign=-1.0)), cases, verbose=False)
    assert flipped.mistake == "the repulsion term with the wrong sign"
    from tutorial_lib import unlearning
    cheat = exercises.check("nb02.stage2_step", through(unlearning.stage2_step), cases, verbose=False)
    assert cheat.mistake == "calls the reference"


def test_the_random_direction_exercise_keeps_block_norms_and_names_a_global_norm():
    from tutorial_lib import gan

    G, _, _, refs = _small_gan_and_references()
    theta = gan.clone_state(G)
    delta = gan.state_difference(refs[0], theta)
    noise = gan.gaussian_like(delta, 3)
    direction = gan.match_block_norms(noise, delta)
    for block, norm in gan.direction_norms(delta).items():
        assert abs(gan.direction_norms(direction)[block] - norm) < 1e-5 * max(norm, 1.0)
    assert gan.random_direction(delta, 3).keys() == delta.keys()

    def per_block(n, d):
        out = {}
        for b in gan.blocks(d):
            keys = [k for k in d if gan.block_of(k) == b]
            factor = torch.sqrt(sum((d[k] ** 2).sum() for k in keys)) / torch.sqrt(sum((n[k] ** 2).sum() for k in keys))
            out.update({k: n[k] * factor for k in keys})
        return out

    def one_norm(n, d):
        factor = torch.sqrt(sum((v ** 2).sum() for v in d.values())) / torch.sqrt(sum((v ** 2).sum() for v in n.values()))
        return {k: v * factor for k, v in n.items()}

    cases = [(noise, delta), (gan.gaussian_like(delta, 4), delta)]
    assert exercises.check("nb01.random_direction", per_block, cases, verbose=False).passed
    assert exercises.check("nb01.random_direction", one_norm, cases, verbose=False).mistake == \
        "one norm for the whole direction"


def test_the_critic_loss_exercise_checks_gradients_of_the_critics_and_names_its_mistakes():
    cases = [(exercises.critic_case(0),), (exercises.critic_case(1, gamma=2.0),)]
    correct = exercises.check("nb05.critic_loss", exercises.critic_loss_and_grads(
        lambda *a: exercises._critic_variant(*a)), cases, verbose=False)
    assert correct.passed
    for kwargs, name in [(dict(graph=False), "the penalty's graph not kept"), (dict(r2=False), "R1 only, no R2"),
                         (dict(relativistic=False), "the standard (non-relativistic) GAN loss"),
                         (dict(half=False), "gamma instead of gamma / 2")]:
        result = exercises.check("nb05.critic_loss", exercises.critic_loss_and_grads(
            lambda *a, kw=kwargs: exercises._critic_variant(*a, **kw)), cases, verbose=False)
        assert not result.passed and result.mistake == name
    # the cases are rebuilt identically on every call: same critics, same feature maps
    c1, r1, f1, _ = exercises.critic_case(3)()
    c2, r2, f2, _ = exercises.critic_case(3)()
    assert torch.equal(r1["colour"], r2["colour"]) and torch.equal(f1["texture"], f2["texture"])
    assert all(torch.equal(a, b) for a, b in zip(c1["texture"].parameters(), c2["texture"].parameters()))
