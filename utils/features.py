"""Frozen-backbone features, computed once and cached on disk (lesson 08 onwards).

:func:`extract_features` runs a backbone in eval mode over any data form :mod:`utils.inference`
accepts and returns ``(features, labels)``; with a ``cache_key`` the result is written atomically
under ``<cache dir>/features/`` (:func:`feature_cache_path`) and read back on the next call
without running the backbone. A linear head is then trained on the features in seconds with
:func:`utils.train.fit_head`.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from .data import _save_atomic, cache_dir as _course_cache_dir
from .inference import (_amp_dtype, _autocast, _batches, _module_modes, _prepare_input, _prepare_model, _progress,
                        _restore_modes, _tensor_pair)

__all__ = ["extract_features", "feature_cache_path"]


class _StopForward(Exception):
    """Raised by a forward hook once the wanted layer has run, to skip the rest of the network."""


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
    folder = Path(cache_dir) if cache_dir is not None else _course_cache_dir()
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
        _save_atomic({"features": features, "labels": labels, "key": str(cache_key)}, path)
    return features, labels


def _load_features(path: Path):
    if not path.exists():
        return None
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
        return stored["features"], stored["labels"]
    except Exception:  # a file from an older format or a different torch: recompute and overwrite
        return None
