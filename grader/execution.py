"""nbgrader preprocessors for grading in a sandbox and recording the result.

:class:`SandboxedExecute` replaces nbgrader's ``Execute``: the kernel runs in bwrap
(:mod:`grader.sandbox`), each cell gets min(cell timeout, what is left of the budget),
output floods are cut, and when the kernel dies or is killed the notebook is not lost:
the failing cell and every later code cell get an error output saying why (nbgrader
gives full marks to a test cell without an error, so a cell that never ran must carry
one), and the cells that passed before still count.

:class:`ReplayOutputs` replaces ``Execute`` when the trusted parent records a result
graded elsewhere: it puts the worker's outputs back cell by cell, so nbgrader's own
scoring writes the real gradebook.
"""
from __future__ import annotations

import json
import time

from nbclient.exceptions import CellTimeoutError, DeadKernelError
import nbformat
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from traitlets import Bool, Float, Integer, Unicode

from .sandbox import SandboxedKernelManager

STOPPED = "GradingStopped"  # ename of the error output the grader writes into cells it stopped or never ran
MAX_ERROR_CHARS = 20_000


def stop_output(text: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=STOPPED, evalue=text, traceback=[f"{STOPPED}: {text}"])


def _label(cell: NotebookNode, index: int) -> str:
    grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
    return f"cell {index + 1}" + (f" ({grade_id})" if grade_id else "")


class SandboxedExecute(Execute):
    memory_bytes = Integer(4 << 30).tag(config=True)
    disk_bytes = Integer(2 << 30).tag(config=True)
    processes = Integer(64).tag(config=True)
    cell_timeout = Float(120.0).tag(config=True)
    budget = Float(660.0).tag(config=True)
    threads = Integer(1).tag(config=True)
    smoke = Bool(True).tag(config=True)
    sandbox = Bool(True).tag(config=True)
    max_output_bytes = Integer(1 << 20).tag(config=True)

    def __init__(self, **kw):
        kw["kernel_manager_class"] = SandboxedKernelManager
        super().__init__(**kw)

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        km.memory_bytes, km.threads = self.memory_bytes, self.threads
        km.disk_bytes, km.processes = self.disk_bytes, self.processes
        km.smoke, km.sandbox = int(self.smoke), int(self.sandbox)
        return km

    def preprocess(self, nb, resources=None, km=None):
        self._deadline = time.monotonic() + self.budget
        self._stopped = ""
        self._by_budget = False
        self._sizes: dict[int, int] = {}
        self.interrupt_on_timeout = False
        self.timeout_func = self._timeout_for
        return super().preprocess(nb, resources, km)

    def _timeout_for(self, cell) -> int:
        left = self._deadline - time.monotonic()
        self._by_budget = left < self.cell_timeout
        return max(1, int(min(self.cell_timeout, left)))

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or not cell.source.strip():
            return cell, resources
        if self._stopped:
            cell.outputs = [stop_output(f"not run: {self._stopped}")]
            return cell, resources
        if self._deadline - time.monotonic() < 1:
            return self._stop(cell, resources, f"killed: time limit {self.budget:g} s per submission "
                                                 f"reached before {_label(cell, index)}")
        try:
            return super().preprocess_cell(cell, resources, index)
        except CellTimeoutError:
            self.km.kill_sandbox("time")
            what = f"{self.budget:g} s per submission" if self._by_budget else f"{self.cell_timeout:g} s per cell"
            return self._stop(cell, resources, f"killed: time limit {what} in {_label(cell, index)}")
        except DeadKernelError:
            return self._stop(cell, resources, self._death(cell, index))

    def _death(self, cell, index) -> str:
        bound = {"memory": f"memory limit {self.memory_bytes / (1 << 30):g} GiB",
                 "disk": f"disk limit {self.disk_bytes / (1 << 30):g} GiB (its folder and home)",
                 "processes": f"process limit {self.processes}"}.get(self.km.killed)
        if bound:
            return f"killed: {bound} in {_label(cell, index)}"
        code = self.km.exit_code()
        how = f"code {code}" if code is not None and code >= 0 else f"signal {-code}" if code else "no code"
        return f"the kernel exited ({how}: os._exit, exit() or a crash) in {_label(cell, index)}"

    def _stop(self, cell, resources, reason: str):
        self._stopped = reason
        cell.outputs = list(cell.get("outputs", [])) + [stop_output(reason)]
        return cell, resources

    def output(self, outs, msg, display_id, cell_index):
        """Keep at most ``max_output_bytes`` of output per cell; errors are kept (they decide the score), cut short."""
        if msg["msg_type"] == "error":
            content = msg["content"]
            content["evalue"] = str(content.get("evalue", ""))[:MAX_ERROR_CHARS]
            content["traceback"] = [line[:MAX_ERROR_CHARS] for line in content.get("traceback", [])[:200]]
            return super().output(outs, msg, display_id, cell_index)
        size = self._sizes.get(cell_index, 0)
        if size > self.max_output_bytes:
            return None
        size += len(json.dumps(msg["content"]))
        self._sizes[cell_index] = size
        if size > self.max_output_bytes:
            note = NotebookNode(output_type="stream", name="stdout",
                                text=f"\n... output cut by the grader: over {self.max_output_bytes >> 10} KiB in this cell ...\n")
            outs.append(note)
            return note
        return super().output(outs, msg, display_id, cell_index)


class ReplayOutputs(NbGraderPreprocessor):
    """Outputs (and execution counts) of a notebook executed elsewhere, written back into the same cells."""

    executed = Unicode("", help="path of the executed notebook (JSON) whose outputs to replay").tag(config=True)

    def preprocess(self, nb, resources):
        cells = nbformat.read(self.executed, as_version=4).cells
        if len(cells) != len(nb.cells):
            raise ValueError(f"the graded notebook has {len(cells)} cells, the submission {len(nb.cells)}")
        for cell, graded in zip(nb.cells, cells):
            if cell.cell_type == "code":
                cell.outputs = graded.get("outputs", [])
                cell.execution_count = graded.get("execution_count")
        return nb, resources
