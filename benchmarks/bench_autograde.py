"""How fast does the sandboxed autograder get through a class? K copies of a solved lesson, graded three ways.

1. ``--workers 1``: one submission at a time, each kernel in its bubblewrap sandbox.
2. ``--workers 2``: two at a time (each kernel gets cores // 2 threads), sandboxed.
3. ``--workers 1 --no-sandbox``: as 1 without bwrap, to price the sandbox itself.

Every run grades the same K copies of the lesson's solution notebook in a scratch copy of the course
(``solutions/<lesson>`` only), through :func:`grader.course.autograde` end to end: preflight, the
per-submission job in a throw-away root, and recording into the gradebook. Every copy must score full
marks in every run, or the benchmark fails. The table gives wall-clock seconds and seconds per
submission; the last lines are the sandbox's overhead per submission (run 1 minus run 3, over K; and,
less exposed to a busy machine's changing load, the median kernel start with and without bwrap over
interleaved rounds, which is where the sandbox's cost lies) and ``speedup: N.Nx`` (run 1's seconds /
run 2's). Usage::

    python benchmarks/bench_autograde.py                  # lesson 01, K = 4 (a few minutes on 2 cores)
    python benchmarks/bench_autograde.py --lesson 05 --copies 8
    python benchmarks/bench_autograde.py --kernel-only    # the sandbox's cost per kernel start only (a minute)
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("COURSE_DATA_DIR", str(REPO.parent / "shared" / "data"))

from grader import config, course, notebooks  # noqa: E402


def _scratch_course(lesson: str, tmp: Path, copies: int) -> tuple[Path, Path]:
    root = tmp / "course"
    shutil.copytree(REPO / config.SOURCE / lesson, root / config.SOURCE / lesson)
    shutil.copy(REPO / "README.md", root / "README.md")  # the lesson table: the default budget
    subs = tmp / "subs"
    subs.mkdir()
    for i in range(copies):
        shutil.copy(config.lesson_notebook(lesson, REPO), subs / f"student{i:02d}.ipynb")
    return root, subs


def _run(root: Path, subs: Path, lesson: str, workers: int, sandbox: bool) -> float:
    limits = course.default_limits(lesson, root, workers).with_(sandbox=sandbox)
    start = time.perf_counter()
    results = course.autograde(subs, lesson, root=root, limits=limits, workers=workers)
    seconds = time.perf_counter() - start
    tests = [c.metadata.nbgrader["grade_id"] for c in notebooks.grade_cells(notebooks.read(config.lesson_notebook(lesson, root)))]
    short = [r for r in results if not r.graded or r.note or any(r.cells[t][0] < r.cells[t][1] for t in tests)]
    if short:
        raise SystemExit(f"not every copy scored full marks: {[(r.student, r.score, r.note) for r in short]}")
    return seconds


def kernel_start(sandbox: bool) -> float:
    """Seconds to start a kernel, run ``import utils`` (torch with it) and shut it down."""
    import nbformat
    from nbclient import NotebookClient

    from grader.sandbox import SandboxedKernelManager

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import utils")])
    with tempfile.TemporaryDirectory(prefix="bench-kernel-") as cwd:
        client = NotebookClient(nb, kernel_manager_class=SandboxedKernelManager, resources={"metadata": {"path": cwd}})
        client.km = client.create_kernel_manager()
        client.km.sandbox = int(sandbox)
        start = time.perf_counter()
        client.execute()
        return time.perf_counter() - start


def kernel_overhead(rounds: int) -> tuple[float, float]:
    """Median kernel start with and without the sandbox, interleaved so that load changes hit both alike."""
    import statistics

    times = {True: [], False: []}
    for _ in range(rounds):
        for sandbox in (True, False):
            times[sandbox].append(kernel_start(sandbox))
    return statistics.median(times[True]), statistics.median(times[False])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lesson", default="01_conv_arithmetic")
    p.add_argument("--copies", type=int, default=4)
    p.add_argument("--rounds", type=int, default=5, help="interleaved kernel starts per mode")
    p.add_argument("--kernel-only", action="store_true", help="only the interleaved kernel-start comparison")
    args = p.parse_args(argv)
    sandboxed, bare = kernel_overhead(args.rounds)
    print(f"kernel start + import utils (median of {args.rounds}, interleaved): sandboxed {sandboxed:.2f} s, "
          f"unsandboxed {bare:.2f} s: {sandboxed - bare:+.2f} s", flush=True)
    if args.kernel_only:
        return 0
    lesson = next(k for k in config.lessons() if k == args.lesson or k[:2] == args.lesson.zfill(2))
    load = os.getloadavg()[0]
    runs = [("sandboxed", 1, True), ("sandboxed", 2, True), ("no sandbox", 1, False)]
    times = {}
    with tempfile.TemporaryDirectory(prefix="bench-autograde-") as tmp:
        root, subs = _scratch_course(lesson, Path(tmp), args.copies)
        warm = Path(tmp) / "warm"
        warm.mkdir()
        shutil.copy(next(subs.iterdir()), warm / "warm.ipynb")
        _run(root, warm, lesson, 1, True)  # warm-up: gradebook, imports, page cache
        for name, workers, sandbox in runs:
            times[(name, workers)] = _run(root, subs, lesson, workers, sandbox)
            print(f"  {name}, {workers} worker(s): {times[(name, workers)]:.1f} s", flush=True)
    k = args.copies
    print(f"\n{lesson}: {k} copies of the solution, {os.cpu_count()} cores, load average {load:.1f} at start")
    print(f"| run | workers | seconds | s / submission |\n|---|---:|---:|---:|")
    for (name, workers), seconds in times.items():
        print(f"| {name} | {workers} | {seconds:.1f} | {seconds / k:.1f} |")
    overhead = (times[("sandboxed", 1)] - times[("no sandbox", 1)]) / k
    print(f"sandbox overhead: {overhead:+.2f} s per submission (whole runs), "
          f"{sandboxed - bare:+.2f} s per kernel start (interleaved medians)")
    print(f"speedup: {times[('sandboxed', 1)] / times[('sandboxed', 2)]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
