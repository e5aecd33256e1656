"""Running a model over data without training it: the layer under :mod:`utils.train` and :mod:`utils.features`.

- data forms: a pair of tensors ``(x, y)``, any map-style ``Dataset`` yielding ``(x, y)``, or a
  ``DataLoader``. Tensor-backed data (a pair, a ``TensorDataset``, an object with tensor
  ``.images`` and ``.labels`` and no per-sample ``transform``, or a ``Subset`` of those) skips the
  ``DataLoader`` and is batched by indexing; on CUDA it is copied to the GPU once when it fits;
- device, mixed precision (autocast) and channels-last choices;
- :func:`evaluate` (mean loss, top-1 accuracy) and :func:`predict` (logits and labels), in eval
  mode without autograd, restoring every module's train/eval mode afterwards.

Imports nothing from the course but :mod:`utils.env`; :mod:`utils.train`, :mod:`utils.features`
and :mod:`utils.viz` build on it.
"""
from __future__ import annotations

import itertools
import math
import sys
from contextlib import nullcontext
from typing import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from .env import pick_device

__all__ = ["evaluate", "predict"]

DEVICE_RESIDENT_FRACTION = 0.25  # copy tensor data to the GPU when it needs at most this share of free memory


# --------------------------------------------------------------------------------------------
# Batching: tensors indexed directly (fast path), or a DataLoader
# --------------------------------------------------------------------------------------------
def _tensor_pair(data):
    """``(x, y)`` tensors behind ``data`` when it is tensor-backed, else ``None``."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        return torch.as_tensor(x), torch.as_tensor(y)
    if isinstance(data, TensorDataset) and len(data.tensors) == 2:
        return data.tensors
    images, labels = getattr(data, "images", None), getattr(data, "labels", None)
    if isinstance(images, torch.Tensor) and getattr(data, "transform", None) is None:
        labels = torch.as_tensor(labels) if labels is not None else None
        if labels is not None and len(labels) == len(images):
            return images, labels
    if isinstance(data, Subset):
        pair = _tensor_pair(data.dataset)
        if pair is not None:
            indices = torch.as_tensor(list(data.indices), dtype=torch.long)
            return pair[0][indices], pair[1][indices]
    return None


def _fits_on_device(tensors: Sequence[torch.Tensor], device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    free_bytes, _ = torch.cuda.mem_get_info(device)
    return sum(t.numel() * t.element_size() for t in tensors) <= DEVICE_RESIDENT_FRACTION * free_bytes


class _TensorBatches:
    """Mini-batches by indexing two tensors; one fresh permutation per epoch from ``seed + epoch``."""

    def __init__(self, x, y, batch_size, shuffle, drop_last, seed, device):
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        if _fits_on_device((x, y), device):
            x, y = x.to(device), y.to(device)
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.seed = int(batch_size), shuffle, seed
        # drop a ragged last batch when training (a batch of 1 breaks BatchNorm), unless it is the only one
        self.drop_last = drop_last and len(x) >= self.batch_size

    @property
    def num_samples(self) -> int:
        return len(self.x)

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def epoch(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        if self.shuffle:
            generator = torch.Generator().manual_seed(int(self.seed or 0) * 100_003 + epoch)
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        order = order.to(self.x.device)
        for i in range(len(self)):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield self.x[index], self.y[index]

    def image(self, i: int) -> torch.Tensor:
        return self.x[i].cpu()


class _LoaderBatches:
    """Mini-batches from a DataLoader (given, or built around a Dataset)."""

    def __init__(self, loader: DataLoader):
        self.loader = loader

    @property
    def num_samples(self) -> int:
        return len(self.loader.dataset)

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, epoch: int = 0):
        for batch in self.loader:
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise TypeError("each batch must be a pair (x, y); got " + type(batch).__name__)
            yield batch[0], batch[1]

    def image(self, i: int) -> torch.Tensor:
        return torch.as_tensor(self.loader.dataset[i][0])


def _batches(data, batch_size, device, *, shuffle=False, drop_last=False, seed=0, num_workers=0):
    """Wrap any accepted data form into an object with ``len()`` and ``.epoch(i)``."""
    if data is None or isinstance(data, (_TensorBatches, _LoaderBatches)):
        return data
    if isinstance(data, DataLoader):
        return _LoaderBatches(data)
    pair = _tensor_pair(data)
    if pair is not None:
        return _TensorBatches(*pair, batch_size, shuffle, drop_last, seed, device)
    if isinstance(data, Dataset) or hasattr(data, "__getitem__"):
        generator = torch.Generator().manual_seed(int(seed or 0))
        loader = DataLoader(data, batch_size=batch_size, shuffle=shuffle,
                            drop_last=drop_last and len(data) >= batch_size, num_workers=num_workers,
                            generator=generator, pin_memory=device.type == "cuda")
        return _LoaderBatches(loader)
    raise TypeError(f"cannot batch {type(data).__name__}: pass (x, y) tensors, a Dataset or a DataLoader")


def _to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    return batch.to(device, non_blocking=True) if batch.device != device else batch


def _prepare_input(x, device, batch_transform, channels_last):
    x = _to_device(x, device)
    if batch_transform is not None:
        x = batch_transform(x)
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


# --------------------------------------------------------------------------------------------
# Device, precision
# --------------------------------------------------------------------------------------------
def _resolve_device(device) -> torch.device:
    return pick_device("auto" if device is None else device)


def _amp_dtype(amp, device: torch.device):
    """Autocast dtype or None. ``None`` means: on for CUDA (bf16 where supported, else fp16)."""
    if amp is None:
        amp = device.type == "cuda"
    if amp is False:
        return None
    if amp in ("bf16", "bfloat16", torch.bfloat16):
        return torch.bfloat16
    if amp in ("fp16", "float16", torch.float16):
        return torch.float16
    if amp is not True:
        raise ValueError(f"amp must be None, True, False, 'bf16' or 'fp16'; got {amp!r}")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def _autocast(device: torch.device, dtype):
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _use_channels_last(channels_last, device: torch.device) -> bool:
    return device.type == "cuda" if channels_last is None else bool(channels_last)


# --------------------------------------------------------------------------------------------
# Losses, metrics, module modes, progress
# --------------------------------------------------------------------------------------------
def _main_output(output):
    """Logits of a model that returns extras (GoogLeNet's auxiliary heads in train mode)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def _as_float32(output):
    """Autocast outputs (bf16/fp16) as float32, so evaluation losses and saved logits stay precise."""
    if isinstance(output, torch.Tensor):
        return output.float() if output.is_floating_point() else output
    if isinstance(output, (tuple, list)):
        items = [_as_float32(item) for item in output]
        return type(output)(*items) if hasattr(output, "_fields") else type(output)(items)  # namedtuples too
    return output


def _default_loss(output, target):
    return nn.functional.cross_entropy(_main_output(output), target)


def _count_correct(output, target):
    """Number of correct top-1 predictions, as a 0-d tensor, or None when not classification."""
    logits = _main_output(output)
    if logits.ndim != 2 or target.ndim != 1 or target.is_floating_point():
        return None
    return (logits.argmax(dim=1) == target).sum()


def _module_modes(model: nn.Module) -> dict:
    return {module: module.training for module in model.modules()}


def _restore_modes(modes: dict) -> None:
    for module, training in modes.items():
        module.training = training


def _progress(iterable, enabled: bool, **kwargs):
    """tqdm.auto (widgets in notebooks); text bars go to stdout, since stderr fails nbgrader cells."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    from tqdm.notebook import tqdm as widget_tqdm

    if not issubclass(tqdm, widget_tqdm):
        kwargs.setdefault("file", sys.stdout)
    return tqdm(iterable, **kwargs)


# --------------------------------------------------------------------------------------------
# evaluate / predict
# --------------------------------------------------------------------------------------------
def _inference_batches(model, batches, batch_transform, device, amp_dtype, channels_last, max_steps):
    """Yield ``(output, y)`` per batch in eval mode without autograd; restores module modes after."""
    modes = _module_modes(model)
    model.eval()
    try:
        with torch.inference_mode():
            for x, y in itertools.islice(batches.epoch(0), max_steps):
                x = _prepare_input(x, device, batch_transform, channels_last)
                with _autocast(device, amp_dtype):
                    output = model(x)
                yield _as_float32(output), _to_device(y, device)
    finally:
        _restore_modes(modes)


def _evaluate_batches(model, batches, batch_transform, loss_fn, device, amp_dtype, channels_last, max_steps) -> dict:
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n_seen, is_classification = 0, True
    for output, y in _inference_batches(model, batches, batch_transform, device, amp_dtype, channels_last, max_steps):
        loss_sum += loss_fn(output, y).float() * len(y)
        hits = _count_correct(output, y)
        if hits is None:
            is_classification = False
        else:
            correct += hits
        n_seen += len(y)
    if n_seen == 0:
        return {"loss": None, "acc": None, "n": 0}
    acc = correct.item() / n_seen if is_classification else None
    return {"loss": loss_sum.item() / n_seen, "acc": acc, "n": n_seen}


def _prepare_model(model, device, channels_last):
    device = _resolve_device(device)
    channels_last = _use_channels_last(channels_last, device)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return device, channels_last


def evaluate(model: nn.Module, data, batch_transform: Callable | None = None, device=None, batch_size: int = 256, *,
             loss_fn: Callable | None = None, amp=None, channels_last: bool | None = None,
             max_steps: int | None = None, num_workers: int = 0) -> dict:
    """Mean loss and top-1 accuracy of ``model`` on ``data``, in eval mode without gradients.

    Returns ``{"loss": float, "acc": float in [0, 1] or None, "n": number of samples}``. The
    model is moved to ``device`` (default: auto) and its train/eval modes are restored afterwards.
    """
    device, channels_last = _prepare_model(model, device, channels_last)
    batches = _batches(data, batch_size, device, num_workers=num_workers)
    return _evaluate_batches(model, batches, batch_transform, loss_fn or _default_loss, device,
                             _amp_dtype(amp, device), channels_last, max_steps)


def predict(model: nn.Module, data, batch_transform: Callable | None = None, device=None, batch_size: int = 256, *,
            amp=None, channels_last: bool | None = None, max_steps: int | None = None,
            num_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, labels)`` for every sample of ``data``, in order, as float32 and long CPU tensors."""
    device, channels_last = _prepare_model(model, device, channels_last)
    batches = _batches(data, batch_size, device, num_workers=num_workers)
    logits, labels = [], []
    for output, y in _inference_batches(model, batches, batch_transform, device, _amp_dtype(amp, device),
                                        channels_last, max_steps):
        logits.append(_main_output(output).float().cpu())
        labels.append(y.cpu())
    if not logits:
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    return torch.cat(logits), torch.cat(labels)
