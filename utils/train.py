"""A small training loop in fastai's one-call spirit, plus frozen-feature caching.

Every lesson that trains goes through :func:`fit`::

    history = fit(model, (x_train, y_train), (x_val, y_val), epochs=5, lr=3e-3,
                  batch_transform=transform)       # uint8 -> normalised float, on the device
    history                                         # a table: one row per epoch

Data may be a pair of tensors ``(x, y)``, any map-style ``Dataset`` yielding ``(x, y)``, or a
``DataLoader``. Tensor-backed data (a pair, a ``TensorDataset``, an object with tensor
``.images`` and ``.labels`` and no per-sample ``transform``, or a ``Subset`` of those) skips the
``DataLoader`` and is batched by indexing; on CUDA it is copied to the GPU once when it fits.
Keeping images as uint8 until ``batch_transform`` runs on the device is what makes that cheap.

Feature extraction (lesson 08) runs a frozen backbone once with :func:`extract_features`,
caches the result on disk, and trains a linear head on it with :func:`fit_head` in seconds.
"""
from __future__ import annotations

import hashlib
import itertools
import math
import os
import re
import sys
import tempfile
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from .env import pick_device, seed_everything

__all__ = [
    "History",
    "evaluate",
    "extract_features",
    "feature_cache_path",
    "fit",
    "fit_head",
    "make_scheduler",
    "predict",
]

SCHEDULES = ("onecycle", "cosine", "constant")
DEFAULT_WEIGHT_DECAY = {"adamw": 1e-2, "sgd": 5e-4}  # AdamW's PyTorch default; AlexNet/VGG's SGD value
ONECYCLE_DEFAULT_WARMUP = 0.25  # fraction of all steps spent rising when no warm-up is given (fastai's)
DEVICE_RESIDENT_FRACTION = 0.25  # copy tensor data to the GPU when it needs at most this share of free memory
EVAL_BATCH_MULTIPLIER = 2  # no activations kept for backward, so evaluation affords bigger batches
TIMING_KEYS = ("seconds", "images_per_second")
MIN_COLUMN_WIDTH = 9  # wide enough for 4-decimal losses, "100.00%" and "3.00e-04"


