"""Canonical on-disk form of the course notebooks, and the checks that enforce it.

Notebooks are committed without outputs and with one fixed notebook-level metadata
block, so diffs show teaching changes only and ``lessons/`` can be compared byte for
byte with a fresh release. Cell ids are kept (never renumbered) once they exist.
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
NOTEBOOK_METADATA = {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
# Cell metadata worth keeping: nbgrader's grading marks, papermill tags, nbgrader's locks.
CELL_METADATA_KEYS = ("deletable", "editable", "nbgrader", "tags")
SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")
HIDDEN_MARKERS = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")


def read(path: Path | str) -> nbformat.NotebookNode:
    """Read a notebook as nbformat v4."""
    return nbformat.read(str(path), as_version=4)


def normalize(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Strip outputs and volatile metadata in place; give id-less cells a stable id."""
    nb.nbformat, nb.nbformat_minor = 4, 5
    nb.metadata = nbformat.from_dict(NOTEBOOK_METADATA)
    used = {c.get("id") for c in nb.cells}
    for index, cell in enumerate(nb.cells):
        cell.metadata = nbformat.from_dict({k: cell.metadata[k] for k in CELL_METADATA_KEYS if k in cell.metadata})
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if "attachments" in cell and not cell.attachments:
            del cell["attachments"]
        if not cell.get("id"):
            cell.id = _free_id(f"cell-{index:03d}", used)
    return nb


def _free_id(candidate: str, used: set) -> str:
    while candidate in used:
        candidate += "x"
    used.add(candidate)
    return candidate


def dumps(nb: nbformat.NotebookNode) -> str:
    """Serialise exactly as committed: sorted keys, one-space indent, trailing newline."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def write(nb: nbformat.NotebookNode, path: Path | str) -> None:
    """Validate and write a normalised notebook."""
    nbformat.validate(nb)
    Path(path).write_text(dumps(nb), encoding="utf-8")


def normalize_file(path: Path | str) -> bool:
    """Normalise a notebook file in place; return True if it changed."""
    path = Path(path)
    before = path.read_text(encoding="utf-8")
    after = dumps(normalize(read(path)))
    if after != before:
        path.write_text(after, encoding="utf-8")
    return after != before


def problems(path: Path | str) -> list[str]:
    """Everything that keeps a committed notebook from being in canonical form."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    nb = read(path)
    found = []
    if text != dumps(normalize(read(path))):
        found.append("not in canonical form (outputs, metadata or formatting): run `python -m grader normalize`")
    if any(c.cell_type == "code" and c.outputs for c in nb.cells):
        found.append("has outputs")
    ids = [c.get("id") for c in nb.cells]
    if len(set(ids)) != len(ids):
        found.append("duplicate cell ids")
    return found


def source_text(nb: nbformat.NotebookNode) -> str:
    """All cell sources joined, for leak checks."""
    return "\n".join(cell.source for cell in nb.cells)


def grade_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """Autograded test cells (nbgrader ``grade`` without ``solution``), in order."""
    return [c for c in nb.cells if _nbg(c).get("grade") and not _nbg(c).get("solution")]


def solution_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """Cells a student fills in (code and written answers)."""
    return [c for c in nb.cells if _nbg(c).get("solution")]


def has_parameters_cell(nb: nbformat.NotebookNode) -> bool:
    """True if one cell carries papermill's ``parameters`` tag."""
    return any("parameters" in c.metadata.get("tags", []) for c in nb.cells)


def _nbg(cell) -> dict:
    return cell.metadata.get("nbgrader", {})
