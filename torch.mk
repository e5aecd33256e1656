# Which PyTorch wheels `make setup` installs; included by the Makefile.
#   make lab               PyPI's wheels: on Linux the CUDA build with its NVIDIA libraries (about 6 GB of .venv)
#   make lab TORCH=cpu     PyTorch's CPU-only wheels from its own index, TORCH_CPU_INDEX (no NVIDIA libraries)
#   make lab TORCH=auto    the CPU-only wheels where `nvidia-smi` is not found, PyPI's where it is
# The choice is made when .venv is created: to switch, remove .venv first (`rm -rf .venv`).
TORCH ?= pypi
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
NVIDIA_SMI ?= $(shell command -v nvidia-smi 2>/dev/null)
ifeq ($(filter $(TORCH),pypi cpu auto),)
$(error TORCH=$(TORCH) is not a choice: use TORCH=pypi (the default), TORCH=cpu or TORCH=auto)
endif
TORCH_WHEELS := $(if $(filter auto,$(TORCH)),$(if $(NVIDIA_SMI),pypi,cpu),$(TORCH))
# torch and torchvision as pinned in requirements.txt; installed first from the CPU index, pip then finds
# them satisfied (2.x.y+cpu meets ==2.x.y) when it installs the rest from PyPI.
TORCH_PINS := $(shell awk '/^(torch|torchvision)==/ {print $$1}' requirements.txt)
ifeq ($(TORCH_WHEELS),cpu)
TORCH_INSTALL = $(PY) -m pip install --index-url $(TORCH_CPU_INDEX) $(TORCH_PINS)
else
TORCH_INSTALL = @echo "PyTorch from PyPI (on a machine without an NVIDIA GPU, TORCH=cpu installs the CPU-only wheels)"
endif
