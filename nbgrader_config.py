# nbgrader (its CLI and its JupyterLab extension) reads this file from the folder it starts in.
# The settings live in grader/config.py so that `python -m grader` and nbgrader agree.
from grader.config import course_config

c = get_config()  # noqa: F821 (injected by traitlets)
c.merge(course_config())
