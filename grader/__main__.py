"""Command line: ``python -m grader COMMAND``.

    release [LESSON ...]            regenerate lessons/ from solutions/
    autograde DIR --lesson LESSON   grade a folder of submissions (one notebook, folder or zip per student),
                                    each in a bubblewrap sandbox; --workers N, --scheduler tcp://HOST:8786
    feedback --lesson LESSON        HTML feedback for graded submissions (hidden tests removed)
    export [--out FILE]             grades as CSV
    selfcheck [LESSON ...]          solution scores full marks, untouched release scores 0
    execute [--smoke|--full] [--readme] [--param NAME=VALUE ...] [LESSON ...]
                                    run solutions/ notebooks with papermill (--readme: record the times)
    record TIMINGS_CSV              write the times of an execute run made elsewhere into the README
    normalize [NOTEBOOK ...]        strip outputs and volatile metadata
    glossary [--write]              the course glossary (English, Korean, lesson), from the lessons
    student-edition DIR             write what students receive (no solutions, no hidden tests), checked for leaks
    site DIR                        static HTML of every lesson with its latest executed results, checked for leaks
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from . import config


def _lessons(names: list[str]) -> list[str]:
    known = config.lessons()
    chosen = []
    for name in names or known:
        matches = [k for k in known if k == name or k.startswith(name + "_") or k[:2] == name.zfill(2)]
        if not matches:
            sys.exit(f"unknown lesson {name!r}; known lessons: {', '.join(known)}")
        chosen.extend(m for m in matches if m not in chosen)
    return chosen


def cmd_release(args) -> int:
    from . import course

    for path in course.release(_lessons(args.lessons)):
        print(f"released {path.relative_to(config.REPO)}")
    return 0


def cmd_autograde(args) -> int:
    from . import course, limits, sandbox

    lesson = _lessons([args.lesson])[0]
    workers = args.workers or os.cpu_count() or 1
    bounds = course.default_limits(lesson, workers=0 if args.scheduler else workers).with_(
        memory_gib=args.memory, disk_gib=args.disk, processes=args.processes, cell_timeout_s=args.cell_timeout,
        budget_s=args.budget, sandbox=not args.no_sandbox)
    if args.no_sandbox:
        print("warning: --no-sandbox: student code runs with your permissions, network and files", file=sys.stderr)
    print(f"grading {lesson}: {limits.describe(bounds)}; "
          f"{'Dask scheduler ' + args.scheduler if args.scheduler else f'{workers} worker(s)'}", file=sys.stderr)
    try:
        results = course.autograde(args.folder, lesson, smoke=not args.full, limits=bounds, workers=workers,
                                   scheduler=args.scheduler, progress=True)
    except (sandbox.SandboxError, FileNotFoundError, ValueError) as err:
        sys.exit(str(err))
    print(course.format_results(lesson, results))
    return 0


def cmd_feedback(args) -> int:
    from . import course

    folder = course.feedback(_lessons([args.lesson])[0], args.student)
    print(f"feedback written under {folder}")
    return 0


def cmd_export(args) -> int:
    from . import course

    print(f"grades written to {course.export(args.out)}")
    return 0


def cmd_selfcheck(args) -> int:
    from . import selfcheck

    checks = []
    for lesson in _lessons(args.lessons):
        checks.append(selfcheck.check_lesson(lesson))
        print(f"checked {lesson}: {'ok' if checks[-1].ok else 'FAIL'} ({checks[-1].seconds:.0f}s)", flush=True)
    print(selfcheck.format_table(checks))
    return 0 if all(c.ok for c in checks) else 1


def cmd_execute(args) -> int:
    from . import execute

    smoke = execute.default_smoke() if not (args.smoke or args.full) else args.smoke
    try:
        overrides = execute.parse_overrides(args.param)
    except ValueError as err:
        sys.exit(str(err))
    if args.readme and overrides:
        sys.exit("--readme records the lessons' own modes; drop --param")
    try:
        runs = execute.execute_all(_lessons(args.lessons), smoke=smoke, out=Path(args.out), overrides=overrides)
    except ValueError as err:
        sys.exit(str(err))
    print(f"timing table: {Path(args.out) / 'timings.md'}")
    if args.readme:
        updated = execute.record_in_readme(runs)
        print(f"README lesson table: times recorded for lessons {', '.join(updated) or 'none'}")
    return 0 if all(r.status == "ok" for r in runs) else 1


def cmd_record(args) -> int:
    from . import execute

    try:
        updated = execute.record_in_readme(execute.read_timings(args.timings))
    except (OSError, KeyError, ValueError, RuntimeError) as err:
        sys.exit(f"could not record {args.timings}: {err}")
    print(f"README lesson table: times recorded for lessons {', '.join(updated) or 'none'}")
    return 0


def cmd_normalize(args) -> int:
    from . import notebooks

    paths = [Path(p) for p in args.notebooks] or sorted(config.REPO.glob("solutions/*/*.ipynb")) + sorted(
        config.REPO.glob("lessons/*/*.ipynb"))
    for path in paths:
        if notebooks.normalize_file(path):
            print(f"normalized {path}")
    return 0


def cmd_glossary(args) -> int:
    from . import glossary

    again = glossary.repeated()
    for entry in again:
        print(f"Lesson {entry.lesson[:2]} repeats {entry.english!r}: name it under the table instead")
    if args.write:
        glossary.write_readme()
        print("README.md glossary updated")
    else:
        print(glossary.readme_table())
    return 1 if again else 0


def cmd_student_edition(args) -> int:
    from . import edition

    try:
        dest = edition.build(args.dir)
    except (OSError, ValueError, RuntimeError) as err:
        sys.exit(str(err))
    print(f"student edition written to {dest} and checked: no solution or hidden-test line in it")
    print("hand out that folder; students run `make lab` there (`make lab TORCH=cpu` without an NVIDIA GPU)")
    return 0


def cmd_site(args) -> int:
    from . import site

    try:
        pages = site.build(args.dir, executed=[Path(p) for p in args.executed] or site.EXECUTED,
                           smoke_if_missing=args.execute)
    except (OSError, ValueError, RuntimeError) as err:
        sys.exit(str(err))
    for page in pages:
        print(f"{page.lesson}: {page.source}")
    print(f"site written to {Path(args.dir) / 'index.html'} and checked: no solution or hidden-test line in it")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m grader", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("release", help="regenerate lessons/ from solutions/")
    s.add_argument("lessons", nargs="*", help="lesson ids or numbers (default: all)")
    s.set_defaults(func=cmd_release)
    s = sub.add_parser("autograde", help="grade a folder of student submissions")
    s.add_argument("folder", help="one <student>.ipynb, <student>/ folder or <student>.zip per student")
    s.add_argument("--lesson", required=True, help="lesson id or number, e.g. 01")
    s.add_argument("--full", action="store_true", help="grade in full mode instead of smoke mode")
    s.add_argument("--workers", type=int, default=0, help="submissions graded at once (default: number of cores)")
    s.add_argument("--scheduler", default=None, metavar="tcp://HOST:8786",
                   help="grade on this Dask cluster instead of local worker processes")
    s.add_argument("--memory", type=float, default=None, metavar="GIB", help="memory bound per kernel (default 4)")
    s.add_argument("--disk", type=float, default=None, metavar="GIB",
                   help="what a kernel may write to its folder and home, and its largest file (default 2)")
    s.add_argument("--processes", type=int, default=None, metavar="N", help="processes per sandbox (default 64)")
    s.add_argument("--cell-timeout", type=float, default=None, metavar="S", help="seconds per cell (default 120)")
    s.add_argument("--budget", type=float, default=None, metavar="S",
                   help="seconds per submission (default: the lesson's smoke time x 5 + 60)")
    s.add_argument("--no-sandbox", action="store_true",
                   help="run student code without bubblewrap (trusted submissions only)")
    s.set_defaults(func=cmd_autograde)
    s = sub.add_parser("feedback", help="generate HTML feedback (hidden tests removed)")
    s.add_argument("--lesson", required=True)
    s.add_argument("--student", default=None)
    s.set_defaults(func=cmd_feedback)
    s = sub.add_parser("export", help="export grades to CSV")
    s.add_argument("--out", default=str(config.REPO / config.WORK / "grades.csv"))
    s.set_defaults(func=cmd_export)
    s = sub.add_parser("selfcheck", help="solutions score full marks, untouched lessons score 0")
    s.add_argument("lessons", nargs="*")
    s.set_defaults(func=cmd_selfcheck)
    s = sub.add_parser("execute", help="execute solutions/ notebooks with papermill")
    mode = s.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="fast CPU check (default without a GPU)")
    mode.add_argument("--full", action="store_true", help="full mode (default with a GPU)")
    s.add_argument("--out", default=str(config.REPO / "build" / "executed"))
    s.add_argument("--readme", action="store_true",
                   help="write the times into the README's lesson table (smoke, full on a CPU or full on a GPU column)")
    s.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="override a parameters-cell value, e.g. --param EPOCHS=1 (repeatable)")
    s.add_argument("lessons", nargs="*")
    s.set_defaults(func=cmd_execute)
    s = sub.add_parser("record", help="write the times of a timings.csv (e.g. from a GPU machine) into the README")
    s.add_argument("timings", help="a timings.csv written by `execute`")
    s.set_defaults(func=cmd_record)
    s = sub.add_parser("normalize", help="strip outputs and volatile metadata from notebooks")
    s.add_argument("notebooks", nargs="*")
    s.set_defaults(func=cmd_normalize)
    s = sub.add_parser("glossary", help="the course glossary collected from the lessons")
    s.add_argument("--write", action="store_true", help="update the README's glossary section")
    s.set_defaults(func=cmd_glossary)
    s = sub.add_parser("student-edition", help="write the student edition: lessons, utils, README, Makefile")
    s.add_argument("dir", help="a new or empty folder (or an earlier edition, which is replaced)")
    s.set_defaults(func=cmd_student_edition)
    s = sub.add_parser("site", help="static HTML of every lesson with its executed results")
    s.add_argument("dir", help="a new or empty folder (or an earlier site, which is replaced)")
    s.add_argument("--executed", action="append", default=[], metavar="FOLDER",
                   help="where `execute` wrote executed notebooks (repeatable; default: build/executed and "
                        "build/gpu); a full-mode run is preferred to a smoke run")
    s.add_argument("--execute", action="store_true",
                   help="run lessons that have no executed copy yet, in smoke mode, instead of stopping")
    s.set_defaults(func=cmd_site)
    return p


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=".*not in session.*")  # nbgrader's harmless SQLAlchemy chatter
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
