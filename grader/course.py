"""Instructor operations: release, autograde, feedback, export, self-check.

Everything goes through nbgrader's Python API (``NbGraderAPI``), never through
``nbgrader validate``, whose exit code is 0 even when tests fail. Each operation
reports per lesson and per student, and one broken submission never stops the rest.
"""
from __future__ import annotations

import contextlib
import csv
import os
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from . import config, notebooks


# --------------------------------------------------------------------------- helpers
def make_api(root: Path | str = config.REPO):
    """An NbGraderAPI bound to the course root ``root``."""
    _put_venv_on_path()
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    (Path(root) / config.WORK).mkdir(parents=True, exist_ok=True)
    cfg = config.course_config(root)
    coursedir = CourseDirectory(config=cfg)
    return NbGraderAPI(coursedir=coursedir, config=cfg)


def _put_venv_on_path() -> None:
    """nbgrader shells out to ``alembic``; find it next to this interpreter even if the venv is not activated."""
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


@contextlib.contextmanager
def grading_env(smoke: bool = True):
    """Environment for autograding kernels: smoke mode (kernels cannot take papermill parameters)."""
    saved = {k: os.environ.get(k) for k in ("COURSE_SMOKE", "PYTHONWARNINGS", "MPLBACKEND")}
    os.environ.update(COURSE_SMOKE="1" if smoke else "0", PYTHONWARNINGS="ignore", MPLBACKEND="Agg")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _check(result: dict, what: str) -> None:
    if not result.get("success"):
        raise RuntimeError(f"{what} failed:\n{result.get('error') or ''}\n{result.get('log') or ''}")


def _db_url(root: Path) -> str:
    return config.course_config(root).CourseDirectory.db_url


# --------------------------------------------------------------------------- release
def release(lessons: list[str] | None = None, root: Path | str = config.REPO) -> list[Path]:
    """Regenerate ``lessons/<lesson>/`` from ``solutions/<lesson>/`` and record it in the gradebook."""
    root = Path(root)
    api = make_api(root)
    written = []
    for lesson in lessons or config.lessons(root):
        _check(api.generate_assignment(lesson, force=True), f"release of {lesson}")
        released = config.lesson_notebook(lesson, root, config.RELEASE)
        notebooks.normalize_file(released)
        written.append(released)
    return written


def ensure_in_gradebook(lesson: str, root: Path) -> None:
    """Autograding needs the lesson's cells in the gradebook; record them without touching ``lessons/``."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(_db_url(root)) as gb:
        try:
            gb.find_assignment(lesson)
            return
        except MissingEntry:
            pass
    with tempfile.TemporaryDirectory() as tmp:
        api = make_api(root)
        api.coursedir.release_directory = os.path.relpath(tmp, root)
        _check(api.generate_assignment(lesson, force=True), f"recording {lesson} in the gradebook")


# --------------------------------------------------------------------------- collecting submissions
@dataclass
class Collected:
    """Submissions found in a folder: student id -> notebook path, and what was wrong."""

    notebooks: dict[str, Path] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)


def collect(folder: Path | str, lesson: str, scratch: Path) -> Collected:
    """Find one notebook per student in ``folder``.

    Accepted layouts (mixing is fine): ``<student>.ipynb``; ``<student>/.../<any>.ipynb``;
    ``<student>.zip`` holding the notebook anywhere inside. Inside a folder or zip the
    notebook named ``<lesson>.ipynb`` wins; a single notebook with another name is taken
    and reported as renamed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"submissions folder {folder} does not exist: pass a folder with one notebook, folder or zip per student")
    found = Collected()
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        student = entry.stem if entry.is_file() else entry.name
        if entry.is_file() and entry.suffix == ".ipynb":
            found.notebooks[student] = entry
        elif entry.is_file() and entry.suffix == ".zip":
            _collect_tree(_unzip(entry, scratch / student), student, lesson, found)
        elif entry.is_dir():
            _collect_tree(entry, student, lesson, found)
    return found


def _unzip(archive: Path, target: Path) -> Path:
    try:
        with zipfile.ZipFile(archive) as z:
            z.extractall(target)
    except zipfile.BadZipFile:
        target.mkdir(parents=True, exist_ok=True)
    return target


def _collect_tree(tree: Path, student: str, lesson: str, found: Collected) -> None:
    candidates = [p for p in sorted(tree.rglob("*.ipynb")) if ".ipynb_checkpoints" not in p.parts]
    exact = [p for p in candidates if p.name == f"{lesson}.ipynb"]
    if exact:
        found.notebooks[student] = exact[0]
    elif len(candidates) == 1:
        found.notebooks[student] = candidates[0]
        found.problems[student] = f"notebook was renamed to {candidates[0].name}; graded anyway"
    elif candidates:
        names = ", ".join(p.name for p in candidates)
        found.problems[student] = f"no {lesson}.ipynb and several other notebooks ({names}): not graded"
    else:
        found.problems[student] = f"no notebook found (expected {lesson}.ipynb): not graded"


