"""Checks of one submitted notebook before it is graded, each with a one-line note an instructor can act on.

:func:`check` returns the notebook to grade (repaired where that is safe: duplicated
cells, nbgrader metadata matched back to the release) or None with the reason it
cannot be graded (not JSON, not a notebook, another lesson's notebook, too large).
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field

import nbformat

from . import tamper

MAX_NOTEBOOK_BYTES = 50 << 20
GRADE_ID = re.compile(r"^l(\d\d)_")
DEFINES = re.compile(r"^\s*(?:async\s+)?(?:def|class)\s+([A-Za-z_]\w*)", re.M)
MISSING = "the nbgrader metadata is missing: download the lesson again and copy your code in"


@dataclass
class Checked:
    notebook: nbformat.NotebookNode | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def note(self) -> str:
        return "; ".join(self.notes)


@dataclass(frozen=True)
class Lessons:
    """What preflight knows about the course: each lesson id and the title of its notebook."""

    titles: dict[str, str]  # lesson id -> first heading of its notebook


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def title(nb) -> str:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            for line in "".join(cell.get("source", "")).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return ""


def parse(data: bytes) -> tuple[nbformat.NotebookNode | None, str]:
    """The notebook in ``data``, or None and why not."""
    if len(data) > MAX_NOTEBOOK_BYTES:
        return None, (f"the notebook is {len(data) >> 20} MiB, over the {MAX_NOTEBOOK_BYTES >> 20} MiB limit: "
                      "clear its outputs (Edit > Clear Outputs of All Cells), save and submit again")
    try:
        raw = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        return None, f"not a valid notebook: not UTF-8 text (byte {err.start}): download it again from JupyterLab"
    except json.JSONDecodeError as err:
        return None, (f"not a valid notebook: JSON error at line {err.lineno} col {err.colno}: {err.msg}; "
                      "download it again from JupyterLab (File > Download) instead of editing the file")
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list):
        return None, "not a valid notebook: the JSON has no list of cells"
    try:
        nb = nbformat.reads(json.dumps(raw), as_version=4)
        nbformat.validate(nb)
        return nb, ""
    except Exception as err:  # noqa: BLE001: nbformat raises many kinds for a malformed notebook
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        return None, f"not a valid notebook: {first}; download it again from JupyterLab (File > Download)"


def wrong_lesson(nb, lesson: str, lessons: Lessons) -> str:
    """'' if ``nb`` may be ``lesson``'s notebook, else a note naming the lesson it is."""
    prefixes = Counter(m.group(1) for c in nb.cells if (m := GRADE_ID.match(_meta(c).get("grade_id", ""))))
    other = ""
    if prefixes:
        number = prefixes.most_common(1)[0][0]
        if number != lesson[:2]:
            other = next((k for k in lessons.titles if k[:2] == number), f"{number}_?")
    else:
        heading = title(nb)
        other = next((k for k, t in lessons.titles.items() if t and t == heading and k != lesson), "")
    if not other:
        return ""
    return f"this is Lesson {other[:2]}'s notebook ({other}), not {lesson}: not graded; ask for the right notebook"


def deduplicate(nb) -> list[str]:
    """Keep the first cell of each grade id; later copies lose their nbgrader metadata and run as plain cells."""
    seen: Counter = Counter()
    for cell in nb.cells:
        grade_id = _meta(cell).get("grade_id")
        if grade_id:
            seen[grade_id] += 1
            if seen[grade_id] > 1:
                del cell.metadata["nbgrader"]
    return [f"cell {g} appears {n} times (copy-pasted?): graded once, the copies ran as ordinary cells"
            for g, n in seen.items() if n > 1]


def restore_metadata(nb, released) -> list[str]:
    """Match cells whose nbgrader metadata is gone back to the release: by cell id, name defined, text, position."""
    present = {_meta(c).get("grade_id") for c in nb.cells} - {None}
    wanted = [(i, c) for i, c in enumerate(released.cells) if _meta(c).get("grade_id") and _meta(c)["grade_id"] not in present]
    if not wanted:
        return []
    free = {i for i, c in enumerate(nb.cells) if not _meta(c)}
    matched: dict[int, int] = {}  # released index -> submission index
    for rule in (_by_id, _by_name, _by_text, _by_position):
        for r_index, cell in wanted:
            if r_index not in matched and (s_index := rule(cell, r_index, nb, released, free, matched)) is not None:
                matched[r_index] = s_index
                free.discard(s_index)
    for r_index, s_index in matched.items():
        nb.cells[s_index].metadata["nbgrader"] = dict(_meta(released.cells[r_index]))
    lost = [c.metadata.nbgrader["grade_id"] for i, c in wanted if i not in matched]
    notes = []
    if matched:
        notes.append(f"nbgrader metadata was missing on {len(matched)} cell(s); matched back to the lesson: graded")
    if lost:
        notes.append(f"{MISSING} (not found: {', '.join(lost)}; they score 0)")
    return notes


def _by_id(cell, r_index, nb, released, free, matched):
    return next((i for i in free if cell.get("id") and nb.cells[i].get("id") == cell.get("id")), None)


def _by_name(cell, r_index, nb, released, free, matched):
    names = set(DEFINES.findall(cell.source)) if cell.cell_type == "code" and _meta(cell).get("solution") else set()
    if not names:
        return None
    return next((i for i in sorted(free) if nb.cells[i].cell_type == "code" and names <= set(DEFINES.findall(nb.cells[i].source))), None)


def _by_text(cell, r_index, nb, released, free, matched):
    if _meta(cell).get("solution") or not cell.source.strip():
        return None
    return next((i for i in sorted(free) if nb.cells[i].source.strip() == cell.source.strip()), None)


def _by_position(cell, r_index, nb, released, free, matched):
    """The cell right after the submission cell matched to the released cell before it (a written answer)."""
    before = matched.get(r_index - 1)
    if before is None:
        before = next((i for i in sorted(free) if nb.cells[i].source.strip() == released.cells[r_index - 1].source.strip()), None)
    after = None if before is None else before + 1
    if after in free and nb.cells[after].cell_type == cell.cell_type:
        return after
    return None


def check(data: bytes, lesson: str, released, lessons: Lessons) -> Checked:
    """The notebook to grade and what was wrong with it; ``released`` is the lesson as students got it."""
    nb, why = parse(data)
    if nb is None:
        return Checked(None, [why])
    why = wrong_lesson(nb, lesson, lessons)
    if why:
        return Checked(None, [why])
    notes = deduplicate(nb) + restore_metadata(nb, released)
    tests = {_meta(c)["grade_id"] for c in released.cells if _meta(c).get("grade") and not _meta(c).get("solution")}
    patched = tamper.findings(nb, tests, released)
    if patched:
        return Checked(None, notes + [f"not graded, review by hand: {'; '.join(patched)}"])
    return Checked(nb, notes)
