"""The grading pipeline end to end on a tiny two-exercise lesson built in a temporary course."""
import csv
import json
import shutil
import zipfile

import pytest

from demo_course import LESSON, build_demo
from grader import config, course, notebooks, sandbox, selfcheck


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    build_demo(root)
    course.release(root=root)
    return root


def _student_copy(nb_path, edit=None):
    nb = notebooks.read(nb_path)
    if edit:
        edit(nb)
    return nb


def _replace_stub(nb, name, body):
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == f"l00_{name}":
            cell.source = body


def test_release_strips_solutions_and_hidden_tests(demo):
    released = notebooks.read(config.lesson_notebook(LESSON, demo, config.RELEASE))
    text = notebooks.source_text(released)
    assert "raise NotImplementedError()" in text
    for marker in notebooks.SOLUTION_MARKERS + notebooks.HIDDEN_MARKERS:
        assert marker not in text
    assert "random.sample" not in text  # hidden test body gone
    assert notebooks.problems(config.lesson_notebook(LESSON, demo, config.RELEASE)) == []


def test_selfcheck_passes_on_demo(demo):
    check = selfcheck.check_lesson(LESSON, root=demo)
    assert check.ok, check.problems
    assert (check.tests, check.points, check.solution_score, check.untouched_score) == (2, 3, 3, 0)
    assert check.first_failure == "NotImplementedError"
    assert (check.cheats, check.cheats_caught) == (3, 3)  # tests/cheats/l00.py, graded in two rounds


def test_selfcheck_catches_a_cheat_that_passes(tmp_path, monkeypatch):
    from grader import cheats

    build_demo(tmp_path)
    escaping = cheats.Cheat("double", "doubles honestly", "def double(n):\n    return n + n")
    monkeypatch.setattr(cheats, "load", lambda lesson: [escaping])
    check = selfcheck.check_lesson(LESSON, root=tmp_path)
    assert (check.cheats, check.cheats_caught) == (1, 0)
    assert any("cheat 'doubles honestly' on double scores 1/1 on l00_double_tests" in p for p in check.problems)


def test_selfcheck_catches_a_test_that_cannot_fail(tmp_path):
    build_demo(tmp_path)
    path = config.lesson_notebook(LESSON, tmp_path)
    nb = notebooks.read(path)
    for cell in notebooks.grade_cells(nb):
        if cell.metadata.nbgrader["grade_id"] == "l00_square_tests":
            cell.source = "assert True"
    notebooks.write(nb, path)
    check = selfcheck.check_lesson(LESSON, root=tmp_path)
    assert not check.ok
    assert any("cannot fail" in p for p in check.problems)


def test_selfcheck_catches_a_broken_ungraded_cell(tmp_path):
    """A setup cell that raises scores nothing, so only this check notices it."""
    build_demo(tmp_path)
    path = config.lesson_notebook(LESSON, tmp_path)
    nb = notebooks.read(path)
    setup = next(c for c in nb.cells if "utils.setup(" in c.source)
    setup.source += "\nutils.no_such_helper()"
    notebooks.write(nb, path)
    check = selfcheck.check_lesson(LESSON, root=tmp_path)
    assert any("raises AttributeError" in p for p in check.problems), check.problems


