"""Graded exercises: one registry of every exercise, with its points, hints and known mistakes.

An exercise in a notebook is three cells:

1. the **solution cell**, where the reader writes a function (between ``### BEGIN SOLUTION`` and
   ``### END SOLUTION`` in the instructor's edition, a stub in the student's);
2. the **check cell**, of its own, tagged ``exercise-check`` and locked (its metadata names the
   exercise, e.g. ``{"tutorial": {"exercise": "nb02.distance"}}``), which calls
   ``result = exercises.check("nb02.distance", my_function, cases)``;
3. the **choose cell**, ``fn = result.choose(my_function, library_function)``: the experiment that
   follows runs the reader's function once its check passed, the library's until then.

What a check does, in this order:

* it computes the expected values with the library's reference, and the answers of the known
  mistakes, on the given cases;
* then it runs the reader's function with the reference (and the library functions it is built
  from) *unavailable*: a call to one of them from inside the reader's function raises
  :class:`ReferenceUnavailable`, and the check names that mistake. The functions come back as soon
  as the check ends, so the rest of the notebook keeps the library;
* it compares outputs (and gradients where the output is a differentiable scalar), names a known
  wrong answer when the reader's output matches one ("square of the mean, not mean of squares");
* it prints one message, with the next hint after every failed attempt (hints live here, not in the
  notebook: they point the way, never the line), and writes its record as JSON to
  ``<results>/exercises/<exercise id>.json``: exercise, points, status (``passed``, ``failed`` or
  ``not attempted``), the mistake it recognised, the hints shown. :mod:`tutorial_lib.grade` reads
  only these records, never printed text.
"""

from __future__ import annotations

import importlib
import inspect
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from .checks import PASS, FAIL, CheckResult, _clone, _compare, _describe_error, _leaves
from .errors import TutorialError
from .results import results_dir

RECORD_FOLDER = "exercises"
CHECK_TAG = "exercise-check"
STATUSES = ("passed", "failed", "not attempted")


class ReferenceUnavailable(TutorialError):
    """Raised when the reader's function calls, while its check runs, the library function it is compared with."""


class UnknownExercise(TutorialError, KeyError):
    """An exercise id that is not in the registry."""


def exercise_of(cell) -> str | None:
    """The exercise id a notebook cell checks, if it is a check cell (tagged ``exercise-check``)."""
    meta = cell.get("metadata", {})
    if cell.get("cell_type") != "code" or CHECK_TAG not in meta.get("tags", []):
        return None
    return meta.get("tutorial", {}).get("exercise")


@dataclass(frozen=True)
class Mistake:
    """A known wrong answer: ``answer`` takes the same arguments as the reference and returns the
    wrong result; ``name`` is what the check tells the reader when their output matches it."""
    name: str
    explain: str
    answer: Callable


@dataclass(frozen=True)
class Exercise:
    id: str
    title: str
    points: int
    reference: Callable
    reference_name: str
    guarded: tuple[str, ...]
    hints: tuple[str, ...]
    mistakes: tuple[Mistake, ...] = ()
    check_grad: bool = True
    rtol: float = 1e-4
    atol: float = 1e-5

    @property
    def notebook(self) -> str:
        return self.id.split(".", 1)[0].removeprefix("nb")


@dataclass
class ExerciseResult(CheckResult):
    exercise: str = ""
    points: int = 0
    max_points: int = 0
    status: str = "failed"
    mistake: str | None = None
    hints: list[str] = field(default_factory=list)

    def require(self) -> None:
        """Raise ``AssertionError`` unless the check passed (the nbgrader edition's check cells end with it)."""
        if not self.passed:
            raise AssertionError(f"{self.exercise}: {self.status}. {self.message}")

    def record(self) -> dict[str, Any]:
        return {"exercise": self.exercise, "title": self.name, "passed": self.passed, "status": self.status,
                "points": self.points, "max_points": self.max_points, "mistake": self.mistake,
                "message": self.message, "hints": list(self.hints), "details": list(self.details)}


REGISTRY: dict[str, Exercise] = {}


def register(exercise: Exercise) -> Exercise:
    if exercise.id in REGISTRY:
        raise TutorialError(f"exercise {exercise.id!r} is registered twice")
    if not exercise.hints:
        raise TutorialError(f"exercise {exercise.id!r} needs at least one hint")
    REGISTRY[exercise.id] = exercise
    return exercise


def get(exercise_id: str) -> Exercise:
    try:
        return REGISTRY[exercise_id]
    except KeyError:
        raise UnknownExercise(f"no exercise {exercise_id!r}; the registered ones are: "
                              f"{', '.join(sorted(REGISTRY))}.") from None


def of_notebook(number: str) -> list[Exercise]:
    """The registered exercises of notebook ``number`` ("00", "01", ...), in registration order."""
    return [e for e in REGISTRY.values() if e.notebook == number]


# ---------------------------------------------------------------------------------------------
# Making the reference unavailable while the reader's function runs
# ---------------------------------------------------------------------------------------------

def _resolve(qualified: str) -> Callable:
    """The function whose code runs when ``qualified`` is called: a decorated function (``@torch.no_grad()``,
    ``functools.wraps``) is followed to the function it wraps."""
    module_name, _, attr = qualified.rpartition(".")
    return inspect.unwrap(getattr(importlib.import_module(module_name), attr))


