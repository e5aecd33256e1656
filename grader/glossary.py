"""The course glossary: every key term's Korean name, given once, in the lesson that introduces it.

Each lesson ends with a ``## Glossary`` table (``| English | Korean |``) of the terms it introduces.
A term introduced earlier is not repeated: the lesson names it under the table instead. The
README's course glossary is generated from the lessons (``python -m grader glossary --write``),
and a test keeps both rules.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from . import config, notebooks, readme

ROW = re.compile(r"^\|\s*(?P<english>[^|]+?)\s*\|\s*(?P<korean>[^|]*[\uac00-\ud7a3][^|]*?)\s*\|\s*$", re.M)
HEADER_WORDS = {"english", "term"}
EARLIER = "Terms from earlier lessons used here:"


@dataclass(frozen=True)
class Entry:
    english: str
    korean: str
    lesson: str

    @property
    def key(self) -> str:
        return " ".join(self.english.lower().split())


def _glossary_cell(nb):
    for cell in reversed(nb.cells):
        if cell.cell_type == "markdown" and "glossary" in cell.source.lower() and ROW.search(cell.source):
            return cell
    return None


def lesson_entries(lesson: str, root: Path = config.REPO) -> list[Entry]:
    """The glossary rows of one lesson, in their order (header rows skipped)."""
    cell = _glossary_cell(notebooks.read(config.lesson_notebook(lesson, root)))
    if cell is None:
        return []
    rows = (ROW.match(line) for line in cell.source.splitlines())
    return [Entry(m["english"], m["korean"], lesson) for m in rows
            if m and m["english"].lower() not in HEADER_WORDS]


def course_entries(root: Path = config.REPO) -> list[Entry]:
    return [entry for lesson in config.lessons(root) for entry in lesson_entries(lesson, root)]


def repeated(root: Path = config.REPO) -> list[Entry]:
    """Entries whose term an earlier lesson already defined (should be none)."""
    seen, again = set(), []
    for entry in course_entries(root):
        if entry.key in seen:
            again.append(entry)
        seen.add(entry.key)
    return again


def readme_table(root: Path = config.REPO) -> str:
    entries = sorted(course_entries(root), key=lambda e: e.key)
    lines = ["| English | Korean | introduced in |", "|---|---|---|"]
    lines += [f"| {e.english} | {e.korean} | Lesson {e.lesson[:2]} |" for e in entries]
    return "\n".join(lines)


def write_readme(root: Path = config.REPO) -> None:
    readme.write_section("glossary", f"\n{readme_table(root)}\n", root)


def readme_block(root: Path = config.REPO) -> str:
    return readme.read_section("glossary", root).strip("\n")
