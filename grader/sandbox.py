"""Jupyter kernels for student code inside a bubblewrap sandbox.

The trusted grader (nbgrader, nbclient) runs outside; only the kernel runs inside
``bwrap``: its own user, network, PID, IPC and mount namespaces, no capabilities, a
read-only view of the interpreter, the virtual environment, ``utils/`` and the course
data, and one writable scratch folder. The kernel talks to the grader over ZeroMQ
``ipc`` sockets (unix socket files, which work across network namespaces) in a folder
bound at the same path inside and out. Memory is bounded twice: ``RLIMIT_DATA`` inside
(a large allocation fails with MemoryError, and the cell just errors) and a
watchdog in the parent that kills the sandbox when the memory its processes hold
(anonymous and shared pages; not the pages of mapped library files) passes the bound,
and records why.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import Integer, Unicode

from . import config

INSTALL_HINT = ("bubblewrap (bwrap) is not installed, so student code cannot be sandboxed. Install it with "
                "`sudo apt-get install bubblewrap` (Debian/Ubuntu; `dnf install bubblewrap` on Fedora), "
                "or pass --no-sandbox to grade without a sandbox (only for submissions you trust).")

# Files of /etc a Python kernel needs; /etc as a whole is not shown (it holds shadow, keys, ...).
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "passwd", "group", "nsswitch.conf", "localtime",
             "fonts", "mime.types", "matplotlibrc", "alternatives")
NOBODY = 65534
TMP_BYTES = 512 << 20  # the sandbox's private /tmp is memory: bounded


class SandboxError(RuntimeError):
    """The sandbox cannot be used here."""


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def require_bwrap() -> str:
    """The path of ``bwrap``, or a SandboxError saying how to install it."""
    path = bwrap_path()
    if path is None:
        raise SandboxError(INSTALL_HINT)
    return path


def check() -> None:
    """Start one empty sandbox; a SandboxError with bwrap's own message when this machine cannot
    (bwrap missing, or unprivileged user namespaces turned off, e.g. by AppArmor on Ubuntu 24.04)."""
    with tempfile.TemporaryDirectory(prefix="sandbox-check-") as scratch:
        cmd = bwrap_command([sys.executable, "-c", "pass"], scratch, [scratch], {"PATH": "/usr/bin"}, 1 << 30)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise SandboxError(f"bubblewrap cannot start a sandbox here: {done.stderr.strip() or done.returncode}. "
                           "Allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, or "
                           "an AppArmor profile for bwrap), or pass --no-sandbox (trusted submissions only).")


def _interpreter_roots() -> list[str]:
    """Folders the kernel's interpreter needs: the venv and the real Python it links to."""
    roots = {str(Path(sys.prefix).resolve()), str(Path(sys.base_prefix).resolve()),
             str(Path(sys.executable).resolve().parent.parent)}
    return sorted(r for r in roots if not r.startswith("/usr"))


def data_dir() -> str | None:
    """The course data folder the grader sees (as :func:`utils.data.data_root` finds it), if it exists."""
    chosen = os.environ.get("COURSE_DATA_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cnn-course", "data")
    return str(Path(chosen).resolve()) if Path(chosen).is_dir() else None


def _readonly_paths() -> list[str]:
    paths = ["/usr"] + _interpreter_roots() + [str(config.REPO / "utils")]
    return paths + ([data_dir()] if data_dir() else [])


