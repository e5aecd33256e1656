"""Execute every ``solutions/`` notebook with papermill, in lesson order.

Smoke mode (``SMOKE=True``) is the default on a machine without a GPU and full mode
where CUDA is present. Executed copies and a timing table go to ``build/executed/``.
A failure names the notebook and the cell, and the remaining notebooks still run.
"""
from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass
from pathlib import Path

from . import config, readme

BUILD = config.REPO / "build" / "executed"


@dataclass
class Run:
    lesson: str
    mode: str
    seconds: float
    status: str
    device: str = ""


def default_smoke() -> bool:
    """Full mode only where a CUDA GPU is present."""
    import torch

    return not torch.cuda.is_available()


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"


def execute_lesson(lesson: str, smoke: bool, out: Path = BUILD, root: Path = config.REPO,
                   overrides: dict | None = None) -> Run:
    """Run one lesson's solution notebook; return its timing and status.

    ``overrides`` set other parameters-cell values, e.g. ``{"EPOCHS": 1}`` to walk full mode's code
    paths on a CPU in minutes (such a run's times and results are not full mode's).
    """
    import papermill as pm

    source = config.lesson_notebook(lesson, root, config.SOURCE)
    target = out / f"{lesson}.ipynb"
    os.environ["COURSE_SMOKE"] = "1" if smoke else "0"
    # Figures belong in the executed copies: a headless MPLBACKEND=Agg (as tests set) would drop them.
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    start = time.perf_counter()
    status = "ok"
    try:
        pm.execute_notebook(str(source), str(target), parameters={"SMOKE": smoke, **(overrides or {})},
                            kernel_name="python3", cwd=str(source.parent), progress_bar=False, log_output=False)
    except pm.PapermillExecutionError as err:
        status = f"FAILED in cell {err.cell_index} (execution count {err.exec_count}): {err.ename}: {err.evalue}"
    except Exception as err:  # a dead kernel, a missing kernel: still report and go on
        status = f"FAILED: {type(err).__name__}: {err}"
    mode = ("smoke" if smoke else "full") + ("+overrides" if overrides else "")
    return Run(lesson, mode, time.perf_counter() - start, status, device_name())


def execute_all(lessons: list[str] | None = None, smoke: bool | None = None, out: Path = BUILD,
                overrides: dict | None = None) -> list[Run]:
    """Execute lessons in order, printing each result as it lands and rewriting the timing table after each
    (a run cut short by a time limit still leaves the times of the lessons it finished)."""
    smoke = default_smoke() if smoke is None else smoke
    lessons = lessons or config.lessons()
    for lesson in lessons:
        check_parameters(lesson, overrides or {})
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for lesson in lessons:
        run = execute_lesson(lesson, smoke, out, overrides=overrides)
        print(f"{run.lesson:<34}{run.mode:<7}{run.seconds:>7.1f}s  {run.status}", flush=True)
        runs.append(run)
        write_timings(runs, out)
    return runs


def check_parameters(lesson: str, overrides: dict, root: Path = config.REPO) -> None:
    """A misspelt override would be injected and silently ignored: refuse names the lesson does not have."""
    import papermill as pm

    known = pm.inspect_notebook(str(config.lesson_notebook(lesson, root, config.SOURCE)))
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ValueError(f"{lesson} has no parameter {', '.join(unknown)}; its parameters: {', '.join(known)}")


def parse_overrides(pairs: list[str]) -> dict:
    """``["EPOCHS=1", "DEPTHS=[8, 14]", "BACKBONE=resnet18"]`` -> values as Python literals (else strings)."""
    import ast

    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip().isidentifier():
            raise ValueError(f"--param takes NAME=VALUE, got {pair!r}")
        try:
            overrides[name.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            overrides[name.strip()] = value.strip()
    return overrides


def write_timings(runs: list[Run], out: Path) -> None:
    """``timings.csv`` (read back by :func:`read_timings`) and a markdown ``timings.md``."""
    with (out / "timings.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["lesson", "mode", "seconds", "status", "device"])
        writer.writerows([r.lesson, r.mode, f"{r.seconds:.1f}", r.status, r.device] for r in runs)
    lines = ["| lesson | mode | seconds | device | status |", "|---|---|---:|---|---|"]
    lines += [f"| {r.lesson} | {r.mode} | {r.seconds:.1f} | {r.device} | {r.status} |" for r in runs]
    (out / "timings.md").write_text("\n".join(lines) + "\n")


def read_timings(path: Path | str) -> list[Run]:
    """The runs of a ``timings.csv``, e.g. one brought back from a GPU machine."""
    with Path(path).open(newline="") as handle:
        return [Run(row["lesson"], row["mode"], float(row["seconds"]), row["status"], row.get("device", ""))
                for row in csv.DictReader(handle)]


COLUMNS = {"smoke": "smoke (2 CPU cores)", "cpu": "full (2 CPU cores)", "gpu": "full (1 GPU)"}


def column_of(run: Run) -> str | None:
    """The lesson-table column a run's time belongs in: smoke, full on a CPU, full on a GPU; None for a
    run with overridden parameters (its time is not the lesson's)."""
    if run.mode == "smoke":
        return COLUMNS["smoke"]
    if run.mode == "full":
        return COLUMNS["cpu" if not run.device or run.device.startswith("cpu") else "gpu"]
    return None


def record_in_readme(runs: list[Run], root: Path = config.REPO) -> list[str]:
    """Write each successful run's time into the README lesson table's column for its mode: smoke, full
    on a CPU (the CPU scale of ``cfg.pick``) or full on a GPU, found by the columns' headers. Returns the
    numbers ("01", ...) of the lessons whose row changed.
    """
    times = {r.lesson[:2]: (column_of(r), f"{r.seconds:.0f} s") for r in runs
             if r.status == "ok" and column_of(r)}
    lines, updated, header = [], [], None
    for line in readme.read_section("lesson-table", root).split("\n"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None and cells[0] == "#":
            header = cells
            missing = [c for c in {column for column, _ in times.values()} if c not in header]
            if missing:
                raise RuntimeError(f"the README lesson table has no column {', '.join(missing)}")
        elif header and cells[0] in times and len(cells) == len(header):
            column, value = times[cells[0]]
            cells[header.index(column)] = value
            line = "| " + " | ".join(cells) + " |"
            updated.append(cells[0])
        lines.append(line)
    readme.write_section("lesson-table", "\n".join(lines), root)
    return updated
