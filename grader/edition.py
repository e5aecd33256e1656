"""The student edition: the folder students receive instead of the repository.

It holds the released ``lessons/``, ``utils/``, a student README and Makefile (``make lab``,
``make check``), requirements without the instructor's tools, a ``pyproject.toml`` that installs
``utils`` only, and ``jupyter_config/``, where the Lab it opens finds its settings: nbgrader's
instructor extensions (Formgrader, Create Assignment, the course list) off, the Assignment List and
Validate on, JupyterLab's news prompt off. Nothing of ``solutions/``, ``tests/`` or ``grader/``
goes in, and the result is scanned for every solution and hidden-test line before it is reported.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from . import config, leaks, readme

FILES = Path(__file__).resolve().parent / "student_files"
TEMPLATES = ("Makefile", "pyproject.toml")
STAMP = ".student-edition"
# Packages only the instructor's side uses (executing, testing, autograding); nbgrader stays: Validate needs it.
INSTRUCTOR_ONLY = ("papermill", "pytest", "psutil", "dask")
DISABLED_LAB_PLUGINS = ("@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment",
                        "@jupyter/nbgrader:course-list")
DISABLED_SERVER_EXTENSIONS = ("nbgrader.server_extensions.formgrader", "nbgrader.server_extensions.course_list")
NEWS_SETTINGS = ("@jupyterlab/apputils-extension", "notification")
# What must never be in an edition (the instructor's side of the repository).
FORBIDDEN = ("solutions", "tests", "grader", "benchmarks", "build", ".ci", ".github", "nbgrader_config.py")


def build(dest: Path | str, root: Path | str = config.REPO) -> Path:
    """Write the student edition into ``dest`` (new, empty, or an earlier edition) and check it for leaks."""
    dest, root = Path(dest), Path(root)
    _prepare(dest)
    _copy_tree(root / config.RELEASE, dest / "lessons")
    _copy_tree(root / "utils", dest / "utils")
    for name in TEMPLATES + ("nbgrader_config.py",):
        target = dest / ("jupyter_config" if name == "nbgrader_config.py" else "") / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FILES / name, target)
    shutil.copyfile(root / "torch.mk", dest / "torch.mk")
    (dest / "requirements.txt").write_text(student_requirements((root / "requirements.txt").read_text()))
    (dest / "README.md").write_text(student_readme(root))
    write_jupyter_config(dest / "jupyter_config")
    (dest / STAMP).write_text("a student edition written by `python -m grader student-edition`\n")
    check(dest, root)
    return dest


def _prepare(dest: Path) -> None:
    if dest.exists() and any(dest.iterdir()):
        if not (dest / STAMP).exists():
            raise ValueError(f"{dest} is not empty and holds no earlier student edition: choose a new or empty folder")
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)


def _copy_tree(source: Path, target: Path) -> None:
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is missing: run `python -m grader release` first")
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints"))


def student_requirements(text: str) -> str:
    """The course's requirements without its header comment and the instructor-only packages."""
    kept = [line for line in text.splitlines() if line.strip() and not line.startswith("#")
            and re.match(r"[A-Za-z0-9_.-]*", line.strip()).group().lower() not in INSTRUCTOR_ONLY]
    return "# The student edition's environment: `make setup` installs it into .venv; `-e .` installs utils/.\n" + \
        "\n".join(kept) + "\n"


def student_readme(root: Path) -> str:
    """The student README, with the repository README's lesson table when it has one."""
    try:
        table = readme.read_section("lesson-table", root).strip()
    except (OSError, ValueError):
        table = "The notebooks are in `lessons/`, one folder per lesson, in order."
    return (FILES / "README.md").read_text().replace("<!-- lessons -->", table)


def write_jupyter_config(folder: Path) -> None:
    """The Lab's settings: instructor plugins and server extensions off, the news prompt off."""
    _write_json(folder / "labconfig" / "page_config.json",
                {"disabledExtensions": {plugin: True for plugin in DISABLED_LAB_PLUGINS}})
    _write_json(folder / "jupyter_server_config.json",
                {"ServerApp": {"jpserver_extensions": {ext: False for ext in DISABLED_SERVER_EXTENSIONS}},
                 "LabApp": {"news_url": None}})
    package, plugin = NEWS_SETTINGS
    _write_json(folder / "lab" / "user-settings" / package / f"{plugin}.jupyterlab-settings", {"fetchNews": "false"})


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def problems(dest: Path | str, root: Path | str = config.REPO) -> list[str]:
    """Everything wrong with an edition: instructor paths present, solution or hidden-test lines."""
    dest = Path(dest)
    found = [f"{dest / name} must not be in a student edition" for name in FORBIDDEN if (dest / name).exists()]
    found += [f"{dest / name} is missing" for name in ("lessons", "utils", "README.md", "Makefile") if not (dest / name).exists()]
    found += [str(leak) for leak in leaks.scan(dest, leaks.secret_lines(root))]
    return found


def check(dest: Path | str, root: Path | str = config.REPO) -> None:
    """Raise ``RuntimeError`` listing every problem of the edition in ``dest``."""
    found = problems(dest, root)
    if found:
        shown = "\n".join(found[:40]) + (f"\n... and {len(found) - 40} more" if len(found) > 40 else "")
        raise RuntimeError(f"the student edition in {dest} is not fit to hand out:\n{shown}")
