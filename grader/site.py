"""The course as a static website: every lesson with the figures and findings of its latest executed run.

Each page is built from the released notebook, cell by cell (same cell ids), with the outputs of the
executed solution notebook that ``python -m grader execute`` wrote: exercise cells show the student's
stub and no output, check cells show the visible checks and no output (a hidden test's text could sit
in a traceback), warnings on stderr and progress-bar widgets are dropped, and a cell whose source
changed since the run loses its outputs. A banner on every page says which run the results come from.
A full-mode run is preferred to a smoke run; a lesson never executed is shown without outputs, with
the command that produces them. The finished site is scanned by :mod:`grader.leaks`.
"""
from __future__ import annotations

import copy
import csv
import html
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import nbformat

from . import config, leaks, notebooks, readme

EXECUTED = (config.REPO / "build" / "executed", config.REPO / "build" / "gpu")
STAMP = ".course-site"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@dataclass
class Run:
    """An executed copy of a lesson and what kind of run made it."""
    path: Path
    mode: str  # "full", "smoke", or either with "+overrides"
    date: str
    device: str
    failed: bool

    @property
    def rank(self) -> tuple:
        return (not self.failed, self.mode == "full", self.mode == "smoke", self.date)

    def describe(self) -> str:
        on = f" on {self.device}" if self.device else ""
        failed = ", STOPPED WITH AN ERROR" if self.failed else ""
        return f"{self.mode} mode, {self.date}{on}{failed} ({self.path})"


@dataclass
class Page:
    lesson: str
    path: Path
    run: Run | None

    @property
    def source(self) -> str:
        return self.run.describe() if self.run else "not executed: no outputs shown"


def find_run(lesson: str, folders) -> Run | None:
    """The best executed copy of ``lesson`` in ``folders``: a clean full-mode run, else smoke, newest first."""
    runs = [_run(folder / f"{lesson}.ipynb") for folder in map(Path, folders) if (folder / f"{lesson}.ipynb").is_file()]
    return max(runs, key=lambda r: r.rank) if runs else None


def _run(path: Path) -> Run:
    meta = notebooks.read(path).metadata.get("papermill", {})
    params = dict(meta.get("parameters", {}))
    mode = "smoke" if params.pop("SMOKE", True) else "full"
    mode += "+overrides" if set(params) - {"SEED", "DEVICE"} else ""
    date = str(meta.get("end_time") or meta.get("start_time") or "")[:16].replace("T", " ")
    return Run(path, mode, date, _device(path), bool(meta.get("exception")))


def _device(path: Path) -> str:
    """The device ``timings.csv`` beside an executed notebook names for it, if any."""
    timings = path.parent / "timings.csv"
    if not timings.is_file():
        return ""
    with timings.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("lesson") == path.stem]
    return rows[-1].get("device", "") if rows else ""


def page_notebook(lesson: str, run: Run | None, root: Path = config.REPO) -> nbformat.NotebookNode:
    """The released notebook with the run's outputs where they are safe to show, and a banner on top."""
    released = notebooks.read(config.lesson_notebook(lesson, root, config.RELEASE))
    executed = {c.get("id"): c for c in notebooks.read(run.path).cells} if run else {}
    page = copy.deepcopy(released)
    changed = 0
    for cell in page.cells:
        if cell.cell_type != "code":
            continue
        ran = executed.get(cell.get("id"))
        cell.outputs, cell.execution_count = [], None
        if ran is None or _is_graded(cell):
            continue
        if ran.source != cell.source:
            changed += 1
            continue
        cell.outputs, cell.execution_count = _shown_outputs(ran.outputs), ran.get("execution_count")
    page.cells.insert(0, nbformat.v4.new_markdown_cell(banner(lesson, run, changed)))
    return page


def _is_graded(cell) -> bool:
    nbg = cell.metadata.get("nbgrader", {})
    return bool(nbg.get("solution") or nbg.get("grade"))


def _shown_outputs(outputs: list) -> list:
    """Outputs without stderr (warnings, progress bars) and without widget views (no state to render them)."""
    return [copy.deepcopy(out) for out in outputs
            if not (out.get("output_type") == "stream" and out.get("name") == "stderr")
            and WIDGET_VIEW not in out.get("data", {})]


