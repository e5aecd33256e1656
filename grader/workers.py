"""One submission graded in a throw-away course root, and many of them fanned out.

:func:`grade` is the whole per-submission job. Its input (:class:`Job`) and output
(:class:`Outcome`) are plain bytes and numbers, so the same function runs in a local
process pool (``--workers N``) or on a Dask cluster (``--scheduler tcp://HOST:8786``).
The throw-away root holds a copy of the lesson's source folder and a gradebook with
only that lesson in it, under the anonymous id ``student``; the sandboxed kernel sees
only its own scratch folder of it. The trusted parent records each outcome into the
real gradebook afterwards (:mod:`grader.course`).
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Iterable, Iterator

from traitlets.config import Config

from . import config, nbapi
from .limits import Limits

ANONYMOUS = "student"


@dataclass(frozen=True)
class Job:
    lesson: str
    student: str  # for reports only; the job grades under ANONYMOUS
    files: dict[str, bytes]  # the lesson's source folder: relative path -> bytes
    gradebook: bytes  # a gradebook.db holding only this lesson
    submission: bytes  # the checked notebook (JSON)
    limits: Limits


@dataclass
class Outcome:
    student: str
    executed: bytes | None = None  # the autograded notebook, None when grading failed
    scores: dict[str, tuple[float, float]] = field(default_factory=dict)
    note: str = ""
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.executed is None or bool(self.note)


def execute_config(limits: Limits) -> Config:
    from .execution import SandboxedExecute

    c = nbapi.autograde_pipeline(SandboxedExecute)
    c.SandboxedExecute.memory_bytes = limits.memory_bytes
    c.SandboxedExecute.disk_bytes = limits.disk_bytes
    c.SandboxedExecute.processes = limits.processes
    c.SandboxedExecute.cell_timeout = float(limits.cell_timeout_s)
    c.SandboxedExecute.budget = float(limits.budget_s)
    c.SandboxedExecute.threads = limits.threads
    c.SandboxedExecute.smoke = limits.smoke
    c.SandboxedExecute.sandbox = limits.sandbox
    c.SandboxedExecute.max_output_bytes = limits.max_output_bytes
    return c


def grade(job: Job) -> Outcome:
    """Autograde one submission in a throw-away course root; the kernel runs sandboxed per ``job.limits``."""
    start = time.perf_counter()
    outcome = Outcome(job.student)
    with tempfile.TemporaryDirectory(prefix="grade-") as tmp:
        root = Path(tmp)
        for rel, data in job.files.items():
            _write(root / config.SOURCE / job.lesson / rel, data)
        _write(root / config.WORK / "gradebook.db", job.gradebook)
        _write(root / config.WORK / "submitted" / ANONYMOUS / job.lesson / f"{job.lesson}.ipynb", job.submission)
        api = nbapi.make_api(root, execute_config(job.limits))
        result = api.autograde(job.lesson, ANONYMOUS, force=True, create=True)
        graded = root / config.WORK / "autograded" / ANONYMOUS / job.lesson / f"{job.lesson}.ipynb"
        if not result.get("success") or not graded.exists():
            outcome.note = nbapi.failure_summary(result)
        else:
            outcome.executed = graded.read_bytes()
            outcome.scores = nbapi.cell_scores(root, job.lesson, ANONYMOUS)
            outcome.note = stop_reason(outcome.executed)
    outcome.seconds = time.perf_counter() - start
    return outcome


def stop_reason(executed: bytes) -> str:
    """Why the grader stopped this notebook early (its first GradingStopped output), or ''."""
    from .execution import STOPPED

    for cell in json.loads(executed).get("cells", []):
        for output in cell.get("outputs", []):
            if output.get("ename") == STOPPED and not output.get("evalue", "").startswith("not run"):
                return output["evalue"] + "; the cells before it count, the rest score 0"
    return ""


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _init_worker() -> None:
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    import warnings

    warnings.filterwarnings("ignore")


def run_local(jobs: list[Job], workers: int) -> Iterator[Outcome]:
    """Outcomes as they finish, ``workers`` submissions at a time, each in its own process."""
    if workers <= 1:
        for job in jobs:
            yield _guarded(job)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
        futures = {pool.submit(_guarded, job): job for job in jobs}
        for future in as_completed(futures):
            yield _result(future, futures[future])


def run_dask(jobs: list[Job], scheduler) -> Iterator[Outcome]:
    """Outcomes from a Dask cluster: ``scheduler`` is an address (``tcp://HOST:8786``) or a LocalCluster."""
    from distributed import Client, as_completed as dask_completed

    with Client(scheduler) as client:
        futures = [client.submit(_guarded, job, key=f"grade-{job.lesson}-{i}", pure=False) for i, job in enumerate(jobs)]
        by_key = {f.key: job for f, job in zip(futures, jobs)}
        for future in dask_completed(futures):
            yield _result(future, by_key[future.key])


def _guarded(job: Job) -> Outcome:
    try:
        return grade(job)
    except Exception as err:  # noqa: BLE001: one broken submission never stops the rest
        return Outcome(job.student, note=f"grading failed: {type(err).__name__}: {err}")


def _result(future, job: Job) -> Outcome:
    try:
        return future.result()
    except Exception as err:  # noqa: BLE001: a worker that died (killed, lost) is reported, not fatal
        return Outcome(job.student, note=f"the grading worker failed: {type(err).__name__}: {err}")


def run(jobs: list[Job], workers: int = 1, scheduler=None, progress: bool = True) -> dict[str, Outcome]:
    """Every job's outcome by student, with a progress bar of submissions done and failed."""
    from tqdm import tqdm

    stream: Iterable[Outcome] = run_dask(jobs, scheduler) if scheduler else run_local(jobs, workers)
    outcomes: dict[str, Outcome] = {}
    failed = 0
    with tqdm(total=len(jobs), desc="grading", unit="submission", disable=not progress or not jobs) as bar:
        for outcome in stream:
            outcomes[outcome.student] = outcome
            failed += outcome.failed
            bar.set_postfix(failed=failed)
            bar.update()
    return outcomes

