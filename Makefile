# Two commands on a fresh machine:  `make lab` (students)  and  `make test` (everything CI checks).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
export OMP_WAIT_POLICY ?= PASSIVE

# Offline data for development and CI: ../shared/data when it exists (see README, "Data").
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)),)
export COURSE_DATA_DIR ?= $(SHARED_DATA)
endif

include torch.mk                     # TORCH=cpu: PyTorch's CPU-only wheels (see the file)

.PHONY: setup lab test test-fast release selfcheck execute execute-full bench normalize data clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(TORCH_INSTALL)
	$(PY) -m pip install -r requirements.txt
	touch $@

setup: $(VENV)/.installed            ## create .venv with everything (TORCH=cpu: CPU-only PyTorch)

lab: setup                           ## open the course in JupyterLab
	$(VENV)/bin/jupyter lab lessons/

test: setup                          ## the whole test suite: utils, grader, notebooks (smoke), self-check
	$(PY) -m pytest

test-fast: setup                     ## everything except executing notebooks
	$(PY) -m pytest -m "not notebooks"

release: setup                       ## regenerate lessons/ from solutions/
	$(PY) -m grader release

selfcheck: setup                     ## solutions score full marks, untouched lessons score 0
	$(PY) -m grader selfcheck

execute: setup                       ## run every solution notebook (full mode on a GPU, smoke mode otherwise)
	$(PY) -m grader execute

execute-full: setup                  ## run every solution notebook in full mode
	$(PY) -m grader execute --full

bench: setup                         ## the speed benchmarks (tables; last line `speedup: N.Nx`)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

data: setup                          ## download every dataset into the cache, for a classroom
	$(PY) -m utils.data --all

normalize: setup                     ## strip outputs and volatile metadata from notebooks
	$(PY) -m grader normalize

clean:
	rm -rf build grader/submitted grader/autograded grader/feedback grader/gradebook.db