def bwrap_command(kernel_cmd: list[str], scratch: str, writable: list[str], env: dict[str, str],
                  memory_bytes: int, file_bytes: int = 2 << 30, bwrap: str | None = None) -> list[str]:
    """``kernel_cmd`` wrapped in bwrap, with ``scratch`` as working folder and ``writable`` the only writable paths."""
    cmd = [bwrap or require_bwrap(), "--unshare-all", "--die-with-parent", "--new-session",
           "--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY), "--cap-drop", "ALL",
           "--proc", "/proc", "--dev", "/dev", "--size", str(TMP_BYTES), "--tmpfs", "/tmp"]  # first: binds may lie under /tmp
    for path in _readonly_paths():
        cmd += ["--ro-bind", path, path]
    for name in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{name}"):
            cmd += ["--symlink", os.readlink(f"/{name}"), f"/{name}"]
    for name in ETC_FILES:
        cmd += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for path in writable:
        cmd += ["--bind", path, path]
    cmd += ["--remount-ro", "/", "--chdir", scratch, "--clearenv"]
    for key, value in sorted(env.items()):
        cmd += ["--setenv", key, value]
    return cmd + ["--", "prlimit", f"--data={memory_bytes}", f"--fsize={file_bytes}", "--"] + kernel_cmd


def kernel_env(home: str, threads: int, smoke: bool) -> dict[str, str]:
    """The kernel's whole environment: nothing of the instructor's leaks in."""
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": home, "MPLCONFIGDIR": f"{home}/.mpl",
           "XDG_CACHE_HOME": f"{home}/.cache", "COURSE_CACHE_DIR": f"{home}/.cache/cnn-course",
           "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore", "COURSE_SMOKE": "1" if smoke else "0",
           "COURSE_QUIET": "1", "LANG": "C.UTF-8", "PYTHONNOUSERSITE": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TORCH_NUM_THREADS"):
        env[key] = str(threads)
    if data_dir():
        env["COURSE_DATA_DIR"] = data_dir()
    if os.environ.get("COURSE_DEVICE"):
        env["COURSE_DEVICE"] = os.environ["COURSE_DEVICE"]
    return env


