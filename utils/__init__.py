"""Shared code of the course *CNN case studies and transfer learning*.

Notebooks import from here and never copy code between each other. Submodules:

- ``utils.env``: smoke/full switch, device choice, seeding (``utils.setup``)
- ``utils.checks``: visible exercise checks with expected/got/hint messages
- ``utils.arithmetic``: conv-layer arithmetic, receptive fields, per-layer summaries
- ``utils.data``: datasets, offline cache, downloads, decoded-tensor datasets
- ``utils.backbones``: pretrained backbones with a timm-like API, freezing helpers
- ``utils.inference``: batching any data form, device and precision, ``evaluate`` and ``predict``
- ``utils.train``: a small ``fit`` loop, learning-rate schedules, ``fit_head`` for linear heads
- ``utils.features``: frozen-backbone features, extracted once and cached on disk
- ``utils.viz``: training curves, confusion matrices, image grids, top losses

Imports between them run one way (``tests/test_train.py`` checks that they form no cycle):
``train`` imports ``inference``, ``features`` and ``viz``; ``features`` imports ``inference`` and
``data``; ``viz`` imports ``inference``; ``inference`` imports ``env``; ``data`` imports
``download`` and ``env``.
"""
import os

# On a busy 2-core machine OpenMP threads that spin while waiting slow torch down 10x; yield instead.
# Must be set before torch loads its OpenMP runtime, hence here, on the first `import utils`.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .env import Setup, pick_device, seed_everything, setup  # noqa: E402

__all__ = ["Setup", "pick_device", "seed_everything", "setup"]
