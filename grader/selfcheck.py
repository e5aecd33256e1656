"""The grader's self-check: every autograded test must be able to fail, and the solution must pass.

For each lesson, in a scratch copy of the course: release it, submit the solution
notebook as student ``solution`` and the untouched release as student ``untouched``,
autograde both through nbgrader, and require full marks for the first and zero on
every autograded test cell for the second, whose first failure must be the stub's
``NotImplementedError`` (not, say, a NameError from a broken lesson). Then the lesson's cheat suite
(``tests/cheats/lNN.py``, see :mod:`grader.cheats`) is graded the same way, and every cheat must score 0
on the test it targets. Kernels run as students' do (:mod:`grader.sandbox`: in bubblewrap when it is
installed, within the default memory bound), with generous time limits.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import cheats, config, course, notebooks, sandbox, workers
from .limits import Limits


@dataclass
class LessonCheck:
    lesson: str
    tests: int = 0
    points: float = 0.0
    solution_score: float = 0.0
    untouched_score: float = 0.0
    first_failure: str = "-"
    seconds: float = 0.0
    cheats: int = 0
    cheats_caught: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_lesson(lesson: str, root: Path | str = config.REPO) -> LessonCheck:
    """Run the self-check of one lesson in a temporary course directory."""
    start = time.perf_counter()
    result = LessonCheck(lesson)
    with tempfile.TemporaryDirectory(prefix=f"selfcheck-{lesson}-") as tmp:
        tmp = Path(tmp)
        shutil.copytree(Path(root) / config.SOURCE / lesson, tmp / config.SOURCE / lesson)
        api = course.make_api(tmp, workers.execute_config(_limits()))
        outcome = api.generate_assignment(lesson, force=True)
        if not outcome.get("success"):
            result.problems.append(f"release failed: {outcome.get('error')}")
            return result
        source = config.lesson_notebook(lesson, tmp, config.SOURCE)
        released = config.lesson_notebook(lesson, tmp, config.RELEASE)
        _check_release_text(released, result)
        tests = [c.metadata.nbgrader["grade_id"] for c in notebooks.grade_cells(notebooks.read(source))]
        result.tests = len(tests)
        if not tests:
            result.problems.append("no autograded test cells")
        solution = _autograde(api, tmp, lesson, "solution", source, result)
        untouched = _autograde(api, tmp, lesson, "untouched", released, result)
        _judge(tests, solution, untouched, result)
        _check_solution_runs_clean(tmp, lesson, result)
        result.first_failure = _first_failure(tmp, lesson, tests)
        if result.first_failure not in ("NotImplementedError", "-") or (tests and result.first_failure == "-"):
            result.problems.append(f"first failure on the untouched lesson is {result.first_failure}, not NotImplementedError")
        _check_cheats(api, tmp, lesson, source, result)
    result.seconds = time.perf_counter() - start
    return result


def _limits() -> Limits:
    """Grading as students are graded (in the sandbox, when bwrap is here, with the default memory bound),
    but with time to spare: the self-check judges the tests, not the lesson's speed on a busy machine."""
    return Limits(cell_timeout_s=config.CELL_TIMEOUT_S, budget_s=4 * 3600, threads=os.cpu_count() or 1,
                  sandbox=sandbox.bwrap_path() is not None)


def _check_release_text(released: Path, result: LessonCheck) -> None:
    text = notebooks.source_text(notebooks.read(released))
    for marker in notebooks.SOLUTION_MARKERS + notebooks.HIDDEN_MARKERS:
        if marker in text:
            result.problems.append(f"released notebook still contains {marker!r}")


def _autograde(api, tmp: Path, lesson: str, student: str, notebook: Path, result: LessonCheck) -> dict:
    target = tmp / config.WORK / "submitted" / student / lesson
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(notebook, target / f"{lesson}.ipynb")
    with course.grading_env(smoke=True):
        outcome = api.autograde(lesson, student, force=True, create=True)
    if not outcome.get("success"):
        result.problems.append(f"autograding the {student} notebook failed: {course._failure_summary(outcome)}")
        return {}
    return course.cell_scores(tmp, lesson, student)


def _check_cheats(api, tmp: Path, lesson: str, source: Path, result: LessonCheck) -> None:
    """Grade each round of the lesson's cheat suite; every targeted test cell must score 0."""
    suite = cheats.load(lesson)
    result.cheats = len(suite)
    solved = notebooks.read(source)
    for number, group in enumerate(cheats.rounds(suite), start=1):
        path = tmp / f"cheat-{number}.ipynb"
        notebooks.write(cheats.submission(solved, lesson, group), path)
        scores = _autograde(api, tmp, lesson, f"cheat-{number}", path, result)
        escaped = cheats.caught(group, lesson, scores) if scores else [f"cheat round {number} was not graded"]
        result.problems.extend(escaped)
        result.cheats_caught += sum(1 for c in group if not any(repr(c.how) in p for p in escaped))


def _judge(tests: list[str], solution: dict, untouched: dict, result: LessonCheck) -> None:
    for grade_id in tests:
        got, full = solution.get(grade_id, (0.0, 0.0))
        result.points += full
        result.solution_score += got
        if got < full or full == 0:
            result.problems.append(f"{grade_id}: solution scores {got:g}/{full:g}")
        bad, _ = untouched.get(grade_id, (0.0, 0.0))
        result.untouched_score += bad
        if bad > 0:
            result.problems.append(f"{grade_id}: passes on the untouched lesson (a test that cannot fail)")


def _autograded(tmp: Path, lesson: str, student: str) -> Path:
    return tmp / config.WORK / "autograded" / student / lesson / f"{lesson}.ipynb"


def _check_solution_runs_clean(tmp: Path, lesson: str, result: LessonCheck) -> None:
    """Any error in the solution, graded cell or not (a broken setup cell scores nothing but breaks the lesson)."""
    graded = _autograded(tmp, lesson, "solution")
    if not graded.exists():
        return
    for index, cell in enumerate(notebooks.read(graded).cells):
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                result.problems.append(f"the solution raises {output.ename} in cell {index}: {output.evalue[:120]}")
                break


def _first_failure(tmp: Path, lesson: str, tests: list[str]) -> str:
    graded = _autograded(tmp, lesson, "untouched")
    if not graded.exists():
        return "-"
    for cell in notebooks.read(graded).cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") in tests:
            errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
            if errors:
                return errors[0].ename
    return "-"


def format_table(checks: list[LessonCheck]) -> str:
    head = (f"{'lesson':<32}{'tests':>6}{'points':>8}{'solution':>10}{'untouched':>11}{'cheats':>9}  "
            f"{'first failure':<22}{'time':>7}  status")
    rows = [head, "-" * len(head)]
    for c in checks:
        caught = f"{c.cheats_caught}/{c.cheats}"
        rows.append(f"{c.lesson:<32}{c.tests:>6}{c.points:>8g}{c.solution_score:>10g}{c.untouched_score:>11g}{caught:>9}  "
                    f"{c.first_failure:<22}{c.seconds:>6.0f}s  {'ok' if c.ok else 'FAIL'}")
    for c in checks:
        rows.extend(f"  {c.lesson}: {p}" for p in c.problems)
    return "\n".join(rows)