@pytest.mark.skipif(sandbox.bwrap_path() is None, reason="bubblewrap is not installed (apt-get install bubblewrap)")
def test_autograde_bad_submissions_are_reported_and_the_rest_graded(demo, tmp_path):
    released = config.lesson_notebook(LESSON, demo, config.RELEASE)
    subs = tmp_path / "subs"
    subs.mkdir()
    # alice: correct; bob: returns a float (double) and is untouched elsewhere; carol: kernel dies;
    # dave: renamed notebook inside a zip; erin: folder without any notebook.
    alice = _student_copy(released)
    _replace_stub(alice, "double", "def double(n):\n    return 2 * n")
    _replace_stub(alice, "square", "def square(n):\n    return n * n")
    notebooks.write(alice, subs / "alice.ipynb")
    bob = _student_copy(released)
    _replace_stub(bob, "double", "def double(n):\n    return 2.0 * n")
    _replace_stub(bob, "square", "def square(n):\n    return n * n")
    notebooks.write(bob, subs / "bob.ipynb")
    carol = _student_copy(released)
    _replace_stub(carol, "double", "import os\nos._exit(1)")
    notebooks.write(carol, subs / "carol.ipynb")
    renamed = tmp_path / "my_homework.ipynb"
    notebooks.write(alice, renamed)
    with zipfile.ZipFile(subs / "dave.zip", "w") as z:
        z.write(renamed, "stuff/my_homework.ipynb")
    (subs / "erin").mkdir()
    (subs / "erin" / "notes.txt").write_text("forgot the notebook")

    before = {p.name: p.read_bytes() for p in subs.iterdir() if p.is_file()}
    results = {r.student: r for r in course.autograde(subs, LESSON, root=demo)}
    assert {p.name: p.read_bytes() for p in subs.iterdir() if p.is_file()} == before  # originals untouched

    assert (results["alice"].score, results["alice"].max_score) == (3, 4)  # 1 point is a written answer
    assert results["bob"].graded and results["bob"].cells["l00_double_tests"][0] == 0
    assert results["bob"].cells["l00_square_tests"][0] == 2
    # carol's kernel exits in her first exercise: graded, the cells before it count, the rest score 0
    assert results["carol"].graded and results["carol"].score == 0
    assert "the kernel exited (code 1" in results["carol"].note and "(l00_double)" in results["carol"].note
    assert results["dave"].score == 3 and "renamed" in results["dave"].note
    assert not results["erin"].graded and "no notebook" in results["erin"].note
    table = course.format_results(LESSON, list(results.values()))
    assert "erin" in table and "carol" in table

    out = course.export(tmp_path / "grades.csv", root=demo)
    rows = list(csv.DictReader(out.open()))
    scores = {r["student"]: float(r["score"]) for r in rows}
    assert scores["alice"] == 3 and scores["bob"] == 2

    course.feedback(LESSON, "alice", root=demo)
    html = (demo / "grader" / "feedback" / "alice" / LESSON / f"{LESSON}.html").read_text()
    assert "random.sample" not in html and "HIDDEN TESTS" not in html
    assert "double" in html


def test_autograde_budget_defaults_to_the_lesson_smoke_time(tmp_path):
    from grader import limits

    (tmp_path / "README.md").write_text("<!-- lesson-table:start -->\n| # | lesson | smoke (2 CPU cores) | full |\n"
                                        "|---|---|---:|---:|\n| 01 | a | 25 s | 90 s |\n| 02 | b | not measured | 1 s |\n"
                                        "<!-- lesson-table:end -->\n")
    assert limits.default_budget("01_a", tmp_path) == 25 * 5 + 60
    assert limits.default_budget("02_b", tmp_path) == limits.BUDGET_UNMEASURED_S + 60
    assert limits.default_budget("03_c", tmp_path) == limits.BUDGET_UNMEASURED_S + 60
    assert limits.threads_per_kernel(10**6) == 1 and limits.threads_per_kernel(0) == 1


def test_unknown_lesson_is_a_clear_error(demo, tmp_path):
    with pytest.raises(ValueError, match="unknown lesson"):
        course.autograde(tmp_path, "99_nope", root=demo)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        course.autograde(tmp_path / "missing", LESSON, root=demo)


def _readme_copy(tmp_path):
    shutil.copyfile(config.REPO / "README.md", tmp_path / "README.md")
    return tmp_path / "README.md"


def _row(text, number):
    return next(line for line in text.splitlines() if line.startswith(f"| {number} | "))


def test_execute_records_times_in_the_readme_lesson_table(tmp_path):
    from grader import execute

    readme = _readme_copy(tmp_path)
    before = readme.read_text()
    runs = [execute.Run("01_conv_arithmetic", "smoke", 12.4, "ok", "cpu (2 cores)"),
            execute.Run("02_alexnet_zfnet", "smoke", 9.0, "FAILED in cell 3", "cpu (2 cores)"),
            execute.Run("04_inception", "full+overrides", 9.0, "ok", "NVIDIA H100")]
    assert execute.record_in_readme(runs, tmp_path) == ["01"]
    after = readme.read_text()
    assert _row(after, "01").split(" | ")[3] == "12 s"
    assert _row(after, "02") == _row(before, "02"), "a failed run leaves its row alone"
    assert _row(after, "04") == _row(before, "04"), "a run with overridden parameters is not the lesson's time"
    assert [l for l in after.splitlines() if not l.startswith("| 01 |")] == \
           [l for l in before.splitlines() if not l.startswith("| 01 |")], "nothing else changes"

    cpu_full = [execute.Run("03_vgg", "full", 61.0, "ok", "cpu (2 cores)")]
    assert execute.record_in_readme(cpu_full, tmp_path) == ["03"]
    assert _row(readme.read_text(), "03").split(" | ")[4] == "61 s", "full mode on a CPU: the CPU column"
    gpu_runs = [execute.Run("03_vgg", "full", 61.0, "ok", "NVIDIA H100 80GB HBM3")]
    execute.write_timings(gpu_runs, tmp_path)
    assert execute.read_timings(tmp_path / "timings.csv") == gpu_runs
    gpu_runs[0].seconds = 75.0
    execute.record_in_readme(gpu_runs, tmp_path)
    row = _row(readme.read_text(), "03").split(" | ")
    assert row[4:] == ["61 s", "75 s |"], "full mode on a GPU: the GPU column, the CPU time stays"


