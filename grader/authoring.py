"""Build a lesson notebook from Python, with nbgrader's cell metadata filled in.

Instructors usually edit ``solutions/`` in JupyterLab with nbgrader's "Create
Assignment" toolbar; this builder is for writing a whole lesson as a script and
gets the metadata (grade ids, points, locks, the papermill tag) right every time::

    nb = LessonBuilder("l01")
    nb.md("# Lesson 01 ...")
    nb.parameters("SMOKE = False\nSEED = 0\nDEVICE = 'auto'")
    nb.solution("output_size", '''def output_size(...):\n    ### BEGIN SOLUTION\n    ...\n    ### END SOLUTION''')
    nb.tests("output_size", 2, '''check_int(...)\n### BEGIN HIDDEN TESTS\n...\n### END HIDDEN TESTS''')
    nb.written("why_212", 2, prompt="Why is ...?", answer="Because ...")
    nb.save("solutions/01_x/01_x.ipynb")
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat

from . import notebooks

SCHEMA = 3


def _meta(grade: bool, solution: bool, locked: bool, grade_id: str, points: float | None = None) -> dict:
    meta = {"grade": grade, "solution": solution, "locked": locked, "grade_id": grade_id,
            "schema_version": SCHEMA, "task": False}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


class LessonBuilder:
    """Accumulates cells; ``prefix`` (e.g. ``"l05"``) starts every grade id."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.cells: list[nbformat.NotebookNode] = []

    def _id(self, name: str) -> str:
        return f"{self.prefix}_{name}"

    def _add(self, cell, cell_id: str | None = None):
        cell.id = cell_id or f"{self.prefix}-cell-{len(self.cells):03d}"
        self.cells.append(cell)
        return cell

    def md(self, text: str):
        """A teaching markdown cell."""
        return self._add(nbformat.v4.new_markdown_cell(textwrap.dedent(text).strip()))

    def code(self, source: str, tags: list[str] | None = None):
        """A demonstration code cell (runs in both solution and release)."""
        cell = nbformat.v4.new_code_cell(textwrap.dedent(source).strip())
        if tags:
            cell.metadata["tags"] = tags
        return self._add(cell)

    def parameters(self, source: str):
        """The papermill ``parameters`` cell: plain literals only."""
        return self.code(source, tags=["parameters"])

    def solution(self, name: str, source: str):
        """An exercise cell; the code between SOLUTION markers is replaced by a stub on release."""
        cell = nbformat.v4.new_code_cell(textwrap.dedent(source).strip(), metadata=_meta(False, True, False, self._id(name)))
        return self._add(cell, self._id(name))

    def tests(self, name: str, points: float, source: str):
        """The autograded, locked test cell of exercise ``name`` (grade id ``<prefix>_<name>_tests``)."""
        grade_id = self._id(f"{name}_tests")
        cell = nbformat.v4.new_code_cell(textwrap.dedent(source).strip(), metadata=_meta(True, False, True, grade_id, points))
        return self._add(cell, grade_id)

    def written(self, name: str, points: float, prompt: str, answer: str):
        """A manually graded written answer: a prompt cell, then the answer cell the student replaces."""
        self.md(prompt)
        cell = nbformat.v4.new_markdown_cell(textwrap.dedent(answer).strip(), metadata=_meta(True, True, False, self._id(name), points))
        return self._add(cell, self._id(name))

    def notebook(self) -> nbformat.NotebookNode:
        nb = nbformat.v4.new_notebook(cells=self.cells)
        return notebooks.normalize(nb)

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        notebooks.write(self.notebook(), path)
        return path
