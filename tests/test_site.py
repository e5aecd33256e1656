"""The course website: built from executed runs, viewed in a real headless browser, free of answers."""
import html
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

from grader import config, course, execute, notebooks, site
from grader.authoring import LessonBuilder

LESSON = "00_figures"
SOLUTION_LINE = "distinctive_model_answer = max(values) - min(values)"
HIDDEN_LINE = 'assert spread([3, 9, 4]) == 6, "hidden check of a spread of three"'
HIDDEN_OUTPUT = "hidden-test output that must not be published"
CHECK_OUTPUT = "a check cell printed this"  # check cells' outputs are left out, hidden tests or not
FINDING = "Finding: the spread of [2, 7] is 5."


def build_figures_course(root: Path) -> Path:
    """A one-exercise lesson with a figure and a display(Markdown) finding, and a README lesson table."""
    nb = LessonBuilder("l00")
    nb.md("# Figures lesson\nA tiny lesson for the site's tests.")
    nb.parameters("SMOKE = False")
    nb.code("import matplotlib.pyplot as plt\nfrom IPython.display import Markdown, display")
    nb.solution("spread", f'''
        def spread(values):
            """Largest minus smallest value."""
            ### BEGIN SOLUTION
            {SOLUTION_LINE}
            return distinctive_model_answer
            ### END SOLUTION
    ''')
    nb.tests("spread", 1, f'''
        assert spread([1, 5]) == 4
        ### BEGIN HIDDEN TESTS
        {HIDDEN_LINE}
        print("{HIDDEN_OUTPUT}")
        ### END HIDDEN TESTS
    ''')
    nb.solution("total", """
        def total(values):
            ### BEGIN SOLUTION
            return sum(values)
            ### END SOLUTION
    """)
    nb.tests("total", 1, 'print("a check cell", "printed this")\nassert total([1, 2]) == 3')
    nb.code("fig, ax = plt.subplots(figsize=(3, 2))\nax.bar(['a', 'b'], [spread([0, 2]), 3])\nplt.show()")
    nb.code('display(Markdown(f"**Finding:** the spread of [2, 7] is {spread([2, 7])}."))')
    nb.written("why", 1, prompt="Why is the spread never negative?", answer="Because the model answer says so here.")
    path = nb.save(root / "solutions" / LESSON / f"{LESSON}.ipynb")
    (root / "README.md").write_text("# Figures course\n\n<!-- lesson-table:start -->\n| # | lesson |\n|---|---|\n"
                                    f"| 00 | [Figures lesson](lessons/{LESSON}) |\n<!-- lesson-table:end -->\n")
    course.release(root=root)
    return path


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    root = tmp_path_factory.mktemp("figures")
    build_figures_course(root)
    (root / "executed").mkdir()
    run = execute.execute_lesson(LESSON, smoke=True, out=root / "executed", root=root)
    assert run.status == "ok", run.status
    return root


@pytest.fixture(scope="module")
def built(figures):
    dest = figures / "site"
    pages = site.build(dest, executed=[figures / "executed"], root=figures)
    return dest, pages


def _chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("needs Debian's chromium package (apt-get install -y chromium; .ci/run installs it)")
    return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp / 'profile'}",
                           *args], capture_output=True, text=True, timeout=180)


