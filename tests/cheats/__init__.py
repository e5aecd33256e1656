"""Shortcut submissions per lesson (``lNN.py``), graded by ``python -m grader selfcheck``; see grader/cheats.py."""
