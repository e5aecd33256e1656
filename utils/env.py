"""Run-time setup shared by every notebook: smoke/full switch, device, seeds.

Each lesson has a papermill ``parameters`` cell of plain literals followed by::

    cfg = utils.setup(smoke=SMOKE, seed=SEED, device=DEVICE)

The environment wins over the notebook's literals, because the autograder's
kernels cannot receive papermill parameters: ``COURSE_SMOKE=1`` forces smoke
mode and ``COURSE_DEVICE=cpu`` forces a device.
"""
from __future__ import annotations

import os
import random
import warnings
from dataclasses import dataclass

import numpy as np
import torch

TRUTHY = {"1", "true", "yes", "on"}
_UNSET = object()


@dataclass(frozen=True)
class Setup:
    """What a notebook runs with, after environment overrides."""

    smoke: bool
    seed: int
    device: torch.device

    @property
    def mode(self) -> str:
        """``"smoke"``, ``"cpu"`` (full mode without an accelerator) or ``"full"`` (full mode on a GPU/MPS)."""
        if self.smoke:
            return "smoke"
        return "cpu" if self.device.type == "cpu" else "full"

    def pick(self, full, smoke, cpu=_UNSET):
        """The value for this run's mode: ``smoke`` in smoke mode; in full mode ``cpu`` when running on a CPU
        (a scale that finishes within 15 minutes on 2 cores) if one is given, else ``full``."""
        if self.mode == "cpu" and cpu is not _UNSET:
            return cpu
        return smoke if self.smoke else full

    def __str__(self) -> str:
        mode = {"smoke": "smoke (fast check)", "cpu": "full, CPU scale", "full": "full"}[self.mode]
        return f"mode: {mode} | device: {self.device} | seed: {self.seed}"


def env_flag(name: str) -> bool:
    """True when the environment variable ``name`` is set to 1/true/yes/on."""
    return os.environ.get(name, "").strip().lower() in TRUTHY


def is_smoke(smoke: bool = False) -> bool:
    """Smoke mode if asked for here or through ``COURSE_SMOKE=1``."""
    return bool(smoke) or env_flag("COURSE_SMOKE")


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve ``"auto"`` to the best available accelerator: cuda, then mps, then cpu.

    ``COURSE_DEVICE`` overrides the argument, so CI can pin a device.
    """
    device = os.environ.get("COURSE_DEVICE") or device
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so smoke runs repeat exactly on CPU."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def quiet_warnings() -> None:
    """Silence library warnings: nbgrader scores a test cell 0 if it writes to stderr."""
    warnings.filterwarnings("ignore")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")


def setup(smoke: bool = False, seed: int = 0, device: str = "auto", verbose: bool = True) -> Setup:
    """Resolve a notebook's parameters; seed everything; return the run's :class:`Setup`."""
    quiet_warnings()
    cfg = Setup(smoke=is_smoke(smoke), seed=int(seed), device=pick_device(device))
    seed_everything(cfg.seed)
    if cfg.device.type == "cpu":
        torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    if verbose:
        print(cfg)
    return cfg
