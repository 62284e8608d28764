import torch

from tutorial_lib import checks


def reference(x, y):
    return ((x - y) ** 2).mean()


CASES = [(torch.randn(4, generator=torch.Generator().manual_seed(i)),
          torch.randn(4, generator=torch.Generator().manual_seed(10 + i))) for i in range(3)]


def test_correct_implementation_passes(capsys):
    result = checks.check_function("MSE", lambda x, y: ((y - x) ** 2).mean(), reference, CASES)
    assert result and "[PASSED]" in capsys.readouterr().out


def test_not_implemented_is_friendly(capsys):
    def stub(x, y):
        raise NotImplementedError

    result = checks.check_function("MSE", stub, reference, CASES, hint="mean of squared differences")
    out = capsys.readouterr().out
    assert not result and "not implemented yet" in out and "Hint: mean of squared" in out
    assert "Traceback" not in out


def test_wrong_value_shape_gradient_and_error_are_explained():
    wrong_value = checks.check_function("MSE", lambda x, y: ((x - y) ** 2).sum(), reference, CASES, verbose=False)
    assert not wrong_value and "values differ" in wrong_value.message
    wrong_shape = checks.check_function("MSE", lambda x, y: (x - y) ** 2, reference, CASES, verbose=False)
    assert "shape (4,), expected ()" in wrong_shape.message
    detached = checks.check_function("MSE", lambda x, y: torch.tensor(float(((x - y) ** 2).mean().detach())), reference,
                                     CASES, verbose=False)
    assert "detached" in detached.message
    crash = checks.check_function("MSE", lambda x, y: x @ torch.ones(3), reference, CASES, verbose=False)
    assert "your function raised RuntimeError" in crash.message


def test_gradient_mismatch_is_found():
    def bad_grad(x, y):  # same value, wrong gradient w.r.t. y
        return ((x - y.detach()) ** 2).mean()

    result = checks.check_function("MSE", bad_grad, reference, CASES, verbose=False)
    assert not result and "gradient w.r.t. input 2" in result.message


def test_check_values_and_true():
    assert checks.check_values("mean", torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]), verbose=False)
    assert not checks.check_values("mean", 1.5, 2.0, verbose=False)
    assert checks.check_true("positive", lambda: 1 > 0, explain="it is positive", verbose=False)

    def unfinished():
        raise NotImplementedError

    result = checks.check_true("stub", unfinished, explain="x", verbose=False)
    assert not result and "not implemented yet" in result.message


def test_dict_outputs_are_compared_key_by_key():
    ref = lambda x: {"a": x * 2, "b": float(x.sum())}  # noqa: E731
    cases = [(torch.ones(3),)]
    assert checks.check_function("dict", lambda x: {"a": 2 * x, "b": float(x.sum())}, ref, cases,
                                 check_grad=False, verbose=False)
    missing = checks.check_function("dict", lambda x: {"a": 2 * x}, ref, cases, check_grad=False, verbose=False)
    assert "keys ['a'], expected ['a', 'b']" in missing.message
    wrong = checks.check_function("dict", lambda x: {"a": 3 * x, "b": 3.0}, ref, cases, check_grad=False, verbose=False)
    assert "output['a']: values differ" in wrong.message


def test_choose_hands_the_experiment_the_readers_function_only_after_it_passes(capsys):
    def mine(x):
        return x * 2

    def library(x):
        return x + x

    passed = checks.check_function("double", mine, library, [(torch.ones(2),)])
    assert passed.choose(mine, library) is mine
    assert "runs YOUR `" in capsys.readouterr().out

    def broken(x):
        raise NotImplementedError

    failed = checks.check_function("double", broken, library, [(torch.ones(2),)])
    assert failed.choose(broken, library, names=("my_double", "lib.double")) is library
    out = capsys.readouterr().out
    assert "`my_double` has not passed" in out and "library's `lib.double`" in out


def test_combine_passes_only_when_every_check_passed():
    ok = checks.check_values("a", 1.0, 1.0, verbose=False)
    bad = checks.check_values("b", 1.0, 2.0, verbose=False)
    assert checks.combine("ab", [ok, ok]) and not checks.combine("ab", [ok, bad]) and not checks.combine("ab", [])
