"""Visible checks for exercises: on failure they say what was expected, what came back, and a hint.

Each check raises :class:`CheckFailed` (an ``AssertionError``) with a readable message,
and prints one ``ok`` line when it passes, so a student sees progress in the cell output.
A student's ``NotImplementedError`` is never caught here: it is the honest "not done yet".
"""
from __future__ import annotations

import math
import numbers

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