# --------------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------------
class History:
    """What :func:`fit` measured: one dict per epoch, printed as a table.

    Each epoch dict has ``epoch`` (1-based), ``train_loss``, ``train_acc``, ``val_loss``,
    ``val_acc`` (accuracies are fractions in [0, 1]; ``None`` when there is no validation data
    or the task is not classification), ``lr`` (the largest group learning rate, usually the
    head's, at the epoch's last step), ``seconds`` (wall time of the epoch, validation included) and
    ``images_per_second`` (training throughput). ``batch_losses`` and ``batch_lrs`` hold one
    value per optimizer step, for plotting warm-up and schedules.
    """

    COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_second")
    HEADERS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "time (s)", "images/s")

    def __init__(self, epochs: Sequence[dict] | None = None):
        self.epochs: list[dict] = [dict(row) for row in (epochs or [])]
        self.batch_losses: list[float] = []
        self.batch_lrs: list[float] = []
        self.best_epoch: int | None = None  # epoch whose weights fit's checkpoint kept
        self.restored_epoch: int | None = None  # set when fit(restore_best=True) reloaded weights

    # sequence protocol: history[-1], len(history), for row in history; history["val_acc"] -> list
    def __len__(self) -> int:
        return len(self.epochs)

    def __iter__(self):
        return iter(self.epochs)

    def __getitem__(self, index):
        if isinstance(index, str):
            return [row.get(index) for row in self.epochs]
        return self.epochs[index]

    def append(self, row: dict) -> None:
        self.epochs.append(dict(row))

    def last(self) -> dict:
        """The most recent epoch's dict."""
        if not self.epochs:
            raise IndexError("History is empty: no epoch has finished yet")
        return self.epochs[-1]

    def monitor(self) -> str:
        """The metric "best" refers to: ``val_acc`` if measured, else ``val_loss``, else ``train_loss``."""
        for metric in ("val_acc", "val_loss"):
            if any(row.get(metric) is not None for row in self.epochs):
                return metric
        return "train_loss"

    def best(self, metric: str | None = None) -> dict:
        """The epoch with the highest accuracy or the lowest loss on ``metric`` (default :meth:`monitor`).

        Ties go to the earliest epoch.
        """
        metric = metric or self.monitor()
        rows = [row for row in self.epochs if row.get(metric) is not None]
        if not rows:
            raise ValueError(f"no epoch recorded {metric!r}")
        sign = -1.0 if "loss" in metric or metric == "seconds" else 1.0
        return max(rows, key=lambda row: sign * row[metric])

    def without_timings(self) -> list[dict]:
        """Epoch dicts without wall-clock entries, for comparing two runs exactly."""
        return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in self.epochs]

    @staticmethod
    def _format(key: str, value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        if key == "epoch":
            return str(value)
        if key.endswith("_acc"):
            return f"{100 * value:.2f}%"
        if key == "lr":
            return f"{value:.2e}"
        if key == "seconds":
            return f"{value:.1f}"
        if key == "images_per_second":
            return f"{value:.0f}"
        return f"{value:.4f}"

    def as_table(self) -> str:
        """A fixed-width text table, one row per epoch (accuracies in percent)."""
        cells = [list(self.HEADERS)]
        cells += [[self._format(key, row.get(key)) for key in self.COLUMNS] for row in self.epochs]
        # a minimum width keeps rows printed one at a time during fit aligned with the header
        widths = [max(MIN_COLUMN_WIDTH, *(len(line[i]) for line in cells)) for i in range(len(self.COLUMNS))]
        widths[0] = max(len(line[0]) for line in cells)
        lines = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in cells]
        return "\n".join(lines)

    def plot(self, metrics=("loss", "acc"), **kwargs):
        """Training and validation curves, through :func:`utils.viz.plot_history`; returns the Figure."""
        from .viz import plot_history

        return plot_history(self, metrics=metrics, **kwargs)

    def __repr__(self) -> str:
        if not self.epochs:
            return "History(no epochs)"
        return self.as_table()


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
# Device, precision, optimizer, schedule
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


