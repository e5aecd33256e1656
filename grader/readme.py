"""Generated sections of README.md: the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``.

The glossary (``grader glossary --write``) and the lesson table's times (``grader record``) are
written here, so that the hand-written prose around them is never touched.
"""
from __future__ import annotations

from pathlib import Path

from . import config


def _split(name: str, root: Path) -> tuple[str, str, str]:
    """(before the start marker and the marker, the section, the end marker and after)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = (Path(root) / "README.md").read_text()
    if start not in text or end not in text.split(start, 1)[1]:
        raise ValueError(f"README.md has no {start} ... {end} section; put the two markers back")
    head, rest = text.split(start, 1)
    body, tail = rest.split(end, 1)
    return head + start, body, end + tail


def read_section(name: str, root: Path = config.REPO) -> str:
    """The section's text, exactly as it stands between its markers."""
    return _split(name, root)[1]


def write_section(name: str, body: str, root: Path = config.REPO) -> None:
    """Replace the section's text with ``body``; the rest of the README stays byte for byte."""
    head, _, tail = _split(name, root)
    (Path(root) / "README.md").write_text(head + body + tail)
