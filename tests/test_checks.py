"""utils.checks: the visible checks' messages and the delegation guards used by every hidden test."""
import functools

import pytest
import torch
import torchvision
from torch import nn

from utils import arithmetic, checks
from utils.arithmetic import conv_output_size as aliased


def test_own_work_blocks_every_alias_and_restores():
    partial = functools.partial(arithmetic.conv_output_size, kernel=3)
    with checks.own_work("utils.arithmetic.conv_output_size"):
        for call in (lambda: aliased(32, 3), lambda: arithmetic.conv_output_size(32, 3), lambda: partial(32)):
            with pytest.raises(RuntimeError, match="write it yourself"):
                call()
    assert aliased(32, 3) == 30 and partial(32) == 30


def test_own_work_restores_after_an_error_in_the_block():
    with pytest.raises(ZeroDivisionError):
        with checks.own_work(arithmetic.conv_output_size):
            1 / 0
    assert arithmetic.conv_output_size(10, 3) == 8


def test_own_work_blocks_a_class_its_subclasses_and_wrappers():
    class Sub(torchvision.ops.SqueezeExcitation):
        pass

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.se = torchvision.ops.SqueezeExcitation(8, 2)

        def forward(self, x):
            return self.se(x)

    built = Sub(8, 2)
    with checks.own_work("torchvision.ops.SqueezeExcitation"):
        for make in (lambda: Sub(8, 2), Wrapper, lambda: torchvision.ops.SqueezeExcitation(8, 2)):
            with pytest.raises(RuntimeError, match="write it yourself"):
                make()
        with pytest.raises(RuntimeError, match="write it yourself"):
            built(torch.zeros(1, 8, 2, 2))
    assert Wrapper()(torch.zeros(1, 8, 2, 2)).shape == (1, 8, 2, 2)
    assert "__init__" not in Sub.__dict__


def test_own_work_keeps_closures_working_afterwards():
    def outer(k):
        def inner(n):
            return n - k + 1
        return inner

    f = outer(3)
    with checks.own_work(f):
        with pytest.raises(RuntimeError):
            f(10)
    assert f(10) == 8


def test_reference_refuses_a_replaced_library_attribute(monkeypatch):
    assert checks.reference("utils.arithmetic.summary") is arithmetic.summary
    assert checks.reference("torch.nn.Conv2d") is nn.Conv2d
    fake = eval("lambda *a: 999")  # defined outside utils/arithmetic.py, as a notebook cell would be
    monkeypatch.setattr(arithmetic, "summary", fake)
    with pytest.raises(checks.OwnWorkError, match="replaced"):
        checks.reference("utils.arithmetic.summary")


def test_check_own_class():
    class Mine(nn.Module):
        pass

    class Theirs(torchvision.ops.SqueezeExcitation):
        pass

    checks.check_own_class(Mine, "torchvision.ops.SqueezeExcitation")
    with pytest.raises(checks.OwnWorkError, match="subclass of torchvision"):
        checks.check_own_class(Theirs)
    with pytest.raises(checks.CheckFailed):
        checks.check_own_class(lambda: None)


def test_the_guards_cannot_be_rebound_from_a_notebook():
    import contextlib

    with pytest.raises(AttributeError, match="read-only"):
        checks.own_work = contextlib.nullcontext
    with pytest.raises(AttributeError, match="read-only"):
        setattr(checks, "reference", None)
    with pytest.raises(AttributeError, match="read-only"):
        del checks.check_own_class
    assert checks.own_work.__module__ == "utils.checks"
