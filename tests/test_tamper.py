"""grader.tamper: submissions that patch the grading guards, torch or function code are found; honest code is not."""
import nbformat
import pytest

from grader import tamper

HONEST = '''
import torch
from torch import nn
from utils.checks import check_int
model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
model[0].weight.data.zero_()
model.eval(); self_like = type("S", (), {})(); self_like.x = 1
for p in model.parameters():
    p.requires_grad = False
x = torch.zeros(2); x[0] = 1
cfg = {"lr": 0.1}; cfg["lr"] = 0.01
%matplotlib inline
'''

TAMPERING = [
    ("import utils.checks\nutils.checks.own_work = lambda *a: None", "utils.checks.own_work"),
    ("from utils import checks\nimport contextlib\nchecks.own_work = contextlib.nullcontext", "checks.own_work"),
    ("from torch import nn\nclass Fake(nn.Module): pass\nnn.Conv2d = Fake", "nn.Conv2d"),
    ("import torch\ntorch.nn.Conv2d.forward = lambda self, x: x", "torch.nn.Conv2d.forward"),
    ("def mine(): return 1\nfrom utils.arithmetic import summary\nsummary.__code__ = mine.__code__", "__code__"),
    ("import sys\nsys.modules['utils.checks'] = None", "sys.modules"),
    ("import utils.checks as c\nvars(c)['own_work'] = None", "vars(c)"),
    ("import utils.checks as c\nsetattr(c, 'own_' + 'work', None)", "setattr"),
    ("import importlib, utils.checks\nimportlib.reload(utils.checks)", "importlib.reload"),
    ("import builtins\nbuiltins.isinstance = lambda *a: True", "builtins.isinstance"),
]


def _nb(*sources, test_source="check_int(1, 1, 'x')"):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    test = nbformat.v4.new_code_cell(test_source)
    test.metadata["nbgrader"] = {"grade_id": "l00_x_tests", "grade": True, "solution": False, "points": 1}
    nb.cells.append(test)
    return nb


def test_honest_code_is_not_flagged():
    assert tamper.findings(_nb(HONEST)) == []


@pytest.mark.parametrize("source, shown", TAMPERING)
def test_tampering_is_found_and_named(source, shown):
    found = tamper.findings(_nb("import torch", source))
    assert len(found) == 1 and found[0].startswith("cell 2 patches") and shown in found[0], found


def test_lesson_code_and_runtime_switches_are_not_flagged():
    lesson = _nb("import torch\ntorch.nn.Module.dump_patches = True")
    assert tamper.findings(_nb("import torch\ntorch.nn.Module.dump_patches = True"), released=lesson) == []
    assert tamper.findings(_nb("import torch\ntorch.backends.cudnn.benchmark = True")) == []


def test_test_cells_are_skipped_since_the_gradebook_replaces_them():
    nb = _nb(test_source="import utils.checks\nutils.checks.own_work = None")
    assert tamper.findings(nb, graded_ids={"l00_x_tests"}) == []
    assert tamper.findings(nb) != []
