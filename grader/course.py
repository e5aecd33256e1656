"""Instructor operations: release, autograde, feedback, export, self-check.

Everything goes through nbgrader's Python API (``NbGraderAPI``), never through
``nbgrader validate``, whose exit code is 0 even when tests fail. Each operation
reports per lesson and per student, and one broken submission never stops the rest.
"""
from __future__ import annotations

import contextlib
import csv
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import nbformat

from . import config, nbapi, notebooks, preflight, sandbox
from . import limits as limits_mod
from . import workers as workers_mod
from .limits import Limits

MAX_ZIP_BYTES = 200 << 20


# --------------------------------------------------------------------------- helpers
make_api = nbapi.make_api
cell_scores = nbapi.cell_scores
_failure_summary = nbapi.failure_summary


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
    return nbapi.db_url(root)


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

    nbapi.put_venv_on_path()  # a new gradebook runs alembic
    (root / config.WORK).mkdir(parents=True, exist_ok=True)
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
    and reported as renamed. Symbolic links are never followed, and a zip with an entry
    outside itself (``../``, an absolute path) or over the size cap is rejected unopened.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"submissions folder {folder} does not exist: pass a folder with one notebook, folder or zip per student")
    found = Collected()
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        student = entry.stem if entry.is_file() else entry.name
        if entry.is_symlink():
            found.problems[student] = f"{entry.name} is a symbolic link: not graded (submit the file itself)"
        elif entry.is_file() and entry.suffix == ".ipynb":
            found.notebooks[student] = entry
        elif entry.is_file() and entry.suffix == ".zip":
            problem = _unzip(entry, scratch / student)
            if problem:
                found.problems[student] = problem
            else:
                _collect_tree(scratch / student, student, lesson, found)
        elif entry.is_dir():
            _collect_tree(entry, student, lesson, found)
    return found


def _unzip(archive: Path, target: Path) -> str:
    """Extract ``archive`` into ``target``; a problem ('' if none) when it is unsafe or unreadable."""
    try:
        with zipfile.ZipFile(archive) as z:
            infos = z.infolist()
            unsafe = [i.filename for i in infos if _escapes(i.filename)]
            if unsafe:
                return f"zip rejected: entry {unsafe[0]!r} points outside the archive (../ or an absolute path): not graded"
            size = sum(i.file_size for i in infos)
            if size > MAX_ZIP_BYTES:
                return f"zip rejected: {size >> 20} MiB unpacked, over the {MAX_ZIP_BYTES >> 20} MiB cap: not graded"
            z.extractall(target)
    except (zipfile.BadZipFile, OSError) as err:
        return f"not a readable zip ({err}): not graded"
    return ""


