"""Test-wide settings: offline data from ../shared/data, a repo-local cache, headless plots, quiet kernels."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("PYTHONWARNINGS", "ignore")
if SHARED_DATA.is_dir():
    os.environ.setdefault("COURSE_DATA_DIR", str(SHARED_DATA))
os.environ.setdefault("COURSE_CACHE_DIR", str(REPO / "build" / "cache"))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