def _blocked(qualified: str):
    short = qualified.removeprefix("tutorial_lib.")
    raise ReferenceUnavailable(
        f"your function called `{short}`, the library's version of what this exercise asks you to "
        f"write. It is unavailable while the check runs your function: compute it yourself "
        f"(other library functions and torch are fine).")


def _raiser_code(qualified: str):
    source = (f"def _unavailable(*args, **kwargs):\n"
              f"    __import__('tutorial_lib.exercises').exercises._blocked({qualified!r})\n")
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<unavailable {qualified}>", "exec"), {"__builtins__": __builtins__}, namespace)
    return namespace["_unavailable"].__code__


@contextmanager
def unavailable(names: Iterable[str]):
    """Inside ``with unavailable(["tutorial_lib.metrics.psnr"]):`` every call of those functions,
    through any name that refers to them, raises :class:`ReferenceUnavailable`. The function's code is
    swapped, not the module attribute, so an alias (``from tutorial_lib.metrics import psnr``, a
    variable bound to it earlier) is caught too. Everything is restored on exit, errors included."""
    swapped = []
    try:
        for qualified in names:
            fn = _resolve(qualified)
            if getattr(fn, "__closure__", None):
                raise TutorialError(f"{qualified} has a closure and cannot be made unavailable")
            swapped.append((fn, fn.__code__))
            fn.__code__ = _raiser_code(qualified)
        yield
    finally:
        for fn, code in reversed(swapped):
            fn.__code__ = code


# ---------------------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------------------

def _record_path(exercise_id: str):
    return results_dir() / RECORD_FOLDER / f"{exercise_id}.json"


def _previous_failures(exercise_id: str) -> int:
    path = _record_path(exercise_id)
    try:
        return int(json.loads(path.read_text()).get("failures", 0))
    except (OSError, ValueError, AttributeError):
        return 0


def _write_record(result: ExerciseResult, failures: int) -> None:
    path = _record_path(result.exercise)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {**result.record(), "failures": failures,
                  "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2))
        tmp.replace(path)
    except OSError as err:  # a read-only results folder must not break the notebook
        print(f"(the check's record could not be written to {path}: {err})")


def _outputs(fn: Callable, cases: Sequence[Sequence[Any]], check_grad: bool):
    """Run ``fn`` on clones of every case; return [(args, output)] (the args keep their grad leaves)."""
    runs = []
    for args in cases:
        cloned = _clone(list(args), check_grad)
        runs.append((cloned, fn(*cloned)))
    return runs


def _grads(out: Any, args: list) -> list[torch.Tensor] | None:
    if not (isinstance(out, torch.Tensor) and out.numel() == 1 and out.requires_grad):
        return None
    inputs = [t for t in _leaves(args) if t.requires_grad]
    if not inputs:
        return []
    grads = torch.autograd.grad(out.sum(), inputs, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, inputs)]


def _matches(got: Any, want: Any, ex: Exercise) -> bool:
    try:
        return _compare(got, want, ex.rtol, ex.atol, "") is None
    except Exception:
        return False


def check(exercise_id: str, candidate: Callable, cases: Iterable[Sequence[Any]], *,
          verbose: bool = True) -> ExerciseResult:
    """Check the reader's ``candidate`` for exercise ``exercise_id`` on ``cases`` (tuples of the
    reference's positional arguments); print one message and record the result (see the module)."""
    ex = get(exercise_id)
    cases = [tuple(c) for c in cases]
    if not cases:
        raise TutorialError(f"{exercise_id}: a check needs at least one case.")
    # 1. expected values and known wrong answers, while the reference is available
    expected = []
    try:
        for args, want in _outputs(ex.reference, cases, ex.check_grad):
            expected.append((want, _grads(want, args) if ex.check_grad else None))
    except Exception as err:  # the check cell's cases do not fit the reference: a bug of the check, not yours
        raise TutorialError(f"{exercise_id}: the library's reference `{ex.reference_name}` fails on the check's "
                            f"cases ({_describe_error(err)}); the check cell is wrong, please report it.") from None
    wrong: dict[str, list] = {}
    for mistake in ex.mistakes:  # with autograd on: some wrong answers differentiate (Fisher, dynamic weights)
        try:
            wrong[mistake.name] = [out for _, out in _outputs(mistake.answer, cases, False)]
        except Exception:  # a mistake that does not apply to these inputs is just not recognised
            continue
    # 2. the reader's function, with the reference unavailable
    details: list[str] = []
    mistake: str | None = None
    status = "failed"
    got_all = []
    with unavailable(ex.guarded):  # a guard that cannot be set up is the check's bug: it is not caught below
        try:
            for i, (args, (want, want_grads)) in enumerate(zip(cases, expected), start=1):
                cloned = _clone(list(args), ex.check_grad)
                got = candidate(*cloned)
                got_all.append(got)
                problem = _compare(got, want, ex.rtol, ex.atol, f"case {i}, output")
                if problem:
                    details.append(problem)
                    break
                if want_grads is not None:
                    if not isinstance(got, torch.Tensor) or not got.requires_grad:
                        mistake = "detached output"
                        details.append(f"case {i}: the output is detached from its inputs, so no gradient "
                                       f"flows (avoid .item(), .detach(), numpy or Python floats inside)")
                        break
                    mine = _grads(got, cloned) or []
                    for j, (a, b) in enumerate(zip(mine, want_grads), start=1):
                        problem = _compare(a, b, ex.rtol, ex.atol, f"case {i}, gradient w.r.t. input {j}")
                        if problem:
                            details.append(problem)
                            break
                    if details:
                        break
        except NotImplementedError:
            status, details = "not attempted", ["not implemented yet: replace `raise NotImplementedError` with your code"]
        except ReferenceUnavailable as err:
            mistake, details = "calls the reference", [str(err)]
        except Exception as err:
            details = [f"your function raised {_describe_error(err)}"]
    passed = status != "not attempted" and not details
    if passed:
        status = "passed"
        details = [f"{len(cases)} case(s) match `{ex.reference_name}`: outputs"
                   + (" and gradients" if ex.check_grad else "")]
    if status == "failed" and mistake is None and got_all:
        for m in ex.mistakes:
            answers = wrong.get(m.name)
            if answers and all(_matches(g, w, ex) for g, w in zip(got_all, answers)):
                # every case run so far matches this wrong answer: name it
                mistake = m.name
                details.append(f"this looks like a known mistake, {m.name}: {m.explain}")
                break
    failures = _previous_failures(ex.id) + (status == "failed")
    hints = list(ex.hints[:min(failures, len(ex.hints))]) if status == "failed" else []
    message = _message(ex, status, details, hints)
    result = ExerciseResult(ex.title, passed, message, details, exercise=ex.id,
                            points=ex.points if passed else 0, max_points=ex.points, status=status,
                            mistake=mistake, hints=hints)
    _write_record(result, failures)
    if verbose:
        print(message)
    return result


