"""Feedback never shows what students must not see, even when a submission prints it.

:func:`secret_lines` collects every line of the lesson's hidden tests, solutions and
model answers that the released lesson does not contain; :class:`ScrubSecrets` (a
feedback preprocessor, run besides nbgrader's ClearHiddenTests) replaces any output
line containing one of them. Short lines (``return x``) are left alone, so ordinary
output survives.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

from . import config

MIN_CHARS = 12
HIDDEN = "[hidden by the grader]"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
BLOCKS = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)### END \1", re.S)


def _lines(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines() if len(line.strip()) >= MIN_CHARS}


def secret_lines(source, released=None) -> set[str]:
    """Lines of solution/hidden-test blocks and model answers in ``source`` that ``released`` does not show."""
    secret: set[str] = set()
    for cell in source.cells:
        meta = cell.metadata.get("nbgrader", {})
        for _, body in BLOCKS.findall(cell.source + "\n"):
            secret |= _lines(body)
        if meta.get("solution") and cell.cell_type == "markdown":
            secret |= _lines(cell.source)
    public = _lines(nbformat.writes(released)) if released is not None else set()
    public |= {line for cell in (released.cells if released is not None else []) for line in _lines(cell.source)}
    return (secret - public) | set(MARKERS)


def scrub_text(text: str, secrets: set[str]) -> str:
    if not secrets:
        return text
    out = [HIDDEN if any(s in ANSI.sub("", line) for s in secrets) else line for line in text.split("\n")]
    return "\n".join(out)


def scrub_output(output, secrets: set[str]) -> None:
    if "text" in output:
        output["text"] = scrub_text("".join(output["text"]), secrets)
    for key, value in list(output.get("data", {}).items()):
        if isinstance(value, (str, list)) and (key.startswith("text/") or key.endswith("json")):
            output["data"][key] = scrub_text("".join(value) if isinstance(value, list) else value, secrets)
    if output.get("output_type") == "error":
        output["evalue"] = scrub_text(str(output.get("evalue", "")), secrets)
        output["traceback"] = [scrub_text(line, secrets) for line in output.get("traceback", [])]


def scrub_notebook(nb, secrets: set[str]):
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            scrub_output(output, secrets)
    return nb


class ScrubSecrets(NbGraderPreprocessor):
    """Feedback preprocessor: every output line quoting a hidden test, a solution or a model answer is replaced."""

    root = Unicode(str(config.REPO), help="the course root, whose solutions/ holds the secrets").tag(config=True)

    def preprocess(self, nb, resources):
        lesson = resources.get("nbgrader", {}).get("assignment") or ""
        name = resources.get("nbgrader", {}).get("notebook") or lesson
        source = Path(self.root) / config.SOURCE / lesson / f"{name}.ipynb"
        released = Path(self.root) / config.RELEASE / lesson / f"{name}.ipynb"
        if not source.exists():
            return nb, resources
        secrets = secret_lines(nbformat.read(source, as_version=4),
                               nbformat.read(released, as_version=4) if released.exists() else None)
        return scrub_notebook(nb, secrets), resources
