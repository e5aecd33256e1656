"""The slow notebook checks: every solution runs in smoke mode, and the grader's self-check passes."""
import pytest

from grader import config, execute, selfcheck

LESSONS = config.lessons()
SMOKE_BUDGET_S = 90  # the design card's 60 s, plus slack for a loaded CI machine


@pytest.mark.notebooks
@pytest.mark.parametrize("lesson", LESSONS)
def test_solution_runs_in_smoke_mode(lesson, tmp_path):
    run = execute.execute_lesson(lesson, smoke=True, out=tmp_path)
    assert run.status == "ok", f"{lesson}: {run.status} (executed copy: {tmp_path / lesson}.ipynb)"
    assert run.seconds < SMOKE_BUDGET_S, f"{lesson} took {run.seconds:.0f}s in smoke mode"


@pytest.mark.notebooks
@pytest.mark.parametrize("lesson", LESSONS)
def test_selfcheck(lesson):
    check = selfcheck.check_lesson(lesson)
    assert check.ok, "\n".join(check.problems)