def _message(ex: Exercise, status: str, details: list[str], hints: list[str]) -> str:
    points = f"{ex.points} point{'s' if ex.points != 1 else ''}"
    if status == "passed":
        return f"[{PASS}] {ex.title} ({ex.id}, {points}): {details[0]}. Well done!"
    text = f"[{FAIL}] {ex.title} ({ex.id}, {points}): " + "; ".join(details)
    if status == "not attempted":
        return text + "\n  Write your code in the cell above and run this check again; hints come after a first try."
    for k, hint in enumerate(hints, start=1):
        text += f"\n  Hint {k} of {len(ex.hints)}: {hint}"
    if len(hints) < len(ex.hints):
        text += "\n  (another hint comes with the next attempt that does not pass)"
    return text + "\n  Keep going: fix the cell above and run this check again."


def hints(exercise_id: str) -> list[str]:
    """The hints the reader has reached so far for an exercise (after each failed attempt, one more)."""
    ex = get(exercise_id)
    return list(ex.hints[:min(_previous_failures(exercise_id), len(ex.hints))])


# ---------------------------------------------------------------------------------------------
# The course's exercises. References take the cases' arguments; so do the known mistakes.
# ---------------------------------------------------------------------------------------------

def _psnr_ref(pred, target):
    from .metrics import psnr
    return psnr(pred, target)


def _mse(pred, target):
    return ((pred - target) ** 2).mean()


def _frechet_ref(mu_a, cov_a, mu_b, cov_b):
    from .metrics import frechet_from_stats
    return frechet_from_stats(mu_a, cov_a, mu_b, cov_b)


def _sqrtm(s):
    vals, vecs = torch.linalg.eigh((s + s.T) / 2)
    return vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T


register(Exercise(
    "nb00.psnr", "PSNR", 1, _psnr_ref, "metrics.psnr", ("tutorial_lib.metrics.psnr",),
    hints=("PSNR compares the peak value (1 for images in [0, 1]) with the mean squared error of the pair, "
           "on a logarithmic scale in decibels.",
           "Two steps: one number for the error (the mean over every pixel and channel of the squared "
           "difference), then the ratio peak² / error in dB (10 times a base-10 logarithm).",
           "torch.log10 works on tensors; the result should be a scalar tensor, not a Python float."),
    mistakes=(Mistake("root of the error instead of its square", "PSNR uses the mean squared error, not its root "
                      "(10·log10 of 1/RMSE halves the dB)", lambda p, t: 10 * torch.log10(1 / _mse(p, t).sqrt())),
              Mistake("20·log10 of the mean squared error", "20·log10 goes with the RMSE; with the MSE the factor is 10",
                      lambda p, t: 20 * torch.log10(1 / _mse(p, t))),
              Mistake("a missing sign", "a larger error must give a smaller PSNR: peak² / MSE, not MSE / peak²",
                      lambda p, t: 10 * torch.log10(_mse(p, t))),
              Mistake("the mean absolute error instead of the squared one", "PSNR is defined with squared errors",
                      lambda p, t: 10 * torch.log10(1 / (p - t).abs().mean()))),
    check_grad=False))