# --------------------------------------------------------------------------- autograde
@dataclass
class StudentResult:
    student: str
    score: float = 0.0
    max_score: float = 0.0
    graded: bool = False
    note: str = ""
    cells: dict[str, tuple[float, float]] = field(default_factory=dict)


def autograde(folder: Path | str, lesson: str, root: Path | str = config.REPO, smoke: bool = True) -> list[StudentResult]:
    """Autograde every student's notebook for ``lesson`` found in ``folder``.

    The originals are never modified: each is copied to
    ``grader/submitted/<student>/<lesson>/<lesson>.ipynb`` first.
    """
    root = Path(root)
    if lesson not in config.lessons(root):
        raise ValueError(f"unknown lesson {lesson!r}; choose one of: {', '.join(config.lessons(root))}")
    ensure_in_gradebook(lesson, root)
    with tempfile.TemporaryDirectory() as scratch:
        found = collect(folder, lesson, Path(scratch))
        for student, path in found.notebooks.items():
            target = root / config.WORK / "submitted" / student / lesson
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target / f"{lesson}.ipynb")
    results = []
    api = make_api(root)
    for student in sorted(set(found.notebooks) | set(found.problems)):
        result = StudentResult(student, note=found.problems.get(student, ""))
        if student in found.notebooks:
            _grade_one(api, lesson, student, result, smoke)
        results.append(result)
    return results


def _grade_one(api, lesson: str, student: str, result: StudentResult, smoke: bool) -> None:
    with grading_env(smoke):
        outcome = api.autograde(lesson, student, force=True, create=True)
    if not outcome.get("success"):
        result.note = "; ".join(filter(None, [result.note, _failure_summary(outcome)]))
        return
    result.graded = True
    result.cells = cell_scores(api.coursedir.root, lesson, student)
    result.score = sum(s for s, _ in result.cells.values())
    result.max_score = sum(m for _, m in result.cells.values())


def _failure_summary(outcome: dict) -> str:
    text = (outcome.get("error") or "") + (outcome.get("log") or "")
    if "DeadKernel" in text or "Kernel died" in text or "kernel died" in text.lower():
        return "the kernel died while running this notebook (e.g. os._exit, out of memory): not graded"
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "autograding failed: " + (lines[-1] if lines else "unknown error")


def cell_scores(root: Path | str, lesson: str, student: str) -> dict[str, tuple[float, float]]:
    """grade id -> (score, max score) for one autograded submission (written answers score 0 until graded by hand)."""
    from nbgrader.api import Gradebook

    with Gradebook(_db_url(Path(root))) as gb:
        sub = gb.find_submission_notebook(lesson, lesson, student)
        return {g.name: (float(g.score or 0.0), float(g.max_score)) for g in sub.grades}


def format_results(lesson: str, results: list[StudentResult]) -> str:
    rows = [f"{lesson}: {len(results)} submission(s)", f"{'student':<24}{'score':>12}  note"]
    for r in results:
        score = f"{r.score:g}/{r.max_score:g}" if r.graded else "-"
        rows.append(f"{r.student:<24}{score:>12}  {r.note}")
    return "\n".join(rows)


# --------------------------------------------------------------------------- feedback and export
def feedback(lesson: str, student: str | None = None, root: Path | str = config.REPO) -> Path:
    """HTML feedback (hidden tests removed) under ``grader/feedback/<student>/<lesson>/``."""
    api = make_api(root)
    _check(api.generate_feedback(lesson, student, force=True), f"feedback for {lesson}")
    return Path(root) / config.WORK / "feedback"


def export(out: Path | str, root: Path | str = config.REPO) -> Path:
    """One CSV row per student and lesson: score, max score, and whether manual grading is pending."""
    from nbgrader.api import Gradebook, MissingEntry

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with Gradebook(_db_url(Path(root))) as gb, out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", "lesson", "score", "max_score", "needs_manual_grade"])
        for assignment in gb.assignments:
            for student in gb.students:
                try:
                    sub = gb.find_submission(assignment.name, student.id)
                except MissingEntry:
                    writer.writerow([student.id, assignment.name, 0, assignment.max_score, "not submitted"])
                    continue
                writer.writerow([student.id, assignment.name, sub.score, sub.max_score, sub.needs_manual_grade])
    return out