def _build_optimizer(model, optimizer, lr, weight_decay, momentum) -> torch.optim.Optimizer:
    """An optimizer over all parameters, frozen ones included, so that unfreezing mid-run just works.

    Frozen parameters get no gradient, and AdamW and SGD skip parameters without a gradient
    entirely (weight decay too), so they do not move while frozen.
    """
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if isinstance(optimizer, (list, tuple)):  # param groups: [{"params": ..., "lr": ...}, ...]
        params, name = list(optimizer), "adamw"
    elif isinstance(optimizer, str):
        params, name = list(model.parameters()), optimizer.lower()
    else:
        raise TypeError("optimizer must be 'adamw', 'sgd', a torch.optim.Optimizer or a list of param groups")
    if name not in DEFAULT_WEIGHT_DECAY:
        raise ValueError(f"unknown optimizer {optimizer!r}; use 'adamw' or 'sgd'")
    weight_decay = DEFAULT_WEIGHT_DECAY[name] if weight_decay is None else weight_decay
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _warmup_cosine(total_steps: int, warmup_steps: int, decay: bool) -> Callable[[int], float]:
    """LR multiplier at step ``s``: linear rise over ``warmup_steps``, then cosine to 0 (or flat)."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if not decay:
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, total_steps: int, warmup_steps: int = 0):
    """A per-batch LR scheduler; call ``.step()`` after every ``optimizer.step()``.

    - ``"cosine"``: linear warm-up over ``warmup_steps`` then cosine decay to 0 at ``total_steps``.
    - ``"constant"``: linear warm-up, then each group's own lr.
    - ``"onecycle"``: :class:`torch.optim.lr_scheduler.OneCycleLR` rising from peak/25 for
      ``warmup_steps`` (25% of the steps when 0), then cosine-annealing to peak/25e4; momentum
      is not cycled.

    Warm-up is linear and reaches the peak at step ``warmup_steps`` (counting from 0).

    Each parameter group's current ``lr`` is its peak, and every schedule multiplies all groups
    by the same factor, so groups with different learning rates keep their ratios.
    """
    total_steps, warmup_steps = max(1, int(total_steps)), max(0, int(warmup_steps))
    peaks = [group["lr"] for group in optimizer.param_groups]
    if schedule == "onecycle":
        # OneCycleLR divides by the length of each phase: keep both phases at least one step long
        steps = max(3, total_steps)
        peak_step = warmup_steps or round(ONECYCLE_DEFAULT_WARMUP * steps)
        peak_step = min(max(peak_step, 1), steps - 2)
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=peaks, total_steps=steps, pct_start=(peak_step + 1) / steps,
            anneal_strategy="cos", cycle_momentum=False)
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be one of {SCHEDULES}; got {schedule!r}")
    for group, peak in zip(optimizer.param_groups, peaks):
        group["initial_lr"] = peak  # LambdaLR scales from here; overwrite what an earlier scheduler left
    factor = _warmup_cosine(total_steps, warmup_steps, decay=schedule == "cosine")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _start_from_peak_lrs(optimizer: torch.optim.Optimizer) -> None:
    """Make each group's ``lr`` its peak again when an earlier ``fit`` left its schedule's last value.

    A second ``fit`` with the same optimizer then repeats the schedule, while an ``lr`` the user
    set by hand in between is kept as the new peak.
    """
    for group in optimizer.param_groups:
        if "fit_peak_lr" in group and group["lr"] == group.get("fit_last_lr"):
            group["lr"] = group["fit_peak_lr"]
        group["fit_peak_lr"] = group["lr"]


def _step_scheduler(scheduler) -> None:
    # an fp16 GradScaler skips steps with inf gradients; torch then warns about the order of calls,
    # and a warning on stderr fails an nbgrader test cell
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
        scheduler.step()
    for group in scheduler.optimizer.param_groups:  # lets the next fit tell its leftovers from hand-set lrs
        group["fit_last_lr"] = group["lr"]


# --------------------------------------------------------------------------------------------
# Losses and metrics
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


def _put_frozen_batchnorm_in_eval(model: nn.Module) -> None:
    """BatchNorm layers whose parameters are all frozen stop updating their running statistics."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()


def _module_modes(model: nn.Module) -> dict:
    return {module: module.training for module in model.modules()}


def _restore_modes(modes: dict) -> None:
    for module, training in modes.items():
        module.training = training


# --------------------------------------------------------------------------------------------
# Callbacks, checkpoints, progress
# --------------------------------------------------------------------------------------------
def _hooks(callbacks, name: str) -> list[Callable]:
    """Methods called ``name`` on callback objects; a plain function counts as ``on_epoch_end``."""
    if callbacks is None:
        return []
    if callable(callbacks) or not isinstance(callbacks, (list, tuple)):
        callbacks = [callbacks]
    found = []
    for callback in callbacks:
        if hasattr(callback, name):
            found.append(getattr(callback, name))
        elif name == "on_epoch_end" and callable(callback) and not hasattr(callback, "on_epoch_begin"):
            found.append(callback)
    return found


def _cpu_state_dict(model: nn.Module) -> dict:
    return {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()}