def test_execute_parameter_overrides_are_literals_and_must_exist():
    from grader import execute

    assert execute.parse_overrides(["EPOCHS=1", "DEPTHS=[8, 14]", "BACKBONE=resnet18", "LR=1e-3"]) == \
        {"EPOCHS": 1, "DEPTHS": [8, 14], "BACKBONE": "resnet18", "LR": 1e-3}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        execute.parse_overrides(["EPOCHS"])
    execute.check_parameters("05_resnet", {"EPOCHS": 1, "DEPTHS": [8, 14]})
    with pytest.raises(ValueError, match="EPOCH\\b.*its parameters: SMOKE"):
        execute.check_parameters("05_resnet", {"EPOCH": 1})


def test_readme_sections_round_trip_and_missing_markers_are_named(tmp_path):
    from grader import readme

    (tmp_path / "README.md").write_text("intro\n<!-- s:start -->\nold\n<!-- s:end -->\noutro\n")
    assert readme.read_section("s", tmp_path) == "\nold\n"
    readme.write_section("s", "\nnew\n", tmp_path)
    assert (tmp_path / "README.md").read_text() == "intro\n<!-- s:start -->\nnew\n<!-- s:end -->\noutro\n"
    with pytest.raises(ValueError, match="no <!-- other:start --> ... <!-- other:end --> section"):
        readme.read_section("other", tmp_path)


def test_preflight_and_scrub_without_a_kernel(demo, tmp_path):
    """The checks before grading and the feedback scrub are pure functions: tested here even without bwrap."""
    from grader import preflight, scrub

    released = notebooks.read(config.lesson_notebook(LESSON, demo, config.RELEASE))
    lessons = preflight.Lessons({LESSON: "Demo lesson", "05_resnet": "ResNet"})
    text = json.dumps(released, indent=1)
    broken = preflight.check(text[:100].encode(), LESSON, released, lessons)
    assert broken.notebook is None and broken.note.startswith("not a valid notebook: JSON error at line")
    odd = preflight.check((text[:100] + "," + text[100:]).encode(), LESSON, released, lessons)  # JSON, not a notebook
    assert odd.notebook is None and odd.note.startswith("not a valid notebook: ")
    other = json.loads(text)
    for cell in other["cells"]:
        if "nbgrader" in cell["metadata"]:
            cell["metadata"]["nbgrader"]["grade_id"] = cell["metadata"]["nbgrader"]["grade_id"].replace("l00_", "l05_")
    wrong = preflight.check(json.dumps(other).encode(), LESSON, released, lessons)
    assert wrong.notebook is None and "this is Lesson 05's notebook (05_resnet), not 00_demo" in wrong.note
    stripped = json.loads(text)
    for cell in stripped["cells"]:
        cell["metadata"].pop("nbgrader", None)
    fixed = preflight.check(json.dumps(stripped).encode(), LESSON, released, lessons)
    assert [c.metadata.get("nbgrader", {}).get("grade_id") for c in fixed.notebook.cells] == \
        [c.metadata.get("nbgrader", {}).get("grade_id") for c in released.cells]

    with zipfile.ZipFile(tmp_path / "slip.zip", "w") as z:
        z.writestr("/etc/x.ipynb", "{}")
    assert "points outside the archive" in course._unzip(tmp_path / "slip.zip", tmp_path / "out")
    assert not (tmp_path / "out").exists()

    source = notebooks.read(config.lesson_notebook(LESSON, demo))
    secrets = scrub.secret_lines(source, released)
    assert "for n in random.sample(range(1000), 5):" in secrets and "Because 2 x 2 = 4." in secrets
    printed = "ok: double(3)\n    for n in random.sample(range(1000), 5):\nBecause 2 x 2 = 4.\n"
    assert scrub.scrub_text(printed, secrets) == f"ok: double(3)\n{scrub.HIDDEN}\n{scrub.HIDDEN}\n"
