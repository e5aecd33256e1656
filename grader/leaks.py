"""Leak checks for everything handed to students or published: no solution or hidden-test text.

The secrets are the lines between nbgrader's solution and hidden-test markers in every
``solutions/`` notebook, and the whole of each written-answer cell (the model answer). Lines that
the course publishes anyway (in the released ``lessons/`` or in ``utils/``) and short, common lines
(``return x``, ``import torch``) are not secrets. A scan reads every file of a folder: notebooks and
JSON by their decoded strings, HTML with its tags stripped, anything else as text, so a secret is
found whether it sits in a cell, an output, a traceback or a rendered page.
"""
from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

from . import config, notebooks

MIN_CHARS = 24  # shorter lines (``return n * n``, ``model.eval()``) say nothing about an answer
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
_BLOCKS = (notebooks.SOLUTION_MARKERS, notebooks.HIDDEN_MARKERS)
_TAG = re.compile(r"<[^>]*>")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TRACEBACK_PREFIX = re.compile(r"^(?:-*>\s*)?\d+\s+")  # "----> 12 " and "     13 " in IPython tracebacks
_JSON_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"\s*,?\s*$')
_BINARY = {".png", ".jpg", ".jpeg", ".gif", ".pdf", ".zip", ".gz", ".pt", ".npy", ".db", ".pyc", ".woff", ".woff2"}


@dataclass(frozen=True)
class Leak:
    path: Path
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def normal(line: str) -> str:
    """The comparable form of a line: no ANSI colours, traceback line numbers, comment or heading marks,
    markdown emphasis; single spaces."""
    line = _TRACEBACK_PREFIX.sub("", _ANSI.sub("", line).strip()).lstrip("#> ")
    return re.sub(r"\s+", " ", re.sub(r"[*`$\\]", "", line)).strip()


def secret_lines(root: Path | str = config.REPO) -> dict[str, str]:
    """Every solution and hidden-test line of every lesson (normalised), mapped to where it comes from."""
    root = Path(root)
    public = public_lines(root)
    secrets = {}
    for lesson in config.lessons(root):
        for cell in notebooks.read(config.lesson_notebook(lesson, root)).cells:
            where = f"{lesson} cell {cell.metadata.get('nbgrader', {}).get('grade_id', cell.get('id'))}"
            for line in _secret_part(cell):
                key = normal(line)
                if len(key) >= MIN_CHARS and key not in public:
                    secrets.setdefault(key, where)
    return secrets


def _secret_part(cell) -> list[str]:
    """The lines of a cell that students must not see: inside the markers, or a whole written answer."""
    lines = cell.source.splitlines()
    nbg = cell.metadata.get("nbgrader", {})
    if cell.cell_type == "markdown" and nbg.get("solution") and not any(m in cell.source for m in MARKERS):
        return lines
    inside, found = False, []
    for line in lines:
        if any(end in line for _, end in _BLOCKS):
            inside = False
        elif any(begin in line for begin, _ in _BLOCKS):
            inside = True
        elif inside:
            found.append(line)
    return found


def public_lines(root: Path | str = config.REPO) -> set[str]:
    """Normalised lines that the course publishes on purpose: the released lessons and ``utils/``."""
    root = Path(root)
    lines = set()
    for path in sorted((root / config.RELEASE).glob("*/*.ipynb")):
        lines.update(normal(line) for line in notebooks.source_text(notebooks.read(path)).splitlines())
    for path in sorted((root / "utils").rglob("*.py")):
        lines.update(normal(line) for line in path.read_text(encoding="utf-8").splitlines())
    return lines


def scan(folder: Path | str, secrets: dict[str, str] | None = None) -> list[Leak]:
    """Every marker and every secret line found in any file under ``folder``."""
    secrets = secret_lines() if secrets is None else secrets
    leaks = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() not in _BINARY):
        for number, text in _lines(path):
            leaks.extend(_check_line(path, number, text, secrets))
    return leaks


def _check_line(path: Path, number: int, text: str, secrets: dict[str, str]) -> list[Leak]:
    found = [Leak(path, number, f"nbgrader marker {m!r}") for m in MARKERS if m in text]
    for part in text.splitlines() or [text]:
        key = normal(part)
        if key in secrets:
            found.append(Leak(path, number, f"line of {secrets[key]}: {part.strip()[:100]!r}"))
    return found


def _lines(path: Path):
    """(line number, text) of a file, decoded the way a reader sees it."""
    text = path.read_text(encoding="utf-8", errors="replace")
    suffix = path.suffix.lower()
    for number, raw in enumerate(text.splitlines(), 1):
        if suffix in (".ipynb", ".json"):
            match = _JSON_STRING.search(raw)
            raw = _json_string(match.group(1)) if match else raw
        elif suffix in (".html", ".htm", ".svg", ".xml"):
            raw = html.unescape(_TAG.sub("", raw))
        yield number, raw


def _json_string(body: str) -> str:
    try:
        return json.loads(f'"{body}"')
    except ValueError:
        return body


def check(folder: Path | str, root: Path | str = config.REPO) -> None:
    """Raise ``RuntimeError`` naming file and line of every leak under ``folder``."""
    leaks = scan(folder, secret_lines(root))
    if leaks:
        shown = "\n".join(str(leak) for leak in leaks[:40])
        more = f"\n... and {len(leaks) - 40} more" if len(leaks) > 40 else ""
        raise RuntimeError(f"{len(leaks)} solution or hidden-test lines found under {folder}:\n{shown}{more}")
