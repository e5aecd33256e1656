"""The course's nbgrader tooling: release, autograde, feedback, export, self-check, execute.

Run ``python -m grader --help`` for the commands.
"""
