"""Shortcuts for the demo lesson of tests/demo_course.py (the grader's own tests)."""
from grader.cheats import Cheat

CHEATS = [
    Cheat("double", "hard-codes the visible case", "def double(n):\n    return 6"),
    Cheat("square", "returns the visible answer", "def square(n):\n    return 16"),
    Cheat("square", "answers with a float", "def square(n):\n    return float(n * n)"),
]
