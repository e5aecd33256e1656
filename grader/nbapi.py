"""nbgrader's Python API bound to a course root, and the gradebook reads the grader needs."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from traitlets.config import Config

from . import config


def make_api(root: Path | str = config.REPO, overrides: Config | None = None):
    """An NbGraderAPI bound to the course root ``root`` (``overrides`` merged into the course config)."""
    put_venv_on_path()
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    (Path(root) / config.WORK).mkdir(parents=True, exist_ok=True)
    cfg = config.course_config(root)
    if overrides is not None:
        cfg.merge(overrides)
    coursedir = CourseDirectory(config=cfg)
    return NbGraderAPI(coursedir=coursedir, config=cfg)


def put_venv_on_path() -> None:
    """nbgrader shells out to ``alembic``; find it next to this interpreter even if the venv is not activated."""
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def db_url(root: Path | str) -> str:
    return config.course_config(root).CourseDirectory.db_url


def cell_scores(root: Path | str, lesson: str, student: str) -> dict[str, tuple[float, float]]:
    """grade id -> (score, max score) for one autograded submission (written answers score 0 until graded by hand)."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url(root)) as gb:
        sub = gb.find_submission_notebook(lesson, lesson, student)
        return {g.name: (float(g.score or 0.0), float(g.max_score)) for g in sub.grades}


def failure_summary(outcome: dict) -> str:
    """One line for an nbgrader call that failed."""
    text = (outcome.get("error") or "") + (outcome.get("log") or "")
    if "DeadKernel" in text or "kernel died" in text.lower():
        return "the kernel died while running this notebook (e.g. os._exit, out of memory): not graded"
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "autograding failed: " + (lines[-1] if lines else "unknown error")


def autograde_pipeline(execute) -> Config:
    """nbgrader's autograde preprocessors with ``execute`` in place of its Execute step."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, IgnorePattern, LimitOutput,
                                        SaveAutoGrades)

    c = Config()
    c.Autograde.autograde_preprocessors = [execute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                           SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
    return c