register(Exercise(
    "nb00.frechet", "Frechet distance", 2, _frechet_ref, "metrics.frechet_from_stats",
    ("tutorial_lib.metrics.frechet_from_stats",),
    hints=("The distance has two parts: how far apart the means are, and how different the two covariances are.",
           "The covariance part is a trace that contains a *matrix* square root: torch.sqrt is element-wise, "
           "which is not the same thing. A symmetric matrix's square root comes from its eigendecomposition "
           "(torch.linalg.eigh): keep the eigenvectors, take the root of the eigenvalues.",
           "Take the root of sqrt(cov_a) @ cov_b @ sqrt(cov_a), which is symmetric, rather than of cov_a @ cov_b, "
           "which is not; clamp tiny negative eigenvalues to 0 before the root."),
    mistakes=(Mistake("an element-wise square root instead of a matrix square root",
                      "torch.sqrt of a matrix takes the root of each entry; the distance needs the matrix whose square is it",
                      lambda ma, ca, mb, cb: float(((ma - mb) ** 2).sum() + torch.trace(
                          ca + cb - 2 * (ca @ cb).clamp(min=0).sqrt()))),
              Mistake("the trace term left out", "two Gaussians with equal means but different spreads are not at distance 0",
                      lambda ma, ca, mb, cb: float(((ma - mb) ** 2).sum())),
              Mistake("the distance of the means left out", "the trace term alone ignores where the two Gaussians sit",
                      lambda ma, ca, mb, cb: float(torch.trace(ca + cb - 2 * _sqrtm(_sqrtm(ca) @ cb @ _sqrtm(ca))))),
              Mistake("the distance of the means not squared", "the first term is |mu_a - mu_b|², a squared norm",
                      lambda ma, ca, mb, cb: float((ma - mb).norm() + torch.trace(
                          ca + cb - 2 * _sqrtm(_sqrtm(ca) @ cb @ _sqrtm(ca)))))),
    check_grad=False, rtol=1e-4, atol=1e-6))


def _fisher_ref(G, D, n, seed):
    from .gan import fisher_diagonal
    return fisher_diagonal(G, D, n=n, seed=seed)


def _fisher_batch(G, D, n, seed, square: bool = True, per_sample_sum: bool = False):
    from .gan import latents
    z = latents(n, G.z_dim, seed, next(G.parameters()).device)
    if per_sample_sum:
        out = {k: torch.zeros_like(p) for k, p in G.named_parameters()}
        for i in range(n):
            G.zero_grad(set_to_none=True)
            D(G(z[i:i + 1])).sum().backward()
            for k, p in G.named_parameters():
                out[k] += p.grad.detach() ** 2
        G.zero_grad(set_to_none=True)
        return out
    G.zero_grad(set_to_none=True)
    D(G(z)).mean().backward()
    out = {k: (p.grad.detach() ** 2 if square else p.grad.detach().clone()) for k, p in G.named_parameters()}
    G.zero_grad(set_to_none=True)
    return out


register(Exercise(
    "nb01.fisher", "Fisher diagonal", 2, _fisher_ref, "gan.fisher_diagonal", ("tutorial_lib.gan.fisher_diagonal",),
    hints=("The Fisher diagonal is an average over latents of a *squared* gradient: the gradient of the "
           "discriminator's logit D(G(z)) with respect to each generator parameter.",
           "Squaring and averaging do not commute: one backward pass on the batch gives the gradient of the mean, "
           "whose square is not the mean of the squares. Run one backward pass per latent, z[i:i+1].",
           "After each backward pass every parameter's .grad holds that latent's gradient: accumulate its square "
           "divided by the number of latents, and clear the gradients (zero_grad) before the next latent and at the end."),
    mistakes=(Mistake("square of the mean, not mean of squares",
                      "one backward pass on the whole batch squares the averaged gradient; the Fisher averages the "
                      "squared per-latent gradients", lambda G, D, n, seed: _fisher_batch(G, D, n, seed)),
              Mistake("the gradient not squared", "the Fisher diagonal is a mean of squared gradients (always >= 0)",
                      lambda G, D, n, seed: _fisher_batch(G, D, n, seed, square=False)),
              Mistake("a sum over latents instead of a mean", "divide by the number of latents",
                      lambda G, D, n, seed: _fisher_batch(G, D, n, seed, per_sample_sum=True))),
    check_grad=False, rtol=1e-3, atol=1e-12))


def _random_direction_ref(noise, delta):
    from .gan import match_block_norms
    return match_block_norms(noise, delta)


def _rescaled(noise, delta, group):
    """``noise`` scaled so that each group of keys (``group(key)``) has Delta's norm there; ``None``:
    multiplied by Delta's block norm without normalising the noise first."""
    from .gan import block_of

    def norm(state, keys):
        return float(torch.sqrt(sum((state[k].float() ** 2).sum() for k in keys)))

    out = {}
    for k in noise:
        if group is None:
            keys = [j for j in delta if block_of(j) == block_of(k)]
            out[k] = noise[k] * norm(delta, keys)
        else:
            keys = [j for j in delta if group(j) == group(k)]
            out[k] = noise[k] * (norm(delta, keys) / norm(noise, keys))
    return out


