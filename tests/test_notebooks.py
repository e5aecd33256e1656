"""Every lesson notebook: canonical form, no leaks, the design card's anatomy, release in sync.

The slow checks (smoke execution with papermill, the grader's self-check) are in
``test_notebook_runs.py``.
"""
import ast
import filecmp
import re
import shutil

import pytest

from grader import config, course, notebooks

LESSONS = config.lessons()
SOURCES = [config.lesson_notebook(lesson) for lesson in LESSONS]
RELEASES = [config.lesson_notebook(lesson, folder=config.RELEASE) for lesson in LESSONS]


def test_there_are_lessons():
    assert LESSONS, "no lessons under solutions/"


@pytest.mark.parametrize("path", SOURCES + RELEASES, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_committed_in_canonical_form(path):
    assert path.exists(), f"{path} is missing: run `python -m grader release`"
    assert notebooks.problems(path) == []


@pytest.mark.parametrize("path", RELEASES, ids=lambda p: p.name)
def test_release_leaks_no_solution_or_hidden_test(path):
    text = notebooks.source_text(notebooks.read(path))
    for marker in notebooks.SOLUTION_MARKERS + notebooks.HIDDEN_MARKERS:
        assert marker not in text


@pytest.mark.parametrize("lesson", LESSONS)
def test_only_the_notebook_in_assignment_folders(lesson):
    """nbgrader copies every file of solutions/<lesson>/ into the release: keep solution-bearing files out."""
    files = [p.name for p in (config.REPO / config.SOURCE / lesson).iterdir() if not p.name.startswith(".")]
    assert files == [f"{lesson}.ipynb"]


@pytest.mark.parametrize("lesson", LESSONS)
def test_parameters_cell_holds_plain_literals(lesson):
    nb = notebooks.read(config.lesson_notebook(lesson))
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    names = {}
    for stmt in ast.parse(cells[0].source).body:
        assert isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name), \
            "the parameters cell holds only `NAME = literal` lines"
        names[stmt.targets[0].id] = ast.literal_eval(stmt.value)  # raises if not a literal
    assert {"SMOKE", "SEED", "DEVICE"} <= set(names)
    assert names["SMOKE"] is False, "commit lessons in full mode; smoke is switched on by papermill or COURSE_SMOKE"
    following = nb.cells[nb.cells.index(cells[0]) + 1]
    assert "utils.setup(" in following.source, "the cell after the parameters resolves them with utils.setup"


@pytest.mark.parametrize("lesson", LESSONS)
def test_exercise_anatomy(lesson):
    """Each code solution cell is followed by its autograded test cell, with visible checks and hidden tests."""
    nb = notebooks.read(config.lesson_notebook(lesson))
    prefix = f"l{lesson[:2]}_"
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell, after in zip(code, code[1:] + [None]):
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            assert meta["grade_id"].startswith(prefix)
            assert "### BEGIN SOLUTION" in cell.source
            assert after is not None and after.metadata.get("nbgrader", {}).get("grade"), \
                f"{meta['grade_id']} is not followed by a test cell"
    for cell in notebooks.grade_cells(nb):
        meta = cell.metadata.nbgrader
        assert meta["grade_id"].startswith(prefix) and meta.get("locked") and meta.get("points", 0) > 0
        assert "### BEGIN HIDDEN TESTS" in cell.source, f"{meta['grade_id']} has no hidden tests"


@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_opens_with_title_and_ends_with_recap_and_glossary(lesson):
    nb = notebooks.read(config.lesson_notebook(lesson))
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith(f"# Lesson {lesson[:2]}")
    tail = "\n".join(c.source for c in nb.cells[-4:] if c.cell_type == "markdown").lower()
    assert "recap" in tail and "glossary" in tail
    assert re.search("[\uac00-\ud7a3]", tail), "the glossary gives each key term's Korean name"


def test_lessons_equal_a_fresh_release(tmp_path):
    shutil.copytree(config.REPO / config.SOURCE, tmp_path / config.SOURCE)
    course.release(root=tmp_path)
    for lesson in LESSONS:
        fresh = config.lesson_notebook(lesson, tmp_path, config.RELEASE)
        committed = config.lesson_notebook(lesson, folder=config.RELEASE)
        assert filecmp.cmp(fresh, committed, shallow=False), \
            f"lessons/{lesson} is stale: run `python -m grader release {lesson[:2]}` and commit"


def test_each_term_gets_its_korean_name_once_and_the_readme_lists_them():
    from grader import glossary

    assert glossary.repeated() == [], "a later lesson repeats a glossary term: name it under the table instead"
    assert glossary.readme_block() == glossary.readme_table(), "run `python -m grader glossary --write`"
