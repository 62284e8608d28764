"""Checks for the exercises: compare the reader's implementation with the library's reference.

Each check runs both functions on small random inputs and prints one clear, encouraging message:
what passed, what differs (shape, value or gradient), and a hint. It never lets a traceback through:
a ``NotImplementedError`` from an unfinished exercise is reported as "not implemented yet".

    from tutorial_lib import checks
    checks.check_function("NL2 repulsion", my_nl2, reference_nl2, cases, hint="...")

Every check returns a :class:`CheckResult` (truthy when it passed) so tests can assert on it.

After a check, :meth:`CheckResult.choose` hands the experiment that follows the reader's function
when it passed, and the library's otherwise, and says which one runs::

    result = checks.check_function("Fisher diagonal", my_fisher, reference, cases)
    fisher_fn = result.choose(my_fisher, gan.fisher_diagonal)
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch

PASS, FAIL = "PASSED", "NOT YET"


@dataclass
class CheckResult:
    name: str
    passed: bool
    message: str
    details: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return self.message

    def choose(self, mine: Callable, library: Callable, verbose: bool = True,
               names: tuple[str, str] | None = None) -> Callable:
        """The function the experiment below should run: ``mine`` if this check passed, else ``library``.

        Whichever it is, it says so, so that a reader knows whose code produced the numbers (and,
        since the checkpoint cache is keyed by the code that trains, a model trained with the
        reader's function is cached apart from the library's). ``names`` labels the two functions in
        that message when their own names would not say much (lambdas, wrappers)."""
        chosen = mine if self.passed else library
        mine_name, library_name = (f"`{n}`" for n in names) if names else (_name(mine), _name(library))
        if verbose:
            if self.passed:
                print(f"-> The experiment below runs YOUR {mine_name} (its check passed).")
            else:
                print(f"-> Your {mine_name} has not passed its check yet: the experiment below runs the "
                      f"library's {library_name} instead. Fix it, re-run the check, and the experiment uses yours.")
        return chosen


def combine(name: str, results: Sequence[CheckResult]) -> CheckResult:
    """One result for several checks of one exercise: it passed when every one of them did."""
    passed = bool(results) and all(r.passed for r in results)
    return CheckResult(name, passed, "; ".join(r.message for r in results), [d for r in results for d in r.details])


def _name(fn: Callable) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    module = getattr(fn, "__module__", "") or ""
    if module.startswith("tutorial_lib."):
        return f"`{module.removeprefix('tutorial_lib.')}.{name}`"
    return f"`{name}`"


def _clone(value: Any, requires_grad: bool) -> Any:
    if isinstance(value, torch.Tensor):
        out = value.detach().clone()
        if requires_grad and out.is_floating_point():
            out.requires_grad_(True)
        return out
    if isinstance(value, dict):
        return {k: _clone(v, requires_grad) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_clone(v, requires_grad) for v in value)
    return value


def _leaves(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _leaves(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _leaves(v)]
    return []


def _compare(got: Any, want: Any, rtol: float, atol: float, where: str) -> str | None:
    if isinstance(want, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"{where}: expected a tensor, got {type(got).__name__}"
        if tuple(got.shape) != tuple(want.shape):
            return f"{where}: shape {tuple(got.shape)}, expected {tuple(want.shape)}"
        if not torch.allclose(got.detach().float(), want.detach().float(), rtol=rtol, atol=atol, equal_nan=True):
            diff = (got.detach().float() - want.detach().float()).abs().max().item()
            return f"{where}: values differ (largest difference {diff:.3g})"
        return None
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"{where}: expected a dict, got {type(got).__name__}"
        if set(got) != set(want):
            return f"{where}: keys {sorted(map(str, got))}, expected {sorted(map(str, want))}"
        for key in want:
            problem = _compare(got[key], want[key], rtol, atol, f"{where}[{key!r}]")
            if problem:
                return problem
        return None
    if isinstance(want, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(want):
            return f"{where}: expected a sequence of length {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            problem = _compare(g, w, rtol, atol, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(want, float):
        got_f = float(got) if isinstance(got, (int, float, torch.Tensor)) else None
        if got_f is None or abs(got_f - want) > atol + rtol * abs(want):
            return f"{where}: value {got!r}, expected {want:.6g}"
        return None
    return None if got == want else f"{where}: got {got!r}, expected {want!r}"


def _describe_error(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    line = f" (line: {frames[-1].line})" if frames and frames[-1].line else ""
    return f"{type(err).__name__}: {err}{line}"


def check_function(name: str, candidate: Callable, reference: Callable,
                   cases: Iterable[Sequence[Any]], *, hint: str = "", rtol: float = 1e-4,
                   atol: float = 1e-5, check_grad: bool = True, verbose: bool = True) -> CheckResult:
    """Run ``candidate`` and ``reference`` on every case (a tuple of positional arguments) and compare
    outputs and, for differentiable scalar outputs, the gradients with respect to the tensor inputs."""
    details: list[str] = []
    cases = list(cases)
    for i, args in enumerate(cases, start=1):
        mine_args, ref_args = _clone(list(args), check_grad), _clone(list(args), check_grad)
        try:
            want = reference(*ref_args)
        except Exception as err:  # a bug in the check itself; say so plainly
            details.append(f"case {i}: the reference failed ({_describe_error(err)}); please report this")
            break
        try:
            got = candidate(*mine_args)
        except NotImplementedError:
            return _report(name, False, ["not implemented yet: replace `raise NotImplementedError` with your code"],
                           hint, verbose)
        except Exception as err:
            details.append(f"case {i}: your function raised {_describe_error(err)}")
            break
        problem = _compare(got, want, rtol, atol, f"case {i}, output")
        if problem:
            details.append(problem)
            break
        if check_grad and isinstance(want, torch.Tensor) and want.numel() == 1 and want.requires_grad:
            if not isinstance(got, torch.Tensor) or not got.requires_grad:
                details.append(f"case {i}: the output is detached from its inputs, so no gradient flows "
                               f"(avoid .item(), .detach(), numpy or Python floats inside the loss)")
                break
            mine_in = [t for t in _leaves(mine_args) if t.requires_grad]
            ref_in = [t for t in _leaves(ref_args) if t.requires_grad]
            g_mine = torch.autograd.grad(got.sum(), mine_in, allow_unused=True)
            g_ref = torch.autograd.grad(want.sum(), ref_in, allow_unused=True)
            for j, (a, b) in enumerate(zip(g_mine, g_ref)):
                a = torch.zeros_like(mine_in[j]) if a is None else a
                b = torch.zeros_like(ref_in[j]) if b is None else b
                problem = _compare(a, b, rtol, atol, f"case {i}, gradient w.r.t. input {j + 1}")
                if problem:
                    details.append(problem)
                    break
            if details:
                break
    passed = not details
    if passed:
        details = [f"{len(cases)} case(s) match the reference: outputs"
                   + (" and gradients" if check_grad else "")]
    return _report(name, passed, details, hint, verbose)


def check_values(name: str, got: Any, want: Any, *, hint: str = "", rtol: float = 1e-4, atol: float = 1e-5,
                 verbose: bool = True) -> CheckResult:
    """Compare a value the reader computed with the reference value."""
    problem = _compare(got, want, rtol, atol, "your value")
    return _report(name, problem is None, [problem] if problem else ["matches the reference"], hint, verbose)


def check_true(name: str, condition: Callable[[], bool], *, explain: str, hint: str = "",
               verbose: bool = True) -> CheckResult:
    """A property check (e.g. "the mask drops about alpha of the pixels")."""
    try:
        ok = bool(condition())
        details = [explain if ok else f"not yet: {explain}"]
    except NotImplementedError:
        ok, details = False, ["not implemented yet: replace `raise NotImplementedError` with your code"]
    except Exception as err:
        ok, details = False, [f"your code raised {_describe_error(err)}"]
    return _report(name, ok, details, hint, verbose)


def _report(name: str, passed: bool, details: list[str], hint: str, verbose: bool) -> CheckResult:
    if passed:
        message = f"[{PASS}] {name}: {details[0]}. Well done!"
    else:
        message = f"[{FAIL}] {name}: " + "; ".join(details)
        if hint:
            message += f"\n  Hint: {hint}"
        message += "\n  Keep going: fix the cell above and run this check again."
    if verbose:
        print(message)
    return CheckResult(name, passed, message, details)
