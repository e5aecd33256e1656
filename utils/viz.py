"""Figures shared by the lessons: training curves, confusion matrices, image grids, top losses.

Every function returns its matplotlib ``Figure``, with labelled axes and a title that states
what is shown or what it shows. Figures are made through pyplot, so a notebook displays them at
the end of the cell: write ``fig = plot_history(h)`` or end the line with ``;`` to avoid a
second copy from the returned value. Only matplotlib is used. From the course's own code it
imports :mod:`utils.inference` (for :func:`show_top_losses`) and never :mod:`utils.train`,
whose ``History.plot`` calls :func:`plot_history`.
"""
from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator
from torch.utils.data import DataLoader

from .inference import _tensor_pair, predict

__all__ = ["confusion_matrix", "plot_confusion_matrix", "plot_history", "show_images", "show_top_losses"]

METRIC_AXIS_LABELS = {
    "loss": "loss (mean per image)",
    "acc": "accuracy (%)",
    "lr": "learning rate",
    "seconds": "epoch time (s)",
    "images_per_second": "training throughput (images/s)",
}
MAX_ANNOTATED_CLASSES = 25  # beyond this the numbers in the cells are unreadable


# --------------------------------------------------------------------------------------------
# Training curves
# --------------------------------------------------------------------------------------------
def _epoch_rows(history) -> list[dict]:
    rows = getattr(history, "epochs", history)
    return [dict(row) for row in rows]


def _runs(histories, labels) -> list[tuple[str, list[dict]]]:
    """Normalise one History, a list of them, or {label: History} into [(label, rows)]."""
    if isinstance(histories, dict):
        return [(str(label), _epoch_rows(h)) for label, h in histories.items()]
    is_single = hasattr(histories, "epochs") or (
        isinstance(histories, (list, tuple)) and (not histories or isinstance(histories[0], dict)))
    if is_single:
        return [(labels if isinstance(labels, str) else (labels or [""])[0], _epoch_rows(histories))]
    labels = list(labels) if labels is not None else [f"run {i + 1}" for i in range(len(histories))]
    if len(labels) != len(histories):
        raise ValueError(f"{len(histories)} histories but {len(labels)} labels")
    return [(str(label), _epoch_rows(h)) for label, h in zip(labels, histories)]


def _series(rows: list[dict], key: str):
    points = [(row["epoch"], row.get(key)) for row in rows if row.get(key) is not None]
    scale = 100.0 if key.endswith("acc") else 1.0
    return [epoch for epoch, _ in points], [scale * value for _, value in points]


def _history_title(runs) -> str:
    """The finding: best validation accuracy (or final loss) per run."""
    findings = []
    for label, rows in runs:
        name = f"{label}: " if label else ""
        val = [row for row in rows if row.get("val_acc") is not None]
        if val:
            best = max(val, key=lambda row: row["val_acc"])
            findings.append(f"{name}best val accuracy {100 * best['val_acc']:.1f}% (epoch {best['epoch']})")
        elif rows and rows[-1].get("train_loss") is not None:
            findings.append(f"{name}final train loss {rows[-1]['train_loss']:.3f}")
    return "; ".join(findings[:4]) or "training curves"


