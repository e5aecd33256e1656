"""utils.env: the three run modes (smoke, full on a CPU, full on an accelerator) and what pick returns."""
import torch

from utils.env import Setup, setup


def test_pick_by_mode():
    smoke = Setup(smoke=True, seed=0, device=torch.device("cpu"))
    cpu = Setup(smoke=False, seed=0, device=torch.device("cpu"))
    gpu = Setup(smoke=False, seed=0, device=torch.device("cuda"))
    assert [s.mode for s in (smoke, cpu, gpu)] == ["smoke", "cpu", "full"]
    assert [s.pick(full=10, smoke=1, cpu=3) for s in (smoke, cpu, gpu)] == [1, 3, 10]
    assert [s.pick(full=10, smoke=1) for s in (smoke, cpu, gpu)] == [1, 10, 10], "no cpu value: full on a CPU"
    assert cpu.pick(full=10, smoke=1, cpu=None) is None, "None is a value, not 'missing'"
    assert "CPU scale" in str(cpu) and "smoke" in str(smoke)


def test_environment_forces_smoke(monkeypatch):
    monkeypatch.setenv("COURSE_SMOKE", "1")
    assert setup(smoke=False, verbose=False).mode == "smoke"