def banner(lesson: str, run: Run | None, changed: int = 0) -> str:
    """The note on top of a page: where its results come from."""
    back = "[All lessons](index.html)"
    if run is None:
        return (f"{back} · **Not executed yet: no outputs shown.** Produce them with "
                f"`python -m grader execute {lesson[:2]}` (full mode on a GPU, smoke mode otherwise), then rebuild "
                "the site with `python -m grader site DIR`.")
    kind = ("the **full-mode** run" if run.mode == "full" else
            "a **smoke-mode** run (small and fast: the numbers are not the lesson's real results)"
            if run.mode == "smoke" else f"a **{run.mode}** run (changed parameters: not the lesson's results)")
    device = f" on {run.device}" if run.device else ""
    notes = [f"Results from {kind} of {run.date}{device}."]
    if run.failed:
        notes.append("**That run stopped with an error**; the cells after it have no outputs.")
    if changed:
        notes.append(f"{changed} code cells changed since that run and are shown without outputs.")
    notes.append("Exercise cells show what students start from; the checks' outputs and the hidden tests are left out.")
    return f"{back} · " + " ".join(notes)


def render(nb: nbformat.NotebookNode, title: str) -> str:
    """HTML of a notebook (nbconvert's lab template, images embedded)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb, resources={"metadata": {"name": title}})
    return body


def index_html(pages: list[Page], root: Path = config.REPO) -> str:
    """The index page: the README's lesson table linked to the pages, with where each page's results come from."""
    from nbconvert.filters import markdown2html

    try:
        table = readme.read_section("lesson-table", root).strip()
    except (OSError, ValueError):
        table = "| # | lesson |\n|---|---|\n" + "\n".join(f"| {p.lesson[:2]} | [{p.lesson}](lessons/{p.lesson}) |"
                                                      for p in pages)
    runs = {p.lesson[:2]: (f"{p.run.mode}, {p.run.date[:10]}" if p.run else "not executed") for p in pages}
    table = _add_column(re.sub(r"\]\(lessons/([^)/]+)/?\)", r"](\1.html)", table), "results shown", runs)
    intro = _readme_title(root)
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(intro)}</title>\n<style>{_CSS}</style>"
            f"</head><body><main>\n<h1>{html.escape(intro)}</h1>\n<p>Every lesson with the figures and findings of "
            "its latest executed run; exercise cells show what students start from.</p>\n"
            f"{markdown2html(table)}\n</main></body></html>\n")


def _add_column(table: str, header: str, values: dict[str, str]) -> str:
    rows = table.splitlines()
    out = []
    for i, row in enumerate(rows):
        first = row.strip().strip("|").split("|")[0].strip()
        extra = header if i == 0 else "---" if i == 1 else values.get(first, "")
        out.append(row.rstrip().rstrip("|") + f"| {extra} |")
    return "\n".join(out)


def _readme_title(root: Path) -> str:
    try:
        first = (Path(root) / "README.md").read_text().splitlines()[0]
    except (OSError, IndexError):
        return "Course"
    return first.lstrip("# ").strip() or "Course"


_CSS = ("body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#222}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .5rem;vertical-align:top}"
        "th{background:#f3f3f3}a{color:#0b57d0}")


def build(dest: Path | str, executed=EXECUTED, root: Path | str = config.REPO, smoke_if_missing: bool = False,
          lessons: list[str] | None = None) -> list[Page]:
    """Write ``index.html`` and one page per lesson into ``dest``; check the result for leaks."""
    dest, root = Path(dest), Path(root)
    folders = [executed] if isinstance(executed, (str, Path)) else list(executed)
    _prepare(dest)
    pages = []
    for lesson in lessons or config.lessons(root):
        run = find_run(lesson, folders)
        if run is None and smoke_if_missing:
            run = _execute_smoke(lesson, Path(folders[0]), root)
        path = dest / f"{lesson}.html"
        path.write_text(render(page_notebook(lesson, run, root), _title(lesson, root)), encoding="utf-8")
        pages.append(Page(lesson, path, run))
    (dest / "index.html").write_text(index_html(pages, root), encoding="utf-8")
    (dest / STAMP).write_text("a site written by `python -m grader site`\n")
    leaks.check(dest, root)
    return pages


def _prepare(dest: Path) -> None:
    if dest.exists() and any(dest.iterdir()):
        if not (dest / STAMP).exists():
            raise ValueError(f"{dest} is not empty and holds no earlier site: choose a new or empty folder")
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)


def _execute_smoke(lesson: str, out: Path, root: Path) -> Run | None:
    from . import execute

    out.mkdir(parents=True, exist_ok=True)
    result = execute.execute_lesson(lesson, smoke=True, out=out, root=root)
    print(f"executed {lesson} in smoke mode: {result.status}", flush=True)
    return _run(out / f"{lesson}.ipynb") if (out / f"{lesson}.ipynb").is_file() else None


def _title(lesson: str, root: Path) -> str:
    """The lesson's first heading, else its id."""
    for cell in notebooks.read(config.lesson_notebook(lesson, root, config.RELEASE)).cells:
        match = re.match(r"#\s+(.+)", cell.source) if cell.cell_type == "markdown" else None
        if match:
            return match.group(1).strip()
    return lesson