register(Exercise(
    "nb01.random_direction", "a random direction with Δ's block norms", 2, _random_direction_ref,
    "gan.match_block_norms", ("tutorial_lib.gan.match_block_norms", "tutorial_lib.gan.random_direction"),
    hints=("The control must differ from Δ in direction only: for every block (a layer's weight and bias "
           "together), the random direction must be exactly as long as Δ is there.",
           "A block's length is the square root of the sum of squares over all its tensors; gan.blocks and "
           "gan.block_of (or gan.direction_norms) group the parameter names by block.",
           "Each noise tensor is multiplied by one factor per block: Δ's block norm divided by the noise's block norm."),
    mistakes=(Mistake("one norm for the whole direction", "the layers must keep Δ's share of the change, block by "
                      "block, or a random direction moves some layers far more than Δ does",
                      lambda n, d: _rescaled(n, d, lambda k: "all")),
              Mistake("a norm per tensor, not per block", "the weight and the bias of a layer share one norm",
                      lambda n, d: _rescaled(n, d, lambda k: k)),
              Mistake("the noise not normalised first", "divide by the noise's own block norm before scaling to Δ's",
                      lambda n, d: _rescaled(n, d, None)),
              Mistake("Δ itself", "the control is the noise, rescaled; returning Δ compares Δ with itself",
                      lambda n, d: {k: v.clone() for k, v in d.items()})),
    check_grad=False))


def _distance_ref(G, references):
    from .unlearning import param_distance
    return param_distance(G, references)


def _distance_variant(G, references, how):
    per_model = []
    for ref in references:
        terms = [((p - ref[k]) ** 2) for k, p in G.named_parameters()]
        if how == "sum":
            per_model.append(torch.stack([t.mean() for t in terms]).sum())
        elif how == "pooled":
            per_model.append(torch.cat([t.flatten() for t in terms]).mean())
        else:  # rms
            per_model.append(torch.stack([t.mean() for t in terms]).mean().sqrt())
    return torch.stack(per_model).mean()


register(Exercise(
    "nb02.distance", "distance d", 1, _distance_ref, "unlearning.param_distance",
    ("tutorial_lib.unlearning.param_distance",),
    hints=("d compares the generator's current parameters with each adapted generator θ_N^k, tensor by tensor, "
           "and must stay differentiable in the generator's parameters (stage 2 descends its gradient).",
           "For one reference: the mean squared difference of each parameter tensor (G.named_parameters() gives "
           "the names to look up in the reference), then the mean of those numbers over the tensors.",
           "Then average over the K references; keep everything as torch operations (torch.stack, .mean()), "
           "no .item() or .detach()."),
    mistakes=(Mistake("a sum over tensors instead of a mean", "the sum changes d's scale, and with it the weight γ",
                      lambda G, r: _distance_variant(G, r, "sum")),
              Mistake("one mean over every entry instead of a mean over tensors",
                      "the paper averages per tensor, so a large tensor does not outweigh a small one",
                      lambda G, r: _distance_variant(G, r, "pooled")),
              Mistake("a root of the mean square", "d is a mean of squares, not its root",
                      lambda G, r: _distance_variant(G, r, "rms")))))


def _stage2_ref(G, D, positives, references, kind, gamma, alpha, r1, seed, step_fn=None):
    from .unlearning import one_step
    return one_step(G, D, positives, references, kind, gamma, alpha, r1, seed, step_fn=step_fn)