def _escapes(name: str) -> bool:
    path = PurePosixPath(name.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts or bool(re.match(r"^[A-Za-z]:", name))


def _collect_tree(tree: Path, student: str, lesson: str, found: Collected) -> None:
    candidates = [p for p in sorted(tree.rglob("*.ipynb"))
                  if ".ipynb_checkpoints" not in p.parts and not p.is_symlink() and p.is_file()]
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


@dataclass(frozen=True)
class Template:
    """What every job of one lesson shares: its source folder, a gradebook holding only it, its release."""

    files: dict[str, bytes]
    gradebook: bytes
    released: object


def template(lesson: str, root: Path) -> Template:
    with tempfile.TemporaryDirectory(prefix="template-") as tmp:
        tmp = Path(tmp)
        source = root / config.SOURCE / lesson
        shutil.copytree(source, tmp / config.SOURCE / lesson, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        _check(make_api(tmp).generate_assignment(lesson, force=True), f"release of {lesson}")
        files = {str(p.relative_to(source)): p.read_bytes() for p in sorted(source.rglob("*"))
                 if p.is_file() and ".ipynb_checkpoints" not in p.parts}
        return Template(files, (tmp / config.WORK / "gradebook.db").read_bytes(),
                        notebooks.read(config.lesson_notebook(lesson, tmp, config.RELEASE)))


def default_limits(lesson: str, root: Path | str = config.REPO, workers: int = 1) -> Limits:
    return Limits(budget_s=limits_mod.default_budget(lesson, root), threads=limits_mod.threads_per_kernel(workers))


def autograde(folder: Path | str, lesson: str, root: Path | str = config.REPO, smoke: bool = True,
              limits: Limits | None = None, workers: int = 1, scheduler=None, progress: bool = False) -> list[StudentResult]:
    """Autograde every student's notebook for ``lesson`` found in ``folder``.

    Each submission is checked (:mod:`grader.preflight`), graded in its own throw-away
    course root with its kernel in a sandbox (:mod:`grader.workers`, :mod:`grader.sandbox`),
    ``workers`` at a time or on the Dask ``scheduler``; then this (trusted) process records
    the results into the real gradebook one by one. The originals are never modified: each
    is copied to ``grader/submitted/<student>/<lesson>/<lesson>.ipynb`` first.
    """
    root = Path(root)
    if lesson not in config.lessons(root):
        raise ValueError(f"unknown lesson {lesson!r}; choose one of: {', '.join(config.lessons(root))}")
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"submissions folder {folder} does not exist: pass a folder with one notebook, folder or zip per student")
    limits = (limits or default_limits(lesson, root, workers)).with_(smoke=smoke)
    if limits.sandbox:
        sandbox.check()
    ensure_in_gradebook(lesson, root)
    shared = template(lesson, root)
    results, jobs = _prepare(folder, lesson, root, shared, limits)
    outcomes = workers_mod.run(jobs, workers=workers, scheduler=scheduler, progress=progress)
    for job in jobs:
        _record(root, lesson, job, outcomes[job.student], results[job.student])
    return [results[s] for s in sorted(results)]


def _prepare(folder, lesson: str, root: Path, shared: Template, limits: Limits):
    titles = {k: preflight.title(notebooks.read(config.lesson_notebook(k, root))) for k in config.lessons(root)}
    results: dict[str, StudentResult] = {}
    jobs: list[workers_mod.Job] = []
    with tempfile.TemporaryDirectory() as scratch:
        found = collect(folder, lesson, Path(scratch))
        for student in sorted(set(found.notebooks) | set(found.problems)):
            notes = [found.problems.get(student, "")]
            if student in found.notebooks:
                checked = _preflight(found.notebooks[student], lesson, shared, titles)
                notes += checked.notes
                if checked.notebook is not None:
                    jobs.append(workers_mod.Job(lesson, student, shared.files, shared.gradebook,
                                                nbformat.writes(checked.notebook).encode(), limits))
            results[student] = StudentResult(student, note="; ".join(filter(None, notes)))
    return results, jobs


def _preflight(path: Path, lesson: str, shared: Template, titles: dict[str, str]) -> preflight.Checked:
    try:
        return preflight.check(path.read_bytes(), lesson, shared.released, preflight.Lessons(titles))
    except Exception as err:  # noqa: BLE001: one odd notebook never stops the rest
        return preflight.Checked(None, [f"could not check the notebook ({type(err).__name__}: {err}): not graded"])


def _record(root: Path, lesson: str, job, outcome, result: StudentResult) -> None:
    """Write one worker's outcome into the real gradebook: nbgrader's autograde, replaying the outputs."""
    from .execution import ReplayOutputs

    result.note = "; ".join(filter(None, [result.note, outcome.note]))
    if outcome.executed is None:
        return
    target = root / config.WORK / "submitted" / job.student / lesson
    target.mkdir(parents=True, exist_ok=True)
    (target / f"{lesson}.ipynb").write_bytes(job.submission)
    with tempfile.TemporaryDirectory(prefix="replay-") as tmp:
        executed = Path(tmp) / "executed.ipynb"
        executed.write_bytes(outcome.executed)
        overrides = nbapi.autograde_pipeline(ReplayOutputs)
        overrides.ReplayOutputs.executed = str(executed)
        recorded = make_api(root, overrides).autograde(lesson, job.student, force=True, create=True)
    if not recorded.get("success"):
        result.note = "; ".join(filter(None, [result.note, "recording failed: " + _failure_summary(recorded)]))
        return
    result.graded = True
    result.cells = cell_scores(root, lesson, job.student)
    result.score = sum(s for s, _ in result.cells.values())
    result.max_score = sum(m for _, m in result.cells.values())


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
