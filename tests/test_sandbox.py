"""Hostile and broken submissions against the sandboxed autograder, on the tiny demo lesson.

Most submissions are graded in ONE autograde call (two workers, small limits) by the
module fixture; each test then checks what the instructor gets for one of them: the
score, the note, that nothing was read, written or sent, that nothing leaked into the
feedback, and that everyone else was still graded.
"""
import json
import shutil
import socket
import threading
import zipfile
from pathlib import Path

import nbformat
import pytest

from demo_course import LESSON, build_demo
from grader import config, course, leaks, notebooks, sandbox, workers
from grader.authoring import LessonBuilder
from grader.limits import Limits

pytestmark = pytest.mark.skipif(sandbox.bwrap_path() is None, reason="bubblewrap is not installed")

HONEST = {"double": "def double(n):\n    return 2 * n", "square": "def square(n):\n    return n * n"}
LIMITS = Limits(memory_gib=2.0, disk_gib=0.25, processes=64, cell_timeout_s=10, budget_s=40, threads=1)


class Listener:
    """A TCP server on loopback that records whether anyone connected."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()


def _other_lesson(root: Path) -> None:
    nb = LessonBuilder("l01")
    nb.md("# Another lesson")
    nb.solution("triple", "def triple(n):\n    ### BEGIN SOLUTION\n    return 3 * n\n    ### END SOLUTION")
    nb.tests("triple", 1, "assert triple(2) == 6")
    nb.save(root / "solutions" / "01_other" / "01_other.ipynb")


def _submission(released, code=None, extra=(), edit=None):
    """The released notebook with solution cells replaced (``code``: exercise -> source), cells appended."""
    nb = nbformat.from_dict(json.loads(json.dumps(released)))
    code = {**HONEST, **(code or {})}
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        if grade_id.startswith("l00_") and grade_id[4:] in code:
            cell.source = code[grade_id[4:]]
    for source in extra:
        nb.cells.append(nbformat.v4.new_code_cell(source))
    if edit:
        edit(nb)
    return nb


def _strip(nb, keep_ids=True):
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
        if not keep_ids:
            cell.id = f"x{abs(hash(cell.source)) % 10**8}"


def _duplicate_test(nb):
    index = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "l00_double_tests")
    copy = nbformat.from_dict(json.loads(json.dumps(nb.cells[index])))
    copy.id = "pasted-copy"
    nb.cells.insert(index + 1, copy)


def _hostile(root: Path, port: int) -> dict[str, str]:
    """Solution-cell code of the hostile students (each otherwise honest)."""
    real = str(root)
    return {
        "reader": f'''
import glob, os
found = []
for base in [os.getcwd(), {real!r}, "/work", "/root", os.path.expanduser("~")]:
    for up in range(8):
        here = os.path.abspath(os.path.join(base, *[".."] * up))
        found += glob.glob(here + "/solutions/*/*.ipynb") + glob.glob(here + "/grader/gradebook.db")
for path in found:
    try:
        print("LEAKED", path, open(path).read()[:2000])
    except OSError as err:
        print("blocked", err)
print("found", len(found))
def double(n):
    return 2 * n''',
        "writer": f'''
import os, sqlite3
for path in [{real + "/solutions/00_demo/pwned.txt"!r}, {real + "/pwned.txt"!r}, "/usr/pwned.txt",
             os.path.expanduser("~root/pwned.txt"), "/pwned.txt"]:
    try:
        open(path, "w").write("pwned")
        print("WROTE", path)
    except OSError as err:
        print("blocked", type(err).__name__)
try:
    db = sqlite3.connect({real + "/grader/gradebook.db"!r})
    db.execute("update grade set auto_score = 99")
    db.commit()
    print("WROTE gradebook")
except sqlite3.Error as err:
    print("blocked", err)
open("scratch.txt", "w").write("my own scratch is writable")
def double(n):
    return 2 * n''',
        "network": f'''
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=3)
    print("CONNECTED")
except OSError as err:
    print("blocked", err)
def double(n):
    return 2 * n''',
        "memhog": "hog = bytearray(3 << 30)  # past RLIMIT_DATA: a MemoryError, the cell fails\ndef double(n):\n    return 2 * n",
        "shmhog": '''
import mmap
m = mmap.mmap(-1, 3 << 30, flags=mmap.MAP_SHARED)  # shared memory escapes RLIMIT_DATA, not the watchdog
for i in range(0, 3 << 30, 1 << 20):
    m[i:i + (1 << 20)] = b"x" * (1 << 20)
def double(n):
    return 2 * n''',
        "forkbomb": '''
import subprocess, time
kids = [subprocess.Popen(["sleep", "30"]) for _ in range(300)]  # a fork bomb, bounded in case the guard fails
time.sleep(5)
def double(n):
    return 2 * n''',
        "filler": '''
import time
for i in range(64):  # 1 GiB in 16 MiB files, past the 0.25 GiB disk bound
    open(f"fill{i}.bin", "wb").write(b"x" * (16 << 20))
    time.sleep(0.05)
time.sleep(3)
def double(n):
    return 2 * n''',
        "forever": "while True:\n    pass",
        "exiter": {"square": "import os\nos._exit(3)"},
        "sysexit": "import sys\nsys.exit(2)\ndef double(n):\n    return 2 * n",
        "flood": 'for _ in range(20000):\n    print("x" * 1000)\ndef double(n):\n    return 2 * n',
        "history": {"square": "print(In)  # every cell run so far, hidden tests included\ndef square(n):\n    return n * n"},
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    build_demo(root)
    _other_lesson(root)
    course.release(root=root)
    released = notebooks.read(config.lesson_notebook(LESSON, root, config.RELEASE))
    subs = tmp_path_factory.mktemp("subs")
    listener = Listener()
    for student, code in _hostile(root, listener.port).items():
        code = code if isinstance(code, dict) else {"double": code}
        notebooks.write(_submission(released, code), subs / f"{student}.ipynb")
    notebooks.write(_submission(released), subs / "alice.ipynb")
    notebooks.write(_submission(released), subs / "김민수.ipynb")
    notebooks.write(_submission(released, extra=["import time\ntime.sleep(9)"] * 6), subs / "slow.ipynb")
    notebooks.write(_submission(released, edit=_duplicate_test), subs / "dupe.ipynb")
    notebooks.write(_submission(released, edit=_strip), subs / "stripped.ipynb")
    renamed = {"double": "def double(n):\n    # my answer\n    return n + n"}
    notebooks.write(_submission(released, renamed, edit=lambda nb: _strip(nb, keep_ids=False)), subs / "stripped_noid.ipynb")
    hopeless = _submission(released, edit=lambda nb: _strip(nb, keep_ids=False))
    hopeless.cells = [c for c in hopeless.cells if "def " not in c.source and "check_int" not in c.source]
    notebooks.write(hopeless, subs / "hopeless.ipynb")
    text = nbformat.writes(_submission(released))
    (subs / "badjson.ipynb").write_text(text[:200] + "\n}}, oops" + text[200:])
    notebooks.write(notebooks.read(config.lesson_notebook("01_other", root, config.RELEASE)), subs / "wronglesson.ipynb")
    with zipfile.ZipFile(subs / "zipslip.zip", "w") as z:
        z.writestr(f"{LESSON}.ipynb", text)
        z.writestr("../../zipslip_escaped.txt", "outside")
    gradebook_before = (root / "grader" / "gradebook.db").read_bytes()
    results = {r.student: r for r in course.autograde(subs, LESSON, root=root, limits=LIMITS, workers=2)}
    listener.stop.set()
    course.feedback(LESSON, root=root)
    return {"root": root, "subs": subs, "results": results, "listener": listener, "released": released,
            "gradebook_before": gradebook_before}


def _outputs(graded, student) -> str:
    path = graded["root"] / "grader" / "autograded" / student / LESSON / f"{LESSON}.ipynb"
    nb = notebooks.read(path)
    return "\n".join(json.dumps(o) for c in nb.cells for o in c.get("outputs", []))


def _feedback(graded, student) -> str:
    return (graded["root"] / "grader" / "feedback" / student / LESSON / f"{LESSON}.html").read_text()


def test_honest_submissions_score_as_before(graded):
    for student in ("alice", "김민수", "writer", "reader", "network", "flood"):
        r = graded["results"][student]
        assert (r.graded, r.score, r.max_score) == (True, 3, 4), (student, r)
    assert graded["results"]["alice"].note == ""


def test_student_code_cannot_read_the_answer_key_or_gradebook(graded):
    out = _outputs(graded, "reader")
    assert "LEAKED" not in out and "found 0" in out
    assert "random.sample" not in _feedback(graded, "reader")


def test_student_code_writes_only_its_scratch(graded):
    root = graded["root"]
    out = _outputs(graded, "writer")
    assert "WROTE" not in out and out.count("blocked") == 6
    assert not list(root.rglob("pwned.txt"))
    assert not any(Path(p).exists() for p in ("/usr/pwned.txt", "/root/pwned.txt", "/pwned.txt"))
    scores = {s: r.score for s, r in graded["results"].items() if r.graded}
    assert max(scores.values()) <= 4  # nobody got the 99 the writer tried to set


def test_no_network(graded):
    assert "CONNECTED" not in _outputs(graded, "network")
    assert graded["listener"].connections == 0


def test_memory_bound_is_a_memory_error_or_a_kill_with_partial_credit(graded):
    hog = graded["results"]["memhog"]
    assert (hog.graded, hog.score) == (True, 2) and "MemoryError" in _outputs(graded, "memhog")
    shm = graded["results"]["shmhog"]
    assert shm.graded and shm.score == 0
    assert "killed: memory limit 2 GiB in cell" in shm.note and "(l00_double)" in shm.note


def test_fork_bomb_and_disk_filler_are_killed_with_a_note(graded):
    bomb = graded["results"]["forkbomb"]
    assert bomb.graded and bomb.score == 0
    assert "killed: process limit 64 in cell" in bomb.note and "(l00_double)" in bomb.note
    filler = graded["results"]["filler"]
    assert filler.graded and filler.score == 0
    assert "killed: disk limit 0.25 GiB (its folder and home) in cell" in filler.note and "(l00_double)" in filler.note
    assert graded["results"]["alice"].score == 3  # graded beside them, untouched


def test_a_file_larger_than_the_disk_bound_cannot_be_written(tmp_path):
    import subprocess
    import sys

    write = "open('big', 'wb').write(b'x' * (3 << 20))"
    cmd = sandbox.bwrap_command([sys.executable, "-c", write], str(tmp_path), [str(tmp_path)], {"PATH": "/usr/bin"},
                                1 << 30, file_bytes=1 << 20)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "File too large" in done.stderr
    assert (tmp_path / "big").stat().st_size <= 1 << 20


def test_time_limits_per_cell_and_per_submission(graded):
    forever = graded["results"]["forever"]
    assert forever.graded and forever.score == 0
    assert "killed: time limit 10 s per cell in cell" in forever.note and "(l00_double)" in forever.note
    slow = graded["results"]["slow"]
    assert slow.graded and slow.score == 3  # its graded cells ran before the budget ran out
    assert "killed: time limit 40 s per submission" in slow.note


def test_kernel_exit_keeps_the_cells_before_it(graded):
    exiter = graded["results"]["exiter"]
    assert exiter.graded and exiter.cells["l00_double_tests"][0] == 1 and exiter.cells["l00_square_tests"][0] == 0
    assert "the kernel exited (code 3" in exiter.note and "(l00_square)" in exiter.note
    sysexit = graded["results"]["sysexit"]  # SystemExit is an ordinary error in a kernel: that cell fails
    assert sysexit.graded and sysexit.score == 2 and sysexit.note == ""


def test_accidents_get_an_actionable_note_and_are_graded_when_possible(graded):
    r = graded["results"]
    assert r["dupe"].score == 3 and "l00_double_tests appears 2 times" in r["dupe"].note
    assert r["stripped"].score == 3 and "matched back" in r["stripped"].note
    assert r["stripped_noid"].score == 3 and "matched back" in r["stripped_noid"].note
    assert r["hopeless"].score == 0 and course.preflight.MISSING in r["hopeless"].note
    assert not r["badjson"].graded and "not a valid notebook: JSON error at line" in r["badjson"].note
    assert not r["wronglesson"].graded
    assert "this is Lesson 01's notebook (01_other), not 00_demo" in r["wronglesson"].note
    assert not r["zipslip"].graded and "points outside the archive" in r["zipslip"].note
    assert not list(graded["subs"].parent.rglob("zipslip_escaped.txt"))


def test_huge_output_is_cut(graded):
    path = graded["root"] / "grader" / "autograded" / "flood" / LESSON / f"{LESSON}.ipynb"
    assert path.stat().st_size < 3 << 20 and "output cut by the grader" in path.read_text()


def test_feedback_never_shows_hidden_tests(graded):
    root = graded["root"]
    assert "random.sample" in _outputs(graded, "history")  # the kernel's history holds the hidden tests ...
    html = _feedback(graded, "history")
    assert "random.sample" not in html and "hidden by the grader" in html  # ... the feedback does not
    assert leaks.scan(root / "grader" / "feedback", leaks.secret_lines(root)) == []


def test_no_bwrap_refuses_to_grade_unless_no_sandbox(graded, monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)
    with pytest.raises(sandbox.SandboxError, match="apt-get install bubblewrap"):
        course.autograde(graded["subs"], LESSON, root=graded["root"], limits=LIMITS)
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(graded["subs"] / "alice.ipynb", one / "alice_unsandboxed.ipynb")
    results = course.autograde(one, LESSON, root=graded["root"], limits=LIMITS.with_(sandbox=False))
    assert [(r.student, r.score) for r in results] == [("alice_unsandboxed", 3)]


def _subset(graded, tmp_path, students):
    folder = tmp_path / "subset"
    folder.mkdir()
    for student in students:
        shutil.copy(graded["subs"] / f"{student}.ipynb", folder / f"{student}.ipynb")
    return folder


def test_one_worker_grades_like_two(graded, tmp_path):
    students = ["alice", "exiter", "dupe", "stripped_noid"]
    again = course.autograde(_subset(graded, tmp_path, students), LESSON, root=graded["root"], limits=LIMITS, workers=1)
    for r in again:
        first = graded["results"][r.student]
        assert (r.score, r.cells, r.note) == (first.score, first.cells, first.note), r.student


def test_dask_local_cluster_grades_the_same(graded, tmp_path):
    distributed = pytest.importorskip("distributed")
    students = ["alice", "exiter"]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        again = course.autograde(_subset(graded, tmp_path, students), LESSON, root=graded["root"], limits=LIMITS,
                                 scheduler=cluster)
    for r in again:
        first = graded["results"][r.student]
        assert (r.score, r.cells, r.note) == (first.score, first.cells, first.note), r.student


def test_the_job_is_self_contained_bytes(graded):
    shared = course.template(LESSON, graded["root"])
    job = workers.Job(LESSON, "x", shared.files, shared.gradebook,
                      nbformat.writes(_submission(graded["released"])).encode(), LIMITS)
    import pickle

    assert pickle.loads(pickle.dumps(job)) == job


def test_watchdog_charges_held_memory_not_mapped_library_files(tmp_path):
    """Anonymous memory counts; the pages of a file read through mmap (as libraries are) do not."""
    import subprocess
    import sys

    blob = tmp_path / "blob"
    blob.write_bytes(b"\1" * (256 << 20))
    touch = ("import mmap, sys\n"
             "f = open(sys.argv[1], 'rb'); m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)\n"
             "s = sum(m[i] for i in range(0, len(m), 4096))\n"
             "a = bytearray(128 << 20); a[::4096] = b'x' * len(a[::4096])\n"
             "print('ready', flush=True); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", touch, str(blob)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        import psutil
        rss, held = psutil.Process(proc.pid).memory_info().rss, sandbox.tree_memory(proc.pid)
        assert rss > (384 << 20)  # the file's pages are resident ...
        assert (128 << 20) < held < (256 << 20)  # ... but only the bytearray is held
    finally:
        proc.kill()
        proc.wait()
    assert sandbox.tree_memory(proc.pid) == 0
