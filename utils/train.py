"""A small training loop in fastai's one-call spirit.

Every lesson that trains goes through :func:`fit`::

    history = fit(model, (x_train, y_train), (x_val, y_val), epochs=5, lr=3e-3,
                  batch_transform=transform)       # uint8 -> normalised float, on the device
    history                                         # a table: one row per epoch

Data may be a pair of tensors ``(x, y)``, any map-style ``Dataset`` yielding ``(x, y)``, or a
``DataLoader`` (see :mod:`utils.inference`, which batches them and holds :func:`evaluate` and
:func:`predict`). Keeping images as uint8 until ``batch_transform`` runs on the device is what
makes tensor data cheap. :func:`fit_head` trains a linear head on features cached by
:func:`utils.features.extract_features`.

Dependencies run one way: ``utils.train`` uses :mod:`utils.inference` (and :mod:`utils.viz` for
:meth:`History.plot`); neither of those imports it.
"""
from __future__ import annotations

import itertools
import math
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from .env import seed_everything
# kept for the notebooks until their imports move to utils.features
from .features import extract_features, feature_cache_path
from .inference import (_amp_dtype, _autocast, _batches, _count_correct, _default_loss, _evaluate_batches,
                        _prepare_input, _progress, _resolve_device, _to_device, _use_channels_last)
# kept for the notebooks until their imports move to utils.inference
from .inference import evaluate, predict

__all__ = [
    "History",
    "fit",
    "fit_head",
    "make_scheduler",
    # re-exported, kept for the notebooks until their imports move to utils.features / utils.inference
    "evaluate",
    "extract_features",
    "feature_cache_path",
    "predict",
]

SCHEDULES = ("onecycle", "cosine", "constant")
DEFAULT_WEIGHT_DECAY = {"adamw": 1e-2, "sgd": 5e-4}  # AdamW's PyTorch default; AlexNet/VGG's SGD value
ONECYCLE_DEFAULT_WARMUP = 0.25  # fraction of all steps spent rising when no warm-up is given (fastai's)
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
# Optimizer and schedule
# --------------------------------------------------------------------------------------------
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
# BatchNorm, callbacks, checkpoints
# --------------------------------------------------------------------------------------------
def _put_frozen_batchnorm_in_eval(model: nn.Module) -> None:
    """BatchNorm layers whose parameters are all frozen stop updating their running statistics."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()


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
# Linear heads on cached features
# --------------------------------------------------------------------------------------------
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
