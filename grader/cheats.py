"""The cheat suite: scripted shortcut submissions that must score 0 on the exercise they target.

Each lesson's shortcuts live in ``tests/cheats/lNN.py`` as a list ``CHEATS`` of :class:`Cheat`. A cheat
replaces one solution cell of the *solved* lesson (every other exercise stays honest) with code that
delegates to the library, subclasses the real module, redefines what a test compares against, returns
constants, and so on. Cheats are graded with the real grader in rounds (one cheat per exercise per
round), and the self-check requires each targeted test cell to score 0.
"""
from __future__ import annotations

import importlib.util
import textwrap
from dataclasses import dataclass
from pathlib import Path

import nbformat

from . import config, notebooks

CHEAT_DIR = Path("tests") / "cheats"


@dataclass(frozen=True)
class Cheat:
    """``code`` replaces the solution cell ``lNN_<exercise>``; ``tests`` must then score 0 (default: the
    exercise's own test cell ``lNN_<exercise>_tests``)."""

    exercise: str
    how: str
    code: str
    tests: tuple[str, ...] = ()

    def solution_id(self, prefix: str) -> str:
        return f"{prefix}_{self.exercise}"

    def targets(self, prefix: str) -> tuple[str, ...]:
        return self.tests or (f"{prefix}_{self.exercise}_tests",)


def prefix(lesson: str) -> str:
    """Grade-id prefix of a lesson: ``01_conv_arithmetic`` -> ``l01``."""
    return f"l{lesson[:2]}"


def load(lesson: str, root: Path | str = config.REPO) -> list[Cheat]:
    """The lesson's cheats from ``tests/cheats/lNN.py`` (an empty list when it has none)."""
    path = Path(root) / CHEAT_DIR / f"{prefix(lesson)}.py"
    if not path.exists():
        return []
    spec = importlib.util.spec_from_file_location(f"_cheats_{prefix(lesson)}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.CHEATS)


def rounds(cheats: list[Cheat]) -> list[list[Cheat]]:
    """Group cheats so that no round replaces the same solution cell twice, keeping their order."""
    grouped: list[list[Cheat]] = []
    for cheat in cheats:
        free = next((r for r in grouped if all(c.exercise != cheat.exercise for c in r)), None)
        if free is None:
            grouped.append(free := [])
        free.append(cheat)
    return grouped


def submission(source: nbformat.NotebookNode, lesson: str, cheats: list[Cheat]) -> nbformat.NotebookNode:
    """The solved notebook with each cheat's code in place of its exercise's solution cell."""
    nb = nbformat.from_dict(source)
    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in notebooks.solution_cells(nb)}
    for cheat in cheats:
        cell = by_id.get(cheat.solution_id(prefix(lesson)))
        if cell is None:
            raise KeyError(f"{lesson}: cheat {cheat.how!r} targets {cheat.solution_id(prefix(lesson))}, "
                           f"which is not a solution cell; known: {', '.join(sorted(filter(None, by_id)))}")
        cell.source = textwrap.dedent(cheat.code).strip("\n")
    return nb


def caught(cheats: list[Cheat], lesson: str, scores: dict[str, tuple[float, float]]) -> list[str]:
    """Problems: a cheat whose targeted test cell scored above 0 (``scores``: grade id -> (score, max))."""
    found = []
    for cheat in cheats:
        for grade_id in cheat.targets(prefix(lesson)):
            got, full = scores.get(grade_id, (0.0, 0.0))
            if grade_id not in scores:
                found.append(f"cheat {cheat.how!r}: no test cell {grade_id} in the graded notebook")
            elif got > 0:
                found.append(f"cheat {cheat.how!r} on {cheat.exercise} scores {got:g}/{full:g} on {grade_id}")
    return found