def _text(dom: str) -> str:
    """What a reader sees, roughly: tags removed (code is split into one tag per token), entities decoded."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", dom)))


@pytest.mark.notebooks
def test_page_in_a_browser_shows_figures_findings_and_stubs_but_no_answers(built, tmp_path):
    dest, pages = built
    page = dest / f"{LESSON}.html"
    dom = _chromium("--dump-dom", page.as_uri(), tmp=tmp_path).stdout
    assert len(re.findall(r'<img[^>]+src="data:image/png;base64,[A-Za-z0-9+/]{100}', dom)) == 1
    text = _text(dom)
    assert FINDING in text and "YOUR CODE HERE" in text and "YOUR ANSWER HERE" in text
    assert "smoke-mode" in text and "assert spread([1, 5]) == 4" in text
    assert "changed since that run" not in text
    for secret in (SOLUTION_LINE, "hidden check of a spread", HIDDEN_OUTPUT, CHECK_OUTPUT, "BEGIN SOLUTION", "HIDDEN TESTS",
                   "Because the model answer"):
        assert secret not in dom, secret


@pytest.mark.notebooks
def test_screenshot_of_a_page_is_not_blank(built, tmp_path):
    from PIL import Image

    dest, _ = built
    shot = tmp_path / "page.png"
    _chromium("--hide-scrollbars", "--window-size=1000,1400", f"--screenshot={shot}", (dest / f"{LESSON}.html").as_uri(),
              tmp=tmp_path)
    image = Image.open(shot).convert("L")
    dark = sum(1 for value in image.getdata() if value < 128)
    assert dark > 0.005 * image.width * image.height  # text and the bar chart, not a white page


@pytest.mark.notebooks
def test_index_lists_the_lessons_with_links_and_where_results_come_from(built, tmp_path):
    dest, pages = built
    dom = _chromium("--dump-dom", (dest / "index.html").as_uri(), tmp=tmp_path).stdout
    assert f'href="{LESSON}.html"' in dom and "Figures lesson" in dom
    assert "results shown" in dom and "smoke, " in _text(dom)
    assert [p.lesson for p in pages] == [LESSON] and pages[0].run.mode == "smoke"


def _fake_run(folder: Path, figures: Path, smoke: bool, date: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    nb = notebooks.read(figures / "executed" / f"{LESSON}.ipynb")
    nb.metadata.papermill.parameters = {"SMOKE": smoke}
    nb.metadata.papermill.end_time = date
    path = folder / f"{LESSON}.ipynb"
    nbformat.write(nb, str(path))
    return path


@pytest.mark.notebooks
def test_full_mode_run_is_preferred_to_a_newer_smoke_run(figures, tmp_path):
    full = _fake_run(tmp_path / "gpu", figures, smoke=False, date="2026-01-01T10:00:00")
    _fake_run(tmp_path / "cpu", figures, smoke=True, date="2026-06-01T10:00:00")
    run = site.find_run(LESSON, [tmp_path / "cpu", tmp_path / "gpu"])
    assert run.path == full and run.mode == "full" and run.date == "2026-01-01 10:00"
    assert "the **full-mode** run of 2026-01-01 10:00" in site.banner(LESSON, run)


@pytest.mark.notebooks
def test_cells_changed_since_the_run_lose_their_outputs(figures, tmp_path):
    path = _fake_run(tmp_path / "old", figures, smoke=True, date="2026-01-01T10:00:00")
    nb = notebooks.read(path)
    figure_cell = next(c for c in nb.cells if "plt.subplots" in c.source)
    figure_cell.source += "\n# an older version of this cell"
    nbformat.write(nb, str(path))
    page = site.page_notebook(LESSON, site.find_run(LESSON, [tmp_path / "old"]), figures)
    shown = next(c for c in page.cells if "plt.subplots" in c.source)
    assert shown.outputs == [] and "1 code cells changed since that run" in page.cells[0].source
    finding = next(c for c in page.cells if "display(Markdown" in c.source)
    assert finding.outputs and "text/markdown" in finding.outputs[0].data


@pytest.mark.notebooks
def test_a_solution_line_in_an_output_stops_the_build(figures, tmp_path):
    path = _fake_run(tmp_path / "leaky", figures, smoke=True, date="2026-01-01T10:00:00")
    nb = notebooks.read(path)
    cell = next(c for c in nb.cells if "display(Markdown" in c.source)
    cell.outputs.append(nbformat.v4.new_output("error", ename="ValueError", evalue="x",
                                               traceback=[f"----> 4     {SOLUTION_LINE}"]))
    nbformat.write(nb, str(path))
    with pytest.raises(RuntimeError, match="distinctive_model_answer"):
        site.build(tmp_path / "site", executed=[tmp_path / "leaky"], root=figures)


def test_a_lesson_never_executed_says_how_to_produce_its_results(tmp_path):
    build_figures_course(tmp_path)
    pages = site.build(tmp_path / "site", executed=[tmp_path / "none"], root=tmp_path)
    assert pages[0].run is None
    page = (tmp_path / "site" / f"{LESSON}.html").read_text()
    assert "Not executed yet" in page and f"python -m grader execute {LESSON[:2]}" in page


def test_refuses_a_folder_that_is_not_an_earlier_site(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        site.build(tmp_path, executed=[], lessons=[])
    assert (tmp_path / "keep.txt").exists()
