# nbgrader's settings for `make check` and the Validate button (found through JUPYTER_CONFIG_DIR).
c = get_config()  # noqa: F821 (injected by traitlets)
c.Execute.timeout = 900          # training cells run for minutes; nbgrader's default of 30 s would stop them
c.Execute.kernel_name = "python3"
# The grader ignores what a check writes to stderr (a library warning, a progress bar): a check fails by raising.
# nbgrader's validator would count such a cell as failed, so the kernel it starts writes stderr to stdout.
c.Execute.extra_arguments = ["--IPKernelApp.exec_lines=import sys; sys.stderr = sys.stdout"]