def plot_history(histories, labels=None, metrics: Sequence[str] = ("loss", "acc"), title: str | None = None,
                 figsize_per_metric=(5.0, 3.6)):
    """Training (solid) and validation (dashed) curves against epochs, one panel per metric.

    ``histories`` is a :class:`utils.train.History`, a list of epoch dicts, a list of histories
    (named by ``labels``) or a ``{label: history}`` dict. ``metrics`` are ``"loss"`` and ``"acc"``
    (plotted as train_/val_ pairs, accuracy in percent) or any other epoch key such as ``"lr"``.
    """
    runs = _runs(histories, labels)
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    width, height = figsize_per_metric
    fig, axes = plt.subplots(1, len(metrics), figsize=(width * len(metrics), height), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    for ax, metric in zip(axes[0], metrics):
        for i, (label, rows) in enumerate(runs):
            prefix = f"{label} " if label else ""
            keys = [(f"train_{metric}", "train", "-"), (f"val_{metric}", "val", "--")]
            if not any(key in row for row in rows for key, _, _ in keys):
                keys = [(metric, "", "-")]
            for key, split, style in keys:
                x, y = _series(rows, key)
                if x:
                    ax.plot(x, y, style, marker="o" if len(x) < 15 else None, markersize=3,
                            color=colors[i % len(colors)], label=(prefix + split).strip() or key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(METRIC_AXIS_LABELS.get(metric, metric))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    fig.suptitle(title or _history_title(runs))
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Confusion matrix
# --------------------------------------------------------------------------------------------
def _as_long(values) -> torch.Tensor:
    values = torch.as_tensor(np.asarray(values) if not isinstance(values, torch.Tensor) else values)
    if values.ndim == 2:  # logits or probabilities: take the top-1 class
        values = values.argmax(dim=1)
    return values.detach().cpu().long().flatten()


def confusion_matrix(labels, preds, num_classes: int | None = None) -> torch.Tensor:
    """``cm[true, pred]`` = number of samples of class ``true`` predicted as ``pred`` (LongTensor K x K).

    ``preds`` may be class indices or N x K logits. ``num_classes`` defaults to the largest index + 1.
    """
    labels, preds = _as_long(labels), _as_long(preds)
    if labels.shape != preds.shape:
        raise ValueError(f"{len(labels)} labels but {len(preds)} predictions")
    if num_classes is None:
        num_classes = int(max(labels.max(), preds.max())) + 1 if len(labels) else 0
    pairs = labels * num_classes + preds
    return torch.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _confusion_title(cm: torch.Tensor, names: Sequence[str]) -> str:
    total = int(cm.sum())
    if total == 0:
        return "confusion matrix (no samples)"
    accuracy = cm.diag().sum().item() / total
    text = f"accuracy {100 * accuracy:.1f}% on {total} images"
    off_diagonal = cm.clone()
    off_diagonal.fill_diagonal_(0)
    if off_diagonal.sum() > 0:
        true, pred = divmod(int(off_diagonal.argmax()), cm.shape[1])
        text += f"\nmost confused: {names[true]} → {names[pred]} ({int(off_diagonal[true, pred])}×)"
    return text


def plot_confusion_matrix(labels, preds, class_names: Sequence[str] | None = None, normalize: bool = False,
                          title: str | None = None, figsize=None):
    """Heat map of true (rows) against predicted (columns) classes, each cell annotated.

    ``normalize=True`` shows each row as percentages of that true class (recall on the diagonal);
    otherwise cells hold counts. ``preds`` may be indices or logits. Returns the Figure.
    """
    num_classes = len(class_names) if class_names is not None else None
    cm = confusion_matrix(labels, preds, num_classes)
    names = list(class_names) if class_names is not None else [str(i) for i in range(cm.shape[0])]
    k = cm.shape[0]
    values = cm.double()
    if normalize:
        values = 100 * values / values.sum(dim=1, keepdim=True).clamp(min=1)
    side = max(4.0, 0.55 * k + 2)
    fig, ax = plt.subplots(figsize=figsize or (side + 1, side))
    image = ax.imshow(values.numpy(), cmap="Blues", vmin=0)
    colorbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    colorbar.set_label("% of true class" if normalize else "images")
    if k <= MAX_ANNOTATED_CLASSES:
        threshold = values.max().item() / 2
        for true in range(k):
            for pred in range(k):
                value = values[true, pred].item()
                text = f"{value:.0f}%" if normalize else str(int(cm[true, pred]))
                ax.text(pred, true, text, ha="center", va="center", fontsize="small",
                        color="white" if value > threshold else "black")
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or _confusion_title(cm, names), fontsize="medium")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------
def _is_channel_dim(size: int) -> bool:
    return size in (1, 3, 4)


def _to_batch(images) -> torch.Tensor:
    """N x H x W x C float tensor from a batch, a list, or one image; CHW or HWC; grayscale too."""
    if isinstance(images, (list, tuple)):
        images = torch.stack([torch.as_tensor(np.asarray(im) if not isinstance(im, torch.Tensor) else im)
                              for im in images])
    images = torch.as_tensor(images).detach().cpu()
    if images.ndim == 2:  # one grayscale H x W image
        images = images[None, None]
    elif images.ndim == 3:
        if _is_channel_dim(images.shape[0]) or _is_channel_dim(images.shape[-1]):
            images = images[None]  # one CHW or HWC image
        else:
            images = images[:, None]  # a batch of grayscale N x H x W images
    if images.ndim != 4:
        raise ValueError(f"expected images of 2 to 4 dimensions; got shape {tuple(images.shape)}")
    channels_first = images.shape[1] in (1, 3) or not _is_channel_dim(images.shape[-1])  # torch's NCHW wins ties
    if channels_first:
        images = images.permute(0, 2, 3, 1)  # NCHW -> NHWC
    return images


def _displayable(images: torch.Tensor, mean, std) -> np.ndarray:
    """Floats in [0, 1]: uint8 / 255, denormalised with ``mean``/``std``, or min-max rescaled per image."""
    if images.dtype == torch.uint8:
        images = images.float() / 255
    else:
        images = images.float()
        if std is not None:
            images = images * torch.as_tensor(std, dtype=torch.float32)
        if mean is not None:
            images = images + torch.as_tensor(mean, dtype=torch.float32)
        if mean is None and std is None and (images.min() < 0 or images.max() > 1):
            low = images.amin(dim=(1, 2, 3), keepdim=True)
            high = images.amax(dim=(1, 2, 3), keepdim=True)
            images = (images - low) / (high - low).clamp(min=1e-8)
    return images.clamp(0, 1).numpy()


def show_images(images, titles: Sequence[str] | None = None, ncols: int = 8, mean=None, std=None,
                title: str | None = None, size_per_image: float = 1.8):
    """A grid of images; returns the Figure.

    ``images``: uint8 (0..255) or float tensors/arrays, N x C x H x W or N x H x W x C (one image
    or a list works too). Pass the ``mean`` and ``std`` used for normalisation (per channel) to
    undo it; floats outside [0, 1] without them are rescaled per image for display.
    """
    batch = _displayable(_to_batch(images), mean, std)
    n = len(batch)
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    extra = 0.3 if titles is not None else 0.0
    fig, axes = plt.subplots(nrows, ncols, figsize=(size_per_image * ncols, (size_per_image + extra) * nrows + 0.5),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        image = batch[i]
        if image.shape[-1] == 1:
            ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(image)
        if titles is not None and i < len(titles):
            ax.set_title(str(titles[i]), fontsize="small")
    height, width = batch.shape[1:3]
    fig.suptitle(title or f"{n} image{'s' if n != 1 else ''} ({height}×{width} px)")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Top losses
# --------------------------------------------------------------------------------------------
def _labels_and_image_getter(data):
    """All labels of ``data`` and a function i -> image, for tensor pairs, Datasets and DataLoaders."""
    if isinstance(data, DataLoader):
        data = data.dataset
    pair = _tensor_pair(data)
    if pair is not None:
        images, labels = pair
        return torch.as_tensor(labels).long(), lambda i: images[i]
    labels = torch.as_tensor([int(data[i][1]) for i in range(len(data))])
    return labels, lambda i: data[i][0]


def show_top_losses(model_or_logits, data, class_names: Sequence[str] | None = None, k: int = 8, *,
                    batch_transform=None, mean=None, std=None, device=None, ncols: int = 4, title: str | None = None):
    """The ``k`` most confidently wrong predictions on ``data``, titled "pred / true / p(pred)".

    ``model_or_logits`` is a model (run with :func:`utils.inference.predict` and ``batch_transform``)
    or precomputed N x K logits in the order of ``data``. ``class_names`` defaults to
    ``data.class_names`` (or ``data.classes``), else class indices. The images are shown as
    ``data`` holds them; give ``mean``/``std`` if those are normalised floats.
    """
    class_names = class_names or getattr(data, "class_names", None) or getattr(data, "classes", None)
    labels, image_at = _labels_and_image_getter(data)
    if isinstance(model_or_logits, torch.nn.Module):
        logits, labels = predict(model_or_logits, data, batch_transform=batch_transform, device=device)
    else:
        logits = torch.as_tensor(model_or_logits).detach().float().cpu()
    if len(logits) != len(labels):
        raise ValueError(f"{len(logits)} rows of logits but {len(labels)} samples in data")
    probs = logits.softmax(dim=1)
    confidence, preds = probs.max(dim=1)
    wrong = torch.nonzero(preds != labels).flatten()
    order = wrong[confidence[wrong].argsort(descending=True)][:k]
    if len(order) == 0:
        fig, ax = plt.subplots(figsize=(4, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no mistakes", ha="center", va="center")
        fig.suptitle(title or f"no wrong predictions on {len(labels)} images")
        return fig
    images = [torch.as_tensor(image_at(int(i))) for i in order]
    name = (lambda c: str(class_names[c])) if class_names is not None else str
    titles = [f"{name(int(preds[i]))} / {name(int(labels[i]))} / {confidence[i]:.2f}" for i in order]
    heading = title or (f"{len(order)} most confident mistakes ({len(wrong)} wrong of {len(labels)}); "
                        "pred / true / p(pred)")
    return show_images(images, titles=titles, ncols=ncols, mean=mean, std=std, title=heading, size_per_image=2.4)