def _atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _progress(iterable, enabled: bool, **kwargs):
    """tqdm.auto (widgets in notebooks); text bars go to stdout, since stderr fails nbgrader cells."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    from tqdm.notebook import tqdm as widget_tqdm

    if not issubclass(tqdm, widget_tqdm):
        kwargs.setdefault("file", sys.stdout)
    return tqdm(iterable, **kwargs)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------
def fit(model: nn.Module, train_data, val_data=None, epochs: int = 1, lr: float = 1e-3, *,
        optimizer="adamw", weight_decay: float | None = None, momentum: float = 0.9,
        schedule: str = "onecycle", warmup_epochs: float = 0, batch_size: int = 64,
        batch_transform: Callable | None = None, val_batch_transform: Callable | None = None,
        loss_fn: Callable | None = None, device=None, amp=None, channels_last: bool | None = None,
        max_steps_per_epoch: int | None = None, checkpoint: str | os.PathLike | None = "best",
        restore_best: bool = False, progress: bool = True, seed: int | None = 0, callbacks=None,
        clip_grad: float | None = None, freeze_bn_stats: bool = False, num_workers: int = 0) -> History:
    """Train ``model`` for ``epochs`` epochs and return its :class:`History`.

    Args:
        model: any ``nn.Module``; moved to ``device`` and left there.
        train_data, val_data: ``(x, y)`` tensors, a ``Dataset`` of ``(x, y)`` or a ``DataLoader``.
        epochs: passes over ``train_data``.
        lr: peak learning rate (of every group that does not set its own ``lr``).
        optimizer: ``"adamw"``, ``"sgd"`` (with ``momentum``), a list of param-group dicts
            (AdamW; groups keep their own ``lr``), or a ready ``torch.optim.Optimizer``.
        weight_decay: ``None`` means 1e-2 for AdamW and 5e-4 for SGD.
        schedule: ``"onecycle"``, ``"cosine"`` or ``"constant"``, stepped per batch (:func:`make_scheduler`).
        warmup_epochs: epochs of linear warm-up; fractions allowed (0.5 = half an epoch).
        batch_size: images per optimizer step (ignored for a ``DataLoader``).
        batch_transform: callable applied to each input batch *on the device*, e.g. uint8 ->
            normalised float plus augmentation. ``val_batch_transform`` (default: the same one)
            is used for validation.
        loss_fn: ``loss_fn(output, y)``; default cross-entropy on the main output.
        device: ``None`` picks cuda, then mps, then cpu (``COURSE_DEVICE`` overrides).
        amp: mixed precision; ``None`` = on for CUDA (bf16 where supported, else fp16 with a
            GradScaler). ``True``/``False``/``"bf16"``/``"fp16"`` force it.
        channels_last: NHWC memory layout; ``None`` = on for CUDA (faster convolutions with AMP).
        max_steps_per_epoch: cap on batches per epoch, for training and validation (smoke mode).
        checkpoint: ``"best"`` keeps a CPU copy of the weights of the best epoch (highest
            ``val_acc``; see :meth:`History.monitor`); a path also writes them there (atomically);
            ``None`` keeps nothing.
        restore_best: load the best epoch's weights into ``model`` when training ends.
        progress: tqdm bars and one printed table row per epoch.
        seed: seeds Python, NumPy and torch and the shuffling order; ``None`` leaves RNGs alone.
            With a fixed seed two CPU runs give identical histories (timings aside).
        callbacks: a function ``f(epoch, history, model)`` called after each epoch (``epoch`` is
            1-based, equal to ``history.last()["epoch"]``), or objects with optional
            ``on_epoch_begin(epoch, model)`` / ``on_epoch_end(epoch, history, model)`` methods, or a
            list of either. ``on_epoch_end`` returning ``True`` stops training. Parameters
            unfrozen by a callback train from the next epoch on (the optimizer holds all of them).
        clip_grad: max global L2 norm of the gradients, or ``None``.
        freeze_bn_stats: put BatchNorm layers whose parameters are all frozen in eval mode each
            epoch, so their running statistics stay those of pretraining (``requires_grad=False``
            alone does not do that).
        num_workers: DataLoader workers when ``train_data`` is a non-tensor ``Dataset``.
    """
    if seed is not None:
        seed_everything(seed)
    device = _resolve_device(device)
    amp_dtype = _amp_dtype(amp, device)
    channels_last = _use_channels_last(channels_last, device)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    loss_fn = loss_fn or _default_loss
    val_batch_transform = val_batch_transform or batch_transform

    train_batches = _batches(train_data, batch_size, device, shuffle=True, drop_last=True, seed=seed,
                             num_workers=num_workers)
    val_batches = _batches(val_data, batch_size * EVAL_BATCH_MULTIPLIER, device, num_workers=num_workers)
    steps_per_epoch = len(train_batches)
    if max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, int(max_steps_per_epoch))
    if steps_per_epoch < 1:
        raise ValueError("train_data yields no batch")

    optimizer = _build_optimizer(model, optimizer, lr, weight_decay, momentum)
    _start_from_peak_lrs(optimizer)
    warmup_steps = round(float(warmup_epochs) * steps_per_epoch)
    scheduler = make_scheduler(optimizer, schedule, epochs * steps_per_epoch, warmup_steps)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 and device.type == "cuda" else None

    history = History()
    best_state, best_score = None, None
    keep_best = checkpoint is not None or restore_best
    if progress:
        print(History().as_table().splitlines()[0])
    for epoch in range(1, epochs + 1):
        model.train()
        if freeze_bn_stats:
            _put_frozen_batchnorm_in_eval(model)
        for hook in _hooks(callbacks, "on_epoch_begin"):  # after train(), so hooks may set modes
            hook(epoch, model)
        _sync(device)
        start = time.perf_counter()
        train_stats = _train_epoch(model, train_batches, epoch, steps_per_epoch, optimizer, scheduler, scaler,
                                   loss_fn, batch_transform, device, amp_dtype, channels_last, clip_grad,
                                   history, progress)
        _sync(device)
        train_seconds = time.perf_counter() - start
        val_stats = {"loss": None, "acc": None}
        if val_batches is not None:
            val_stats = _evaluate_batches(model, val_batches, val_batch_transform, loss_fn, device, amp_dtype,
                                          channels_last, max_steps_per_epoch)
        row = {
            "epoch": epoch,
            "train_loss": train_stats["loss"], "train_acc": train_stats["acc"],
            "val_loss": val_stats["loss"], "val_acc": val_stats["acc"],
            "lr": history.batch_lrs[-1],
            "seconds": time.perf_counter() - start,
            "images_per_second": train_stats["n"] / max(train_seconds, 1e-9),
        }
        history.append(row)
        if progress:
            print(history.as_table().splitlines()[-1])
        if keep_best:
            score = _score(history, row)
            if best_score is None or score > best_score:
                best_score, best_state = score, _cpu_state_dict(model)
                history.best_epoch = epoch
                if checkpoint not in (None, "best"):
                    _atomic_save(best_state, Path(checkpoint))
        stop = [hook(epoch, history, model) for hook in _hooks(callbacks, "on_epoch_end")]
        if any(result is True for result in stop):
            break
    if restore_best and best_state is not None:
        model.load_state_dict(best_state)
        history.restored_epoch = history.best_epoch
    return history


def _score(history: History, row: dict) -> float:
    """Higher is better, on the metric :meth:`History.best` uses."""
    metric = history.monitor()
    value = row.get(metric)
    if value is None:
        return -math.inf
    return -value if "loss" in metric else value


def _train_epoch(model, batches, epoch, steps, optimizer, scheduler, scaler, loss_fn, batch_transform, device,
                 amp_dtype, channels_last, clip_grad, history, progress) -> dict:
    """One pass of optimizer steps; sums stay on the device so the GPU never waits for ``.item()``."""
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n_seen, is_classification, step_losses = 0, True, []
    bar = _progress(itertools.islice(batches.epoch(epoch), steps), progress, total=steps, desc=f"epoch {epoch}",
                    leave=False)
    for step, (x, y) in enumerate(bar):
        x = _prepare_input(x, device, batch_transform, channels_last)
        y = _to_device(y, device)
        with _autocast(device, amp_dtype):
            output = model(x)
            loss = loss_fn(output, y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if clip_grad is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if clip_grad is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            optimizer.step()
        history.batch_lrs.append(max(float(group["lr"]) for group in optimizer.param_groups))
        _step_scheduler(scheduler)
        batch_loss = loss.detach().float()
        step_losses.append(batch_loss)
        loss_sum += batch_loss * len(y)
        hits = _count_correct(output, y)
        if hits is None:
            is_classification = False
        else:
            correct += hits
        n_seen += len(y)
        if progress and step % 10 == 0 and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{batch_loss.item():.4f}")
    if hasattr(bar, "close"):
        bar.close()
    history.batch_losses.extend(torch.stack(step_losses).cpu().tolist())
    mean_loss = loss_sum.item() / max(n_seen, 1)
    if not math.isfinite(mean_loss):
        raise FloatingPointError(f"training loss became {mean_loss} in epoch {epoch}: "
                                 "try a lower lr, clip_grad=1.0, or check the inputs are normalised")
    acc = correct.item() / max(n_seen, 1) if is_classification else None
    return {"loss": mean_loss, "acc": acc, "n": n_seen}


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


# --------------------------------------------------------------------------------------------
# Feature caching and linear heads
# --------------------------------------------------------------------------------------------
class _StopForward(Exception):
    """Raised by a forward hook once the wanted layer has run, to skip the rest of the network."""


def _cache_dir() -> Path:
    """``utils.data.cache_dir()`` when that module provides it, else ``$COURSE_CACHE_DIR`` or ~/.cache/cnn-course."""
    try:
        from .data import cache_dir
    except ImportError:
        cache_dir = None
    if callable(cache_dir):
        return Path(cache_dir())
    return Path(os.environ.get("COURSE_CACHE_DIR") or Path.home() / ".cache" / "cnn-course")


def _num_samples(data) -> int | None:
    if isinstance(data, DataLoader):
        return len(data.dataset)
    pair = _tensor_pair(data)
    if pair is not None:
        return len(pair[0])
    try:
        return len(data)
    except TypeError:
        return None


def feature_cache_path(cache_key, *, pool: bool = True, layer=None, num_samples: int | None = None,
                       cache_dir: str | os.PathLike | None = None) -> Path:
    """Where :func:`extract_features` stores features for ``cache_key``.

    The file name starts with a readable slug of the key and ends with a hash of everything that
    changes the features (key, pooling, layer, number of samples), so a smoke-mode subset never
    reads a full run's file.
    """
    parts = cache_key if isinstance(cache_key, (tuple, list)) else (cache_key,)
    identity = repr((tuple(str(p) for p in parts), bool(pool), str(layer), num_samples))
    digest = hashlib.sha1(identity.encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(str(p) for p in parts)).strip("-")[:80] or "features"
    folder = Path(cache_dir) if cache_dir is not None else _cache_dir()
    return folder / "features" / f"{slug}-{digest}.pt"


def _resolve_layer(backbone: nn.Module, layer) -> nn.Module:
    """A module from a stage index (``backbone.stages`` holds modules or their names), a name, or itself."""
    if isinstance(layer, nn.Module):
        return layer
    if isinstance(layer, int):
        stages = getattr(backbone, "stages", None)
        if stages is None:
            raise ValueError("layer given as an int needs a backbone with a `stages` attribute")
        layer = stages[layer]
        if isinstance(layer, nn.Module):
            return layer
    try:
        return backbone.get_submodule(layer)
    except AttributeError as err:
        raise KeyError(f"backbone has no module named {layer!r}") from err


def _pool(features: torch.Tensor) -> torch.Tensor:
    """Global average pool: over H, W for N x C x H x W maps, over tokens for N x T x D."""
    if features.ndim == 4:
        return features.mean(dim=(2, 3))
    if features.ndim == 3:
        return features.mean(dim=1)
    return features


def _run_backbone(backbone: nn.Module, target: nn.Module | None):
    """A function x -> features: ``forward_features`` (or the whole module), or one layer's output."""
    forward = getattr(backbone, "forward_features", backbone)
    if target is None:
        return forward

    def up_to_layer(x):
        captured = {}

        def hook(module, inputs, output):
            captured["features"] = output
            raise _StopForward

        handle = target.register_forward_hook(hook)
        try:
            forward(x)
        except _StopForward:
            pass
        finally:
            handle.remove()
        if "features" not in captured:
            raise RuntimeError("the requested layer did not run during forward_features")
        return captured["features"]

    return up_to_layer


