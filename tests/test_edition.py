"""The student edition: what it holds, that it leaks nothing, the Lab it opens, `make check`, TORCH=cpu."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

from demo_course import LESSON, build_demo
from grader import config, course, edition, leaks, notebooks

REPO = config.REPO
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def ed(tmp_path_factory):
    return edition.build(tmp_path_factory.mktemp("edition") / "course")


@pytest.fixture(scope="module")
def secrets():
    return leaks.secret_lines()


def test_edition_holds_the_lessons_utils_and_student_files_only(ed):
    assert sorted(p.name for p in (ed / "lessons").iterdir()) == config.lessons()
    assert (ed / "utils" / "checks.py").is_file() and not list(ed.rglob("__pycache__"))
    for name in edition.FORBIDDEN:
        assert not (ed / name).exists(), name
    assert not list(ed.rglob("test_*.py")) and not list(ed.rglob("cheats"))
    requirements = (ed / "requirements.txt").read_text()
    assert "nbgrader==" in requirements and "jupyterlab" in requirements and "-e ." in requirements
    assert not {"papermill", "pytest", "dask"} & set(re.findall(r"^([a-z0-9_-]+)", requirements, re.M))
    assert 'packages = ["utils"]' in (ed / "pyproject.toml").read_text()
    assert edition.problems(ed) == []


def test_student_readme_gives_the_two_commands_and_working_lesson_links(ed):
    text = (ed / "README.md").read_text()
    assert "make lab " in text and "make check LESSON=01" in text and "TORCH=cpu" in text
    links = re.findall(r"\]\((lessons/[^)]+)\)", text)
    assert len(links) == len(config.lessons())
    assert all((ed / link).is_dir() for link in links)
    assert "solutions/" not in text and "python -m grader" not in text


def test_secrets_cover_solutions_hidden_tests_and_written_answers(secrets):
    where = set(secrets.values())
    assert any(w.endswith("_tests") for w in where), "hidden tests"
    assert any(w.startswith("01_") and not w.endswith("_tests") for w in where), "solutions"
    assert all(len(line) >= leaks.MIN_CHARS for line in secrets)
    assert not set(secrets) & leaks.public_lines()


def test_leak_check_names_file_and_line_of_planted_answers(ed, secrets, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(ed, copy)
    solution = next(s for s, w in secrets.items() if w.startswith("01_") and not w.endswith("_tests"))
    hidden = next(s for s, w in secrets.items() if w.endswith("_tests"))
    with (copy / "utils" / "env.py").open("a") as f:
        f.write(f"\n# {solution}\n")
    nb_path = copy / "lessons" / config.lessons()[1] / f"{config.lessons()[1]}.ipynb"
    nb = notebooks.read(nb_path)
    nb.cells[-1].source += f"\n    {hidden}"
    nb.cells.append(nbformat.v4.new_markdown_cell("### BEGIN HIDDEN TESTS"))
    nb_path.write_text(notebooks.dumps(nb))
    found = edition.problems(copy)
    assert any("utils/env.py:" in p and f"line of {secrets[solution]}" in p for p in found), found
    assert any(nb_path.name in p and f"line of {secrets[hidden]}" in p for p in found), found
    assert any("marker 'BEGIN HIDDEN TESTS'" in p for p in found), found
    with pytest.raises(RuntimeError, match="not fit to hand out"):
        edition.check(copy)


def test_solutions_folder_itself_is_a_leak(secrets):
    found = leaks.scan(REPO / config.SOURCE / config.lessons()[0], secrets)
    assert len(found) > 10


def test_refuses_to_overwrite_a_folder_that_is_not_an_edition(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        edition.build(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}?token=t", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, ""


@pytest.fixture(scope="module")
def lab(ed):
    """A headless JupyterLab started as `make lab` starts it: from the edition, with its config dir."""
    port = _free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(ed / "jupyter_config")}
    proc = subprocess.Popen([str(VENV_BIN / "jupyter"), "lab", "--no-browser", "--allow-root", f"--port={port}",
                             "--ServerApp.token=t", "--ServerApp.root_dir=lessons"],
                            cwd=ed, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                if _get(port, "/api/status")[0] == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not start within 60 s")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_lab_disables_instructor_tools_and_keeps_validate(lab):
    status, page = _get(lab, "/lab")
    config_data = json.loads(re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', page, re.S).group(1))
    assert set(config_data["disabledExtensions"]) >= set(edition.DISABLED_LAB_PLUGINS)
    assert not {"@jupyter/nbgrader:assignment-list", "@jupyter/nbgrader:validate-assignment"} & set(
        config_data["disabledExtensions"])
    assert _get(lab, "/formgrader")[0] == 404 and _get(lab, "/formgraders")[0] == 404
    assert _get(lab, "/assignments/validate")[0] == 405  # the Validate button's handler (POST only)
    assert _get(lab, "/courses")[0] == 200  # the Assignment List's handler


def test_lab_never_asks_about_news(lab):
    status, body = _get(lab, "/lab/api/settings/@jupyterlab/apputils-extension:notification")
    assert status == 200 and json.loads(body)["settings"]["fetchNews"] == "false"
    page = _get(lab, "/lab")[1]
    assert json.loads(re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', page, re.S).group(1))["news"] == {
        "disabled": True}


@pytest.fixture(scope="module")
def demo_edition(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    build_demo(root)
    course.release(root=root)
    for name in ("torch.mk", "requirements.txt"):
        shutil.copyfile(REPO / name, root / name)
    shutil.copytree(REPO / "utils", root / "utils", ignore=shutil.ignore_patterns("__pycache__"))
    return edition.build(root / "edition", root)


def _make(folder: Path, *args: str) -> subprocess.CompletedProcess:
    venv = VENV_BIN.parent
    return subprocess.run(["make", "-s", "-C", str(folder), "-o", f"{venv}/.installed", f"VENV={venv}", *args],
                          capture_output=True, text=True, timeout=600)


def _solve(path: Path) -> None:
    nb = notebooks.read(path)
    answers = {"l00_double": "def double(n):\n    return n + n", "l00_square": "def square(n):\n    return n ** 2",
               "l00_why": "Each doubling multiplies by two."}
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        cell.source = answers.get(grade_id, cell.source)
    path.write_text(notebooks.dumps(nb))


@pytest.mark.notebooks
def test_make_check_reports_failing_visible_checks_then_success(demo_edition):
    untouched = _make(demo_edition, "check", f"LESSON={LESSON[:2]}")
    assert untouched.returncode != 0, untouched.stdout + untouched.stderr
    assert "VALIDATION FAILED ON 3 CELL(S)" in untouched.stdout and "checks that fail in:" in untouched.stdout
    _solve(demo_edition / "lessons" / LESSON / f"{LESSON}.ipynb")
    solved = _make(demo_edition, "check", f"LESSON={LESSON[:2]}")
    assert solved.returncode == 0 and "Success!" in solved.stdout, solved.stdout + solved.stderr


def test_make_check_names_an_unknown_lesson(demo_edition):
    result = _make(demo_edition, "check", "LESSON=99")
    assert result.returncode != 0 and "no lesson matches LESSON=99" in result.stdout


def test_make_lab_opens_the_lessons_with_the_editions_jupyter_config(ed, tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    fake = venv / "bin" / "jupyter"
    fake.write_text('#!/bin/sh\necho "config=$JUPYTER_CONFIG_DIR args=$*"\n')
    fake.chmod(0o755)
    (venv / ".installed").touch()
    result = subprocess.run(["make", "-s", "-C", str(ed), f"VENV={venv}", "lab"], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.strip() == f"config={ed / 'jupyter_config'} args=lab lessons/", result.stdout + result.stderr


def _dry_setup(folder: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-n", "-C", str(folder), "setup", f"VENV={tmp_path / 'venv'}", *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("where", ["repository", "edition"])
def test_torch_cpu_installs_the_pinned_cpu_wheels_first(where, ed, tmp_path):
    folder = REPO if where == "repository" else ed
    pins = re.findall(r"^(torch==\S+|torchvision==\S+)", (REPO / "requirements.txt").read_text(), re.M)
    assert len(pins) == 2
    lines = _dry_setup(folder, tmp_path, "TORCH=cpu").stdout.splitlines()
    cpu = [i for i, line in enumerate(lines) if "--index-url https://download.pytorch.org/whl/cpu" in line]
    rest = [i for i, line in enumerate(lines) if "-r requirements.txt" in line]
    assert len(cpu) == 1 and all(pin in lines[cpu[0]] for pin in pins) and cpu[0] < rest[0], lines
    default = _dry_setup(folder, tmp_path).stdout
    assert "download.pytorch.org" not in default and "-r requirements.txt" in default


def test_torch_auto_follows_nvidia_smi_and_bad_values_are_refused(tmp_path):
    assert "whl/cpu" in _dry_setup(REPO, tmp_path, "TORCH=auto", "NVIDIA_SMI=").stdout
    assert "whl/cpu" not in _dry_setup(REPO, tmp_path, "TORCH=auto", "NVIDIA_SMI=/usr/bin/nvidia-smi").stdout
    bad = _dry_setup(REPO, tmp_path, "TORCH=gpu")
    assert bad.returncode != 0 and "TORCH=gpu is not a choice" in bad.stderr