def _wrong_step(how):
    """The answer of a stage-2 step with one known mistake (through :func:`tutorial_lib.unlearning.one_step`)."""
    from .gan import d_loss_fn, gan_step, g_loss_fn
    from .unlearning import repulsion_loss

    def step(G, D, opt_g, opt_d, real, z, dist, kind, gamma, alpha, r1):
        weight = {"no gamma": 1.0, "sign": -gamma}.get(how, gamma)
        penalty = lambda g: weight * repulsion_loss(kind, dist(g), alpha)  # noqa: E731
        if how != "generator first":
            return gan_step(G, D, opt_g, opt_d, real, z, r1=0.0 if how == "no r1" else r1, g_penalty=penalty)
        fake = G(z)                                  # the generator steps against the discriminator before its update
        g_loss, pen = g_loss_fn(D(fake)), penalty(G)
        opt_g.zero_grad(set_to_none=True)
        (g_loss + pen).backward()
        opt_g.step()
        real = real.detach().requires_grad_(True)
        d_real = D(real)
        (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
        d_loss = d_loss_fn(d_real, D(fake.detach())) + 0.5 * r1 * grad.pow(2).flatten(1).sum(1).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        return {"d_loss": d_loss, "g_loss": g_loss, "penalty": pen}

    return lambda *case: _stage2_ref(*case, step_fn=step)


register(Exercise(
    "nb02.stage2_step", "one stage-2 step", 3, _stage2_ref, "unlearning.stage2_step (through unlearning.unlearn)",
    ("tutorial_lib.unlearning.stage2_step", "tutorial_lib.unlearning.repulsion_loss", "tutorial_lib.gan.gan_step"),
    hints=("Two updates in order: first the discriminator D (positives against the generated batch), then the generator G "
           "against the discriminator as it is after its update. Each update: zero the gradients, backward, optimiser step.",
           "The discriminator's loss is the non-saturating GAN loss (gan.d_loss_fn) on D(real) and D of the *detached* fake "
           "batch, plus the R1 penalty: r1/2 times the mean over the batch of |∂D(x)/∂x|², taken on the positives with "
           "torch.autograd.grad(..., create_graph=True) so that it can be back-propagated.",
           "The generator's loss is gan.g_loss_fn of D(fake) plus gamma times the repulsion loss of d, which dist(G) returns: "
           "IL2 is 1/d, NL2 is −d, EL2 decays as exp(−alpha·d). Return the three losses under the names of the docstring."),
    mistakes=(Mistake("no R1 penalty on the discriminator", "the discriminator's loss adds r1/2 · E|∂D(x)/∂x|² on "
                      "the positives", _wrong_step("no r1")),
              Mistake("the generator stepped before the discriminator", "the discriminator is updated first and the "
                      "generator's adversarial loss uses the updated discriminator", _wrong_step("generator first")),
              Mistake("the repulsion term without its weight γ", "the generator's loss adds gamma · L_rep(d)",
                      _wrong_step("no gamma")),
              Mistake("the repulsion term with the wrong sign", "the losses already decrease as d grows: adding them "
                      "pushes away from θ_N, subtracting them pulls towards it", _wrong_step("sign"))),
    check_grad=False, rtol=1e-3, atol=1e-6))


def _rms(a, b):
    from .restoration import per_image_rmse
    return per_image_rmse(a, b)


def _l1(a, b):
    from .restoration import per_image_l1
    return per_image_l1(a, b)


def _bounded_ref(model, x, y, margin):
    from .restoration import bounded_ascent_loss
    return bounded_ascent_loss(model, x, y, margin)


register(Exercise(
    "nb03.bounded_loss", "bounded forgetting loss", 2, _bounded_ref, "restoration.bounded_ascent_loss",
    ("tutorial_lib.restoration.bounded_ascent_loss",),
    hints=("Ascent should stop once the model's output is no better than the degraded input itself: the loss "
           "compares two errors per image, the input's and the output's, each against the clean image.",
           "The error is the root-mean-square error per image (the quantity PSNR measures): flatten each image, "
           "average the squared differences, take the root (clamp tiny values first so the root's gradient stays "
           "finite).",
           "F.relu of (margin × input error − output error) is zero, with zero gradient, once the output is as far "
           "from the clean image as the input; average it over the batch."),
    mistakes=(Mistake("the L1 error instead of the RMS error", "the bound uses the RMS error, the quantity PSNR measures; "
                      "an L1 bound stops too early on sparse degradations such as rain",
                      lambda m, x, y, margin: torch.relu(margin * _l1(x, y) - _l1(m(x), y)).mean()),
              Mistake("the mean squared error without its root", "take the root of the mean square per image",
                      lambda m, x, y, margin: torch.relu(margin * (x - y).pow(2).flatten(1).mean(1)
                                                         - (m(x) - y).pow(2).flatten(1).mean(1)).mean()),
              Mistake("a bound on the batch mean instead of per image", "compare each image with its own input error",
                      lambda m, x, y, margin: torch.relu(margin * _rms(x, y).mean() - _rms(m(x), y).mean())),
              Mistake("the errors swapped", "the loss is positive while the output is *better* than the input",
                      lambda m, x, y, margin: torch.relu(_rms(m(x), y) - margin * _rms(x, y)).mean()))))


def _pgd_ref(x, delta, grad, eps, alpha):
    from .restoration import pgd_step
    return pgd_step(x, delta, grad, eps, alpha)


register(Exercise(
    "nb03.pgd_step", "PGD step", 1, _pgd_ref, "restoration.pgd_step", ("tutorial_lib.restoration.pgd_step",),
    hints=("An L∞ step moves every pixel of the perturbation by the same amount alpha, in the direction that "
           "increases the loss: only the gradient's sign matters.",
           "After the step, two projections: the perturbation back into the ball |delta| <= eps, then the image "
           "x + delta back into [0, 1].",
           "Return the perturbation, not the image: the clipped image minus x."),
    mistakes=(Mistake("no projection onto [0, 1]", "x + delta must stay a valid image",
                      lambda x, d, g, eps, a: (d + a * g.sign()).clamp(-eps, eps)),
              Mistake("the gradient instead of its sign", "an L∞ step uses sign(grad): every pixel moves by alpha",
                      lambda x, d, g, eps, a: (x + (d + a * g).clamp(-eps, eps)).clamp(0, 1) - x),
              Mistake("the image returned instead of the perturbation", "return (x + delta).clamp(0, 1) − x",
                      lambda x, d, g, eps, a: (x + (d + a * g.sign()).clamp(-eps, eps)).clamp(0, 1)),
              Mistake("clipped before the step instead of after", "project after moving, so |delta| <= eps holds",
                      lambda x, d, g, eps, a: (x + d.clamp(-eps, eps) + a * g.sign()).clamp(0, 1) - x)),
    check_grad=False))


def _membership_ref(model, members, non_members, seed):
    from .restoration import membership_accuracy
    return membership_accuracy(model, members, non_members, seed)


register(Exercise(
    "nb03.membership", "membership test", 1, _membership_ref, "restoration.membership_accuracy",
    ("tutorial_lib.restoration.membership_accuracy",),
    hints=("The attacker sees one number per image, its loss, and a label: 1 for a training image, 0 for "
           "an image the model never saw.",
           "Shuffle the 2n examples with the same rng (rng.permutation of 2n indices), fit on the first half and "
           "score on the second, so the accuracy is measured on images the attacker did not fit.",
           "Standardise the losses with the mean and standard deviation of the fitting half only; "
           "sklearn's LogisticRegression().fit(...).score(...) returns the accuracy."),
    check_grad=False))


def _mid_ref(f, x, n, alpha, seed):
    from .mid import mid_loss
    from .runtime import make_generator
    return mid_loss(f, x, n, alpha, make_generator(seed))


def _mid_variant(f, x, n, alpha, seed, *, per_channel=False, clip=True, target_noisy=False):
    from .runtime import make_generator
    gen = make_generator(seed)
    y = (x + n).clamp(0, 1) if clip else x + n
    shape = x.shape if per_channel else (x.shape[0], 1, *x.shape[-2:])
    keep = (torch.rand(*shape, generator=gen) >= alpha).float().to(x.device)
    return ((f(keep * y, keep[:, :1]) - (y if target_noisy else x)) ** 2).mean()


register(Exercise(
    "nb04.mid_loss", "MID loss", 2, _mid_ref, "mid.mid_loss", ("tutorial_lib.mid.mid_loss",),
    hints=("Three ingredients: a synthetic noisy image made from a clean one and a noise sample, a random mask "
           "that hides a fraction alpha of its pixels, and a squared error against the *clean* image.",
           "The synthetic noisy image is a real image, so it stays in [0, 1]. The mask has one value per pixel, "
           "shared by the colour channels: its shape is (N, 1, H, W). Draw it with torch.rand and the generator "
           "you are given; a pixel is kept where the draw is >= alpha.",
           "The denoiser takes two arguments, the masked image and the mask; the loss is the mean squared error "
           "of its output against x."),
    mistakes=(Mistake("a mask per colour channel instead of one per pixel",
                      "a dropped pixel loses all its colour values: draw the mask with shape (N, 1, H, W)",
                      lambda f, x, n, a, s: _mid_variant(f, x, n, a, s, per_channel=True)),
              Mistake("the synthetic noisy image not clipped to [0, 1]",
                      "x + n can leave [0, 1], which a real sRGB image never does",
                      lambda f, x, n, a, s: _mid_variant(f, x, n, a, s, clip=False)),
              Mistake("the loss against the noisy image", "the target is the clean image x",
                      lambda f, x, n, a, s: _mid_variant(f, x, n, a, s, target_noisy=True)))))


def _residual_ref(f, y, alpha, masks, seed):
    from .mid import denoise
    from .runtime import make_generator
    return y - denoise(f, y, alpha, masks, make_generator(seed))


def _residual_variant(f, y, alpha, masks, seed, *, clamp=True, denoised=False):
    from .mid import mask_input
    from .runtime import make_generator
    gen = make_generator(seed)
    acc = torch.zeros_like(y)
    with torch.no_grad():
        for _ in range(masks):
            masked, keep = mask_input(y, alpha, gen)
            acc += f(masked, keep)
    mean = acc / masks
    mean = mean.clamp(0, 1) if clamp else mean
    return mean if denoised else y - mean


register(Exercise(
    "nb04.residuals", "residual noise set", 2, _residual_ref, "mid.denoise",
    ("tutorial_lib.mid.denoise", "tutorial_lib.mid.residual_noise"),
    hints=("The next noise sample is what the denoiser removes: the noisy image minus its estimate of the clean one.",
           "The estimate averages the denoiser's *outputs* over P random masks (mid.mask_input gives a masked image "
           "and its mask; pass both to f). Use the generator you are given for every mask.",
           "The estimate is an image, so clamp it to [0, 1] before subtracting it from y."),
    mistakes=(Mistake("the estimate not clamped to [0, 1]", "the pseudo-clean image is an image: clamp it",
                      lambda f, y, a, m, s: _residual_variant(f, y, a, m, s, clamp=False)),
              Mistake("the denoised image instead of the residual", "the noise sample is y minus the estimate",
                      lambda f, y, a, m, s: _residual_variant(f, y, a, m, s, denoised=True))),
    check_grad=False))


def critic_loss_and_grads(loss_fn: Callable) -> Callable:
    """Wrap a critic loss ``loss_fn(critics, feats_real, feats_fake, gamma)`` for the check of
    ``nb05.critic_loss``: the wrapper takes ``make`` (which builds fresh critics, feature maps and
    gamma) and returns the loss and its gradient with respect to every critic parameter, so that a
    penalty that does not reach the critics' weights is caught even when its value is right."""
    def run(make):
        critics, feats_real, feats_fake, gamma = make()
        loss = loss_fn(critics, feats_real, feats_fake, gamma)
        if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
            return loss
        params = [p for D in critics.values() for p in D.parameters()]
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return loss.detach(), [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]
    return run


def critic_case(seed: int, gamma: float = 10.0) -> Callable:
    """A case for ``nb05.critic_loss``: ``make()`` builds the same two small critics and random feature
    maps (real and fake) every time it is called, and returns (critics, feats_real, feats_fake, gamma)."""
    from .isp import FeatureDiscriminator

    def make():
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            critics = {"texture": FeatureDiscriminator(4, width=6), "colour": FeatureDiscriminator(2, width=6)}
            real = {"texture": torch.randn(3, 4, 8, 8), "colour": torch.randn(3, 2, 6, 6)}
            fake = {k: 0.5 * v + 0.3 * torch.randn(v.shape) for k, v in real.items()}
        return critics, real, fake, gamma
    return make


def _critic_ref(make):
    from .isp import critic_loss
    return critic_loss_and_grads(critic_loss)(make)


def _critic_variant(critics, feats_real, feats_fake, gamma, *, r2=True, relativistic=True, graph=True, half=True):
    total = 0.0
    for k, D in critics.items():
        d_real, d_fake = D(feats_real[k]), D(feats_fake[k])
        if relativistic:
            total = total + F.softplus(-(d_real - d_fake)).mean()
        else:
            total = total + F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        pens = []
        for x in ((feats_real[k], feats_fake[k]) if r2 else (feats_real[k],)):
            x = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(D(x).sum(), x, create_graph=graph)
            pens.append(g.pow(2).flatten(1).sum(1).mean())
        total = total + (gamma / 2 if half else gamma) * sum(pens)
    return total


register(Exercise(
    "nb05.critic_loss", "critic loss: relativistic pairing with R1 and R2", 2, _critic_ref, "isp.critic_loss",
    ("tutorial_lib.isp.critic_loss", "tutorial_lib.isp.rpgan_d_loss", "tutorial_lib.isp.gradient_penalty"),
    hints=("Each critic D scores a batch of feature maps, one number per image. The relativistic loss looks at the "
           "difference D(real) - D(fake) of paired samples: the critic wants it large. The penalties keep D smooth "
           "around both sets of samples.",
           "softplus(-t) is small when t is large (torch.nn.functional.softplus). For a penalty, take the feature "
           "maps as fresh leaves that require a gradient, ask torch.autograd.grad for the gradient of D's summed "
           "scores with respect to them, and keep its graph (create_graph=True) so the critic's weights still "
           "receive the penalty's gradient.",
           "Per critic: the mean of softplus(-(D(real) - D(fake))), plus gamma / 2 times the sum of the two "
           "penalties; a penalty is the squared gradient norm per image, averaged over the batch. Sum over critics."),
    mistakes=(Mistake("R1 only, no R2", "penalise the gradient at the fake feature maps too (R2)",
                      lambda make: critic_loss_and_grads(lambda *a: _critic_variant(*a, r2=False))(make)),
              Mistake("the standard (non-relativistic) GAN loss", "the loss compares each real score with its paired "
                      "fake score: softplus(-(D(real) - D(fake)))",
                      lambda make: critic_loss_and_grads(lambda *a: _critic_variant(*a, relativistic=False))(make)),
              Mistake("the penalty's graph not kept", "without create_graph=True the penalty has the right value but "
                      "no gradient reaches the critic's weights",
                      lambda make: critic_loss_and_grads(lambda *a: _critic_variant(*a, graph=False))(make)),
              Mistake("gamma instead of gamma / 2", "the two penalties are weighted by gamma / 2",
                      lambda make: critic_loss_and_grads(lambda *a: _critic_variant(*a, half=False))(make))),
    check_grad=False))


def _dyn_ref(make, scales):
    from .isp import dynamic_weights
    losses, params = make()
    return dynamic_weights(losses, params, scales=scales)


def _dyn_variant(make, scales, *, squared=False, ignore_scales=False):
    losses, params = make()
    params = list(params)
    total = [torch.zeros_like(p) for p in params]
    weights = {}
    for i, name in enumerate(losses):
        grads = torch.autograd.grad(losses[name], params, retain_graph=True, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]
        norm = float(torch.sqrt(sum(g.pow(2).sum() for g in grads)))
        weights[name] = 1.0 / (norm ** 2 + 1e-8) if squared else 1.0 / (norm + 1e-8)
        scale = 1.0 if ignore_scales else scales.get(name, 1.0)
        for t, g in zip(total, grads):
            t.add_(g, alpha=scale * weights[name])
    return weights, total


register(Exercise(
    "nb05.dynamic_weights", "dynamic weights", 2, _dyn_ref, "isp.dynamic_weights",
    ("tutorial_lib.isp.dynamic_weights",),
    hints=("Each loss term gets the weight that gives its gradient unit norm, so no term drowns the others "
           "whatever its scale.",
           "torch.autograd.grad(loss, params, retain_graph=...) gives one term's gradient without touching .grad; "
           "keep the graph until the last term. Its norm is the root of the sum of squares over every parameter.",
           "The weight is 1 / (norm + 1e-8), a plain number; every parameter's total adds scale × weight × that "
           "term's gradient (scales.get(name, 1.0))."),
    mistakes=(Mistake("weights 1/‖g‖² instead of 1/‖g‖", "divide by the norm, not its square, so each weighted gradient has norm 1",
                      lambda make, scales: _dyn_variant(make, scales, squared=True)),
              Mistake("the scales ignored", "multiply each term by scales.get(name, 1.0)",
                      lambda make, scales: _dyn_variant(make, scales, ignore_scales=True))),
    check_grad=False))


def summary() -> list[dict[str, Any]]:
    """Every registered exercise: id, title, points, number of hints and of known mistakes."""
    return [{"exercise": e.id, "title": e.title, "points": e.points, "hints": len(e.hints),
             "known mistakes": len(e.mistakes)} for e in REGISTRY.values()]