def extract_features(backbone: nn.Module, data, batch_transform: Callable | None = None, cache_key=None,
                     device=None, batch_size: int = 64, pool: bool = True, layer=None, *, amp=None,
                     channels_last: bool | None = None, cache_dir: str | os.PathLike | None = None,
                     progress: bool = False, num_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a frozen backbone once over ``data``; return ``(features, labels)`` as CPU tensors.

    ``features`` is float32, N x D when ``pool`` (global average pool of ``forward_features``),
    else the raw maps (N x C x H x W). ``layer`` (a stage index into ``backbone.stages``, a module
    name, or a module) takes that layer's output instead, and stops the forward pass there.
    The backbone runs in eval mode under ``torch.inference_mode``; its modes are restored after.

    With ``cache_key`` (a str or tuple naming backbone, dataset, split and transform), the result
    is saved under ``<cache dir>/features/`` (written atomically) and later calls load it
    without running the backbone. ``cache_dir`` overrides the course's cache folder.
    """
    path = None
    if cache_key is not None:
        path = feature_cache_path(cache_key, pool=pool, layer=None if isinstance(layer, nn.Module) else layer,
                                  num_samples=_num_samples(data), cache_dir=cache_dir)
        cached = _load_features(path)
        if cached is not None:
            return cached
    device, channels_last = _prepare_model(backbone, device, channels_last)
    batches = _batches(data, batch_size, device, num_workers=num_workers)
    target = _resolve_layer(backbone, layer) if layer is not None else None
    run = _run_backbone(backbone, target)
    amp_dtype = _amp_dtype(amp, device)
    modes = _module_modes(backbone)
    backbone.eval()
    features, labels = [], []
    try:
        with torch.inference_mode():
            for x, y in _progress(batches.epoch(0), progress, total=len(batches), desc="features"):
                x = _prepare_input(x, device, batch_transform, channels_last)
                with _autocast(device, amp_dtype):
                    out = run(x)
                out = _pool(out) if pool else out
                features.append(out.float().contiguous().cpu())
                labels.append(torch.as_tensor(y).cpu())
    finally:
        _restore_modes(modes)
    features, labels = torch.cat(features), torch.cat(labels)
    if path is not None:
        _atomic_save({"features": features, "labels": labels, "key": str(cache_key)}, path)
    return features, labels


def _load_features(path: Path):
    if not path.exists():
        return None
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
        return stored["features"], stored["labels"]
    except Exception:  # a file from an older format or a different torch: recompute and overwrite
        return None


def fit_head(train_features: torch.Tensor, train_labels: torch.Tensor, val_features: torch.Tensor | None = None,
             val_labels: torch.Tensor | None = None, epochs: int = 20, lr: float = 1e-2, *,
             num_classes: int | None = None, batch_size: int = 64, schedule: str = "cosine",
             progress: bool = False, seed: int | None = 0, **fit_kwargs) -> tuple[nn.Linear, History]:
    """Train a linear classifier on cached features with :func:`fit`; return ``(head, history)``.

    ``num_classes`` defaults to the largest label + 1. ``batch_size=None`` trains full-batch.
    Other keyword arguments (``weight_decay``, ``optimizer``, ``device``...) go to :func:`fit`.
    The head is created after seeding, so the same seed gives the same head.
    """
    train_features = torch.as_tensor(train_features).float()
    train_labels = torch.as_tensor(train_labels).long()
    if num_classes is None:
        num_classes = int(train_labels.max()) + 1
        if val_labels is not None:
            num_classes = max(num_classes, int(torch.as_tensor(val_labels).max()) + 1)
    if seed is not None:
        seed_everything(seed)
    head = nn.Linear(train_features.shape[1], num_classes)
    val_data = None
    if val_features is not None:
        val_data = (torch.as_tensor(val_features).float(), torch.as_tensor(val_labels).long())
    history = fit(head, (train_features, train_labels), val_data, epochs=epochs, lr=lr,
                  batch_size=batch_size or len(train_features), schedule=schedule, progress=progress, seed=seed,
                  **fit_kwargs)
    return head, history
