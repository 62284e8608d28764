"""What identifies a function's behaviour, the same on every Python version and operating system.

The checkpoint cache (:mod:`tutorial_lib.checkpoints`) keys a trained model by the code that made
it. CPython's bytecode changes between minor versions, so a key built from it would make a class
cache trained on Python 3.11 useless to a student on 3.12. This module fingerprints the *syntax
tree* of a function's source instead: the same on every version, blind to comments, docstrings,
formatting and line numbers, and changed by any edit that can change what the code does (a
constant, an operator, a name, an argument). Only the standard library is used.

When the source cannot be read or parsed on its own (a lambda in the middle of an expression, code
typed at a prompt), or no longer matches the code that runs (the file was edited after the import),
the fingerprint falls back to the names and constants the compiled code uses,
which is version-independent too, but does not see an operator swapped between the same names.
"""

from __future__ import annotations

import ast
import inspect
import json
import textwrap
import types
import weakref
from typing import Any

_SKIPPED_FIELDS = {"type_comment", "type_params", "kind"}  # version-dependent or irrelevant to behaviour
# class attributes that some Python versions add and that say nothing about behaviour
_CLASS_BOOKKEEPING = ("__module__", "__doc__", "__qualname__", "__firstlineno__", "__static_attributes__")
_TEXTS: "weakref.WeakKeyDictionary[types.FunctionType, tuple]" = weakref.WeakKeyDictionary()


def _tree_text(node: Any) -> Any:
    """A plain, version-stable rendering of an AST: node type and its non-empty fields."""
    if isinstance(node, ast.AST):
        fields = []
        for name, value in ast.iter_fields(node):
            if name in _SKIPPED_FIELDS or value is None or value == []:
                continue
            fields.append([name, _tree_text(value)])
        return [type(node).__name__, fields]
    if isinstance(node, list):
        return [_tree_text(v) for v in node]
    return repr(node)


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]


def _parsed_source(fn: types.FunctionType) -> ast.AST | None:
    try:
        source = textwrap.dedent(inspect.getsource(fn))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError, ValueError):
        return None
    if fn.__name__ == "<lambda>":
        lambdas = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda)]
        return lambdas[0] if len(lambdas) == 1 else tree  # several on one line: the whole statement
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == fn.__name__]
    if len(defs) != 1:
        return None
    node = defs[0]
    node.decorator_list = []
    return node


def _names_and_constants(code: types.CodeType, top_doc: bool) -> list:
    """Names and constants of compiled code, nested code included, docstrings left out (a leading
    string constant: the docstring at the top when ``top_doc``, any leading string in nested code,
    whose docstrings cannot be told apart from other strings here)."""
    consts = []
    for i, c in enumerate(code.co_consts):
        if isinstance(c, types.CodeType):
            consts.append(_names_and_constants(c, True))
        elif not (i == 0 and top_doc and isinstance(c, str)):
            consts.append(repr(c))
    return [list(code.co_names), list(code.co_varnames), consts]


def _matches_running_code(node: ast.AST, fn: types.FunctionType) -> bool:
    """True when ``node`` compiles to the code that runs (the file was not edited since import)."""
    try:
        module = ast.Module(body=[ast.Expr(node) if isinstance(node, ast.Lambda) else node], type_ignores=[])
        compiled = compile(ast.fix_missing_locations(module), "<fingerprint>", "exec")
    except (SyntaxError, ValueError, TypeError):
        return False
    codes = [c for c in compiled.co_consts if isinstance(c, types.CodeType)]
    has_doc = fn.__doc__ is not None
    want = _names_and_constants(fn.__code__, has_doc)
    return any(_names_and_constants(c, has_doc) == want for c in codes)


def function_text(fn: types.FunctionType) -> str:
    """The fingerprint text of one function (see the module). Kept per function object while its
    code stays the same, so that a notebook's many cache lookups read and parse each source once."""
    cached = _TEXTS.get(fn)
    if cached is not None and cached[0] is fn.__code__:
        return cached[1]
    text = _function_text(fn)
    _TEXTS[fn] = (fn.__code__, text)
    return text


def _function_text(fn: types.FunctionType) -> str:
    tree = _parsed_source(fn)
    if tree is not None and isinstance(tree, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) \
            and not _matches_running_code(tree, fn):
        tree = None  # the file changed since the function was compiled: describe the code that runs
    if tree is not None:
        _strip_docstrings(tree)
        return json.dumps(["ast", _tree_text(tree)])
    return json.dumps(["names", _names_and_constants(fn.__code__, fn.__doc__ is not None)])


def class_text(cls: type) -> str:
    """A class's bases and plain attributes (its methods are fingerprinted one by one)."""
    plain = {k: repr(v) for k, v in vars(cls).items()
             if isinstance(v, (int, float, str, bytes, tuple, frozenset, bool, type(None))) and k not in _CLASS_BOOKKEEPING}
    members = sorted(k for k in vars(cls) if k == "__module__" or k not in _CLASS_BOOKKEEPING)
    return json.dumps({"bases": [f"{b.__module__}.{b.__qualname__}" for b in cls.__bases__],
                       "members": members, "values": plain}, sort_keys=True)


__all__ = ["function_text", "class_text"]