def held_memory(pid: int) -> int:
    """Memory a process holds for itself, in bytes: anonymous pages plus shared memory (``RssAnon`` +
    ``RssShmem``). Pages of mapped files (torch's libraries: a few hundred MiB in every kernel) are left
    out: they are shared and the system can drop them, so counting them charges an honest kernel
    for what it imports. 0 once the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return sum(int(fields.get(key, "0 kB").split()[0]) for key in ("RssAnon", "RssShmem")) * 1024


def _tree(pid: int) -> list[int]:
    """A process and all its descendants ([] once it is gone)."""
    import psutil

    try:
        return [pid] + [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def tree_memory(pid: int) -> int:
    """``held_memory`` of a process and all its descendants, in bytes (0 once it is gone)."""
    return sum(held_memory(p) for p in _tree(pid))


def disk_usage(paths: list[str], max_entries: int = 200_000) -> int:
    """Bytes of the files under ``paths`` (links not followed); a tree of more than ``max_entries``
    entries counts as infinite (a million empty files fill a disk's inodes, not its bytes)."""
    total, entries = 0, 0
    stack = list(paths)
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    entries += 1
                    if entries > max_entries:
                        return 1 << 62
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_blocks * 512
        except OSError:
            continue
    return total


class Watchdog(threading.Thread):
    """Kills a process tree that holds more than ``memory`` bytes (``tree_memory``), runs more than
    ``processes`` processes, or has written more than ``disk`` bytes under ``folders``; ``kill``
    gets the reason ('memory', 'processes', 'disk') and ``fired`` says it did."""

    def __init__(self, pid: int, memory: int, kill, processes: int = 1 << 30, disk: int = 1 << 62,
                 folders: tuple[str, ...] = (), interval: float = 0.2, disk_every: int = 5):
        super().__init__(daemon=True)
        self.pid, self.memory, self.kill, self.interval = pid, memory, kill, interval
        self.processes, self.disk, self.folders, self.disk_every = processes, disk, list(folders), disk_every
        self.fired = False
        self.stopped = threading.Event()

    def _over(self, tick: int) -> str:
        pids = _tree(self.pid)
        if len(pids) > self.processes:
            return "processes"
        if sum(held_memory(p) for p in pids) > self.memory:
            return "memory"
        if self.folders and tick % self.disk_every == 0 and disk_usage(self.folders) > self.disk:
            return "disk"
        return ""

    def run(self) -> None:
        tick = 0
        while not self.stopped.wait(self.interval):
            tick += 1
            reason = self._over(tick)
            if reason:
                self.fired = True
                self.kill(reason)
                return


class SandboxedKernelManager(AsyncKernelManager):
    """An ipykernel started inside bwrap, reached over ipc sockets; ``killed`` says why the grader stopped it."""

    memory_bytes = Integer(4 << 30, help="memory bound of the kernel (RLIMIT_DATA and the memory watchdog)").tag(config=True)
    disk_bytes = Integer(2 << 30, help="bytes the kernel may write to its folder and home (and RLIMIT_FSIZE)").tag(config=True)
    processes = Integer(64, help="processes the sandbox may run at once").tag(config=True)
    threads = Integer(1, help="torch/OpenMP threads of the kernel").tag(config=True)
    smoke = Integer(1, help="1: the kernel sees COURSE_SMOKE=1").tag(config=True)
    sandbox = Integer(1, help="0: run the kernel unsandboxed (--no-sandbox)").tag(config=True)
    killed = Unicode("", help="why the grader killed the kernel ('memory', 'processes', 'disk', 'time'), "
                              "empty if it did not")

    def __init__(self, **kw):
        super().__init__(**kw)
        self._dir = tempfile.mkdtemp(prefix="kernel-")  # 0700: the sandbox's user is this user, mapped
        self._sock = os.path.join(self._dir, "sock")
        self._home = os.path.join(self._dir, "home")
        for path in (self._sock, self._home):
            os.makedirs(path, mode=0o700)
        self.transport = "ipc"
        self.ip = os.path.join(self._sock, "kernel")
        self.connection_file = os.path.join(self._sock, "kernel.json")
        self._watchdog: Watchdog | None = None
        self._writable = [self._home]

    def format_kernel_cmd(self, extra_arguments=None):
        cmd = super().format_kernel_cmd(extra_arguments)
        if not self.sandbox:
            return cmd
        scratch = str(Path(self._launch_args.get("cwd") or self._home).resolve())
        env = kernel_env(self._home, self.threads, bool(self.smoke))
        self._writable = [self._home, scratch]
        return bwrap_command(cmd, scratch, [self._sock, self._home, scratch], env, self.memory_bytes, self.disk_bytes)

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        if self.sandbox:
            kw.pop("env", None)  # bwrap --clearenv sets the kernel's environment
        else:
            kw["env"] = {**(kw.get("env") or os.environ), **kernel_env(self._home, self.threads, bool(self.smoke))}
        self._log = open(os.path.join(self._dir, "kernel.log"), "wb")  # noqa: SIM115 (closed in cleanup)
        kw.update(stdout=self._log, stderr=subprocess.STDOUT)
        await super()._async_launch_kernel(kernel_cmd, **kw)
        self.killed = ""
        self._watchdog = Watchdog(self.pid(), self.memory_bytes, self.kill_sandbox, processes=self.processes,
                                  disk=self.disk_bytes, folders=tuple(self._writable) if self.sandbox else ())
        self._watchdog.start()

    def pid(self) -> int:
        return self.provisioner.process.pid

    def kill_sandbox(self, reason: str) -> None:
        """SIGKILL the sandbox (bwrap takes the kernel and everything it started with it)."""
        self.killed = self.killed or reason
        try:
            os.killpg(self.provisioner.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, AttributeError):
            pass

    def log_tail(self, lines: int = 5) -> str:
        """The end of what the sandbox and kernel printed (bwrap's own errors land here)."""
        try:
            text = Path(self._dir, "kernel.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def exit_code(self) -> int | None:
        process = getattr(self.provisioner, "process", None)
        return None if process is None else process.poll()

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        if self._watchdog is not None:
            self._watchdog.stopped.set()
        if getattr(self, "_log", None) is not None:
            self._log.close()
        await super()._async_cleanup_resources(restart)
        if not restart:
            shutil.rmtree(self._dir, ignore_errors=True)
