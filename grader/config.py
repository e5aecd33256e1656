"""nbgrader configuration of the course, in one place.

The repository is the nbgrader course root: ``solutions/`` is nbgrader's source
folder, ``lessons/`` its release folder, and everything a grading session produces
(submissions, autograded copies, feedback, the gradebook) lives under ``grader/``
and is git-ignored.
"""
from __future__ import annotations

import re
from pathlib import Path

from traitlets.config import Config

REPO = Path(__file__).resolve().parent.parent
SOURCE = "solutions"
RELEASE = "lessons"
WORK = "grader"
LESSON_PATTERN = re.compile(r"^\d\d_[a-z0-9_]+$")

# A test cell fails by raising. Anything a passing cell writes to stderr (a library
# warning, a tqdm bar) must not zero it, so every stderr stream is dropped before scoring.
ANY_STDERR = r"[\s\S]*"

# nbgrader's own Execute (used only by the self-check's unsandboxed path): training cells run for minutes in
# full mode, and nbgrader's default of 30 s would kill them. Sandboxed autograding has its own limits
# (grader/limits.py: 120 s per cell, a budget per submission).
CELL_TIMEOUT_S = 900


def course_config(root: Path | str = REPO) -> Config:
    """The traitlets Config for nbgrader with ``root`` as course directory."""
    root = Path(root).resolve()
    c = Config()
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.source_directory = SOURCE
    c.CourseDirectory.release_directory = RELEASE
    c.CourseDirectory.submitted_directory = f"{WORK}/submitted"
    c.CourseDirectory.autograded_directory = f"{WORK}/autograded"
    c.CourseDirectory.feedback_directory = f"{WORK}/feedback"
    c.CourseDirectory.db_url = f"sqlite:///{root / WORK / 'gradebook.db'}"
    c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".*"]
    c.Execute.timeout = CELL_TIMEOUT_S
    c.Execute.kernel_name = "python3"
    c.IgnorePattern.pattern = ANY_STDERR
    c.IgnorePattern.enabled = True
    c.GenerateFeedback.preprocessors = _feedback_preprocessors()
    c.ScrubSecrets.root = str(root)
    c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
    c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
    return c


def _feedback_preprocessors() -> list:
    """nbgrader's feedback pipeline plus ClearHiddenTests and ScrubSecrets, so feedback never reveals hidden
    tests, solutions or model answers: not in cells, and not in what a submission printed."""
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from nbgrader.preprocessors import ClearHiddenTests, GetGrades

    from .scrub import ScrubSecrets

    return [GetGrades, ClearHiddenTests, ScrubSecrets, CSSHTMLHeaderPreprocessor]


def lessons(root: Path | str = REPO) -> list[str]:
    """Lesson ids (assignment folders under ``solutions/``), sorted by lesson number."""
    source = Path(root) / SOURCE
    return sorted(p.name for p in source.iterdir() if p.is_dir() and LESSON_PATTERN.match(p.name))


def lesson_notebook(lesson: str, root: Path | str = REPO, folder: str = SOURCE) -> Path:
    """The one notebook of a lesson: ``<folder>/<lesson>/<lesson>.ipynb``."""
    return Path(root) / folder / lesson / f"{lesson}.ipynb"
