"""What one submission may use while it is graded: memory, time per cell, time in all, threads."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from . import config, readme

MEMORY_GIB = 4.0
DISK_GIB = 2.0  # what the kernel may write to its folder and home, and the largest file it may write
MAX_PROCESSES = 64  # a sandbox runs 3 (bwrap twice, the kernel); DataLoader workers add a few; a fork bomb stops here
CELL_TIMEOUT_S = 120.0  # smoke mode's slowest cell takes seconds; a minute of margin per cell is plenty
BUDGET_FACTOR = 5
BUDGET_EXTRA_S = 60.0
BUDGET_UNMEASURED_S = 600.0  # a lesson without a measured smoke time
MAX_OUTPUT_BYTES = 1 << 20  # per cell; the rest of a flood is dropped with a note


@dataclass(frozen=True)
class Limits:
    """The bounds of one submission's kernel. ``budget_s`` is wall clock for the whole notebook."""

    memory_gib: float = MEMORY_GIB
    disk_gib: float = DISK_GIB
    processes: int = MAX_PROCESSES
    cell_timeout_s: float = CELL_TIMEOUT_S
    budget_s: float = BUDGET_UNMEASURED_S + BUDGET_EXTRA_S
    threads: int = 1
    sandbox: bool = True
    smoke: bool = True
    max_output_bytes: int = MAX_OUTPUT_BYTES

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gib * (1 << 30))

    @property
    def disk_bytes(self) -> int:
        return int(self.disk_gib * (1 << 30))

    def with_(self, **changes) -> "Limits":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def smoke_seconds(lesson: str, root: Path | str = config.REPO) -> float | None:
    """The lesson's smoke time from the README lesson table (its ``smoke ...`` column), None if unmeasured."""
    try:
        table = readme.read_section("lesson-table", Path(root))
    except (OSError, ValueError):
        return None
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table.strip().splitlines()]
    column = next((i for i, name in enumerate(rows[0] if rows else []) if name.startswith("smoke")), None)
    for cells in rows[1:]:
        if column is not None and len(cells) > column and cells[0] == lesson[:2]:
            match = re.fullmatch(r"(\d+(?:\.\d+)?) s", cells[column])
            return float(match.group(1)) if match else None
    return None


def default_budget(lesson: str, root: Path | str = config.REPO) -> float:
    """The lesson's smoke time x 5 plus a minute (10 minutes plus one for a lesson without a measured time)."""
    seconds = smoke_seconds(lesson, root)
    return (BUDGET_UNMEASURED_S if seconds is None else seconds * BUDGET_FACTOR) + BUDGET_EXTRA_S


def threads_per_kernel(workers: int) -> int:
    """Cores shared out among the kernels running at once, so that N workers do not oversubscribe
    (0 workers: a cluster, whose machines this one cannot see: one thread per kernel)."""
    if workers <= 0:
        return 1
    return max(1, (os.cpu_count() or 1) // workers)


def describe(limits: Limits) -> str:
    sandbox = "bwrap sandbox" if limits.sandbox else "NO sandbox"
    return (f"{sandbox}, memory {limits.memory_gib:g} GiB, disk {limits.disk_gib:g} GiB, "
            f"{limits.processes} processes, {limits.cell_timeout_s:g} s per cell, "
            f"{limits.budget_s:g} s per submission, {limits.threads} thread(s) per kernel")
