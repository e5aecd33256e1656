"""Convolution arithmetic: output sizes, parameter and MAC counts, receptive fields, layer summaries.

Units used throughout
---------------------
- sizes, kernels, strides, paddings, receptive fields and jumps are in **pixels** (of the map the
  layer reads, or of the network's input image for receptive fields and jumps);
- parameter counts are numbers of scalar weights (multiply by 4 for bytes in fp32);
- compute is counted in **MACs** (multiply-accumulates) for one image.

MAC versus FLOP
---------------
One MAC is one multiply followed by one add, ``acc += w * x``: a convolution with ``C_in`` input
channels, a ``k x k`` kernel and ``C_out x H x W`` outputs costs ``C_out * H * W * C_in * k * k``
MACs. A FLOP is a single floating-point operation, so ``FLOPs = 2 x MACs``; this is what
:class:`torch.utils.flop_counter.FlopCounterMode` reports. Papers and model zoos mix the two
up: torchvision's weights metadata field ``meta["_ops"]`` (shown as "GFLOPS" in its docs tables) is
in fact **GMACs** -- e.g. ``VGG16_Weights.IMAGENET1K_V1.meta["_ops"] == 15.47``, while
``FlopCounterMode`` counts 30.94 GFLOPs for one 224 x 224 image. ``tests/test_arithmetic.py``
checks this claim for five networks.

Only convolutions and fully connected layers are counted (bias additions, batch norm,
activations, pooling and residual additions are left out): they are a few percent at most, and
leaving them out is what ``FlopCounterMode`` and torchvision's metadata do too.

Receptive fields
----------------
The receptive field (RF) of a unit is the side of the input square that can influence it; the
*jump* is the distance, in input pixels, between two neighbouring units of a map. A layer with
kernel ``k``, stride ``s`` and dilation ``d`` has effective kernel ``k_eff = d * (k - 1) + 1`` and::

    rf_out   = rf_in + (k_eff - 1) * jump_in
    jump_out = jump_in * s

Padding and ``ceil_mode`` move units around but change neither. The values here are *theoretical*
and unclipped: VGG16's pool5 units see 212 x 212 pixels even though the image is 224 x 224
and border units hang over the zero padding. :func:`empirical_receptive_field` measures the same
thing from input gradients.
"""
from __future__ import annotations

import difflib
import html
import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

__all__ = [
    "LayerRow",
    "LayerSummary",
    "activation_memory_bytes",
    "conv_macs",
    "conv_output_size",
    "conv_params",
    "empirical_receptive_field",
    "linear_macs",
    "linear_params",
    "receptive_field",
    "receptive_field_step",
    "summary",
]


# ----------------------------------------------------------------------------------------------
# Closed-form arithmetic
# ----------------------------------------------------------------------------------------------

def _check_int(value, name: str, minimum: int) -> int:
    """Return ``value`` as an int, or raise ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _as_pair(value, name: str, minimum: int = 1) -> tuple[int, ...]:
    """An int or a tuple of ints (one per spatial axis) as a tuple; a lone int is used for 2 axes."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) == 0:
            raise ValueError(f"{name} must not be empty")
        return tuple(_check_int(v, name, minimum) for v in value)
    v = _check_int(value, name, minimum)
    return (v, v)


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                     *, ceil_mode: bool = False) -> int:
    """Output length, in units, of a convolution or pooling along one spatial axis.

    ``floor((size + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1`` with ``size``,
    ``kernel`` and ``padding`` in pixels of the input map. ``ceil_mode=True`` rounds up instead,
    as pooling layers with ``ceil_mode=True`` do (PyTorch drops a last window that would start in
    the right padding). Example: AlexNet's first layer maps 227 -> 55 (k=11, s=4); torchvision
    gets the same 55 from a 224 input with ``padding=2``.

    Raises ValueError if an argument is not a suitable int or if the (dilated) kernel does not fit
    in the padded input, i.e. the output would be empty.
    """
    size = _check_int(size, "size", 1)
    kernel = _check_int(kernel, "kernel", 1)
    stride = _check_int(stride, "stride", 1)
    padding = _check_int(padding, "padding", 0)
    dilation = _check_int(dilation, "dilation", 1)
    span = dilation * (kernel - 1) + 1
    room = size + 2 * padding - span
    if room < 0:
        raise ValueError(
            f"output would be empty: the effective kernel {span} (kernel={kernel}, dilation={dilation}) "
            f"is larger than the padded input {size} + 2*{padding} = {size + 2 * padding}")
    if not ceil_mode:
        return room // stride + 1
    out = -(-room // stride) + 1
    if (out - 1) * stride >= size + padding:
        out -= 1
    return out


def conv_params(in_channels: int, out_channels: int, kernel, groups: int = 1, bias: bool = True) -> int:
    """Number of learnable scalars of a convolution: ``C_out * (C_in / groups) * kh * kw (+ C_out)``.

    ``kernel`` is an int (square) or a tuple such as ``(kh, kw)``. Each of the ``groups`` groups
    connects ``C_in / groups`` input channels to ``C_out / groups`` output channels, so both
    channel counts must be divisible by ``groups`` (depthwise: ``groups == C_in``).
    """
    in_channels = _check_int(in_channels, "in_channels", 1)
    out_channels = _check_int(out_channels, "out_channels", 1)
    groups = _check_int(groups, "groups", 1)
    kernel = _as_pair(kernel, "kernel")
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) "
                         f"must both be divisible by groups ({groups})")
    weights = out_channels * (in_channels // groups) * math.prod(kernel)
    return weights + (out_channels if bias else 0)


def conv_macs(in_channels: int, out_channels: int, kernel, out_size, groups: int = 1) -> int:
    """Multiply-accumulates of a convolution for one image: ``C_out * H_out * W_out * (C_in / groups) * kh * kw``.

    ``out_size`` is the output map's side (int, square) or ``(H_out, W_out)`` in units; ``kernel`` an
    int or ``(kh, kw)``. Bias additions are not counted. FLOPs are twice this number.
    """
    in_channels = _check_int(in_channels, "in_channels", 1)
    out_channels = _check_int(out_channels, "out_channels", 1)
    groups = _check_int(groups, "groups", 1)
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) "
                         f"must both be divisible by groups ({groups})")
    kernel = _as_pair(kernel, "kernel")
    out_size = _as_pair(out_size, "out_size")
    return out_channels * math.prod(out_size) * (in_channels // groups) * math.prod(kernel)


def linear_params(in_features: int, out_features: int, bias: bool = True) -> int:
    """Number of learnable scalars of a fully connected layer: ``in * out (+ out)``."""
    in_features = _check_int(in_features, "in_features", 1)
    out_features = _check_int(out_features, "out_features", 1)
    return in_features * out_features + (out_features if bias else 0)


def linear_macs(in_features: int, out_features: int) -> int:
    """Multiply-accumulates of a fully connected layer for one input vector: ``in * out``."""
    in_features = _check_int(in_features, "in_features", 1)
    out_features = _check_int(out_features, "out_features", 1)
    return in_features * out_features


def receptive_field_step(rf: int, jump: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """One layer of the receptive-field recurrence; returns ``(rf_out, jump_out)`` in input pixels.

    ``rf_out = rf + (k_eff - 1) * jump`` and ``jump_out = jump * stride`` with
    ``k_eff = dilation * (kernel - 1) + 1``. Start from ``(1, 1)`` at the image: two stacked
    3 x 3 convolutions see 5 x 5 pixels, three see 7 x 7.
    """
    rf = _check_int(rf, "rf", 1)
    jump = _check_int(jump, "jump", 1)
    kernel = _check_int(kernel, "kernel", 1)
    stride = _check_int(stride, "stride", 1)
    dilation = _check_int(dilation, "dilation", 1)
    k_eff = dilation * (kernel - 1) + 1
    return rf + (k_eff - 1) * jump, jump * stride


# ----------------------------------------------------------------------------------------------
# Tracking receptive fields through a forward pass
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Field:
    """Receptive field and jump of every unit of a tensor, per spatial axis (H, W), in input pixels."""

    rf_h: int = 1
    rf_w: int = 1
    jump_h: int = 1
    jump_w: int = 1

    def step(self, kernel, stride, dilation) -> "_Field":
        rf_h, jump_h = receptive_field_step(self.rf_h, self.jump_h, kernel[0], stride[0], dilation[0])
        rf_w, jump_w = receptive_field_step(self.rf_w, self.jump_w, kernel[1], stride[1], dilation[1])
        return _Field(rf_h, rf_w, jump_h, jump_w)

    def whole_map(self, height: int, width: int) -> "_Field":
        """A unit that reads the whole ``height x width`` map (global pooling, flatten)."""
        return self.step((height, width), (height, width), (1, 1))

    def merge(self, other: "_Field") -> "_Field":
        """Largest over paths: an output fed by several tensors sees the union of their fields."""
        return _Field(max(self.rf_h, other.rf_h), max(self.rf_w, other.rf_w),
                      max(self.jump_h, other.jump_h), max(self.jump_w, other.jump_w))

    @property
    def rf(self) -> int:
        return max(self.rf_h, self.rf_w)

    @property
    def jump(self) -> int:
        return max(self.jump_h, self.jump_w)


def _op_name(func) -> str:
    """``relu_``, ``_max_pool2d`` and ``max_pool2d`` all become the same key."""
    return getattr(func, "__name__", "").strip("_")


def _arg(args, kwargs, index: int, name: str, default=None):
    """Positional-or-keyword argument ``name`` of a functional call."""
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _pair_arg(value, default) -> tuple[int, int]:
    """Kernel/stride/dilation arguments come as int, 1- or 2-sequences, or empty/None (use default)."""
    if value is None or (isinstance(value, Sequence) and len(value) == 0):
        value = default
    if isinstance(value, Sequence):
        return (int(value[0]), int(value[-1]))
    return (int(value), int(value))


def _adaptive_geometry(size_in: int, size_out: int) -> tuple[int, int]:
    """Kernel and stride of adaptive pooling along one axis.

    Exact when ``size_in`` is a multiple of ``size_out`` (including global pooling, where the kernel
    is the whole map). Otherwise bins overlap unevenly: the widest bin is used as the kernel and
    ``size_in // size_out`` as the stride, an approximation.
    """
    if size_out >= size_in:
        return 1, 1
    if size_in % size_out == 0:
        return size_in // size_out, size_in // size_out
    widest = max(-(-(i + 1) * size_in // size_out) - (i * size_in // size_out) for i in range(size_out))
    return widest, size_in // size_out


_POOL_OPS = {"max_pool2d", "max_pool2d_with_indices", "avg_pool2d"}
_ADAPTIVE_OPS = {"adaptive_avg_pool2d", "adaptive_max_pool2d", "adaptive_max_pool2d_with_indices"}
# Ops after which units no longer live on the H x W grid of their 4-D input: if the output does not
# keep the input's last two dims, each output value is taken to read the whole input map.
_COLLAPSING_OPS = {"flatten", "view", "reshape", "mean", "sum", "amax", "amin", "max", "min",
                   "std", "var", "norm", "logsumexp", "prod"}


class _FieldTracker(TorchFunctionMode):
    """Tags every tensor computed in a forward pass with the :class:`_Field` of its units.

    Rules, applied to each torch function the model calls (tensors not derived from the input,
    such as weights, carry no tag and are ignored):

    - ``conv2d``, ``max_pool2d``, ``avg_pool2d`` (any padding, ``ceil_mode``, non-square kernels):
      the recurrence, per axis;
    - adaptive pooling: a kernel covering its bin (the whole map for global pooling);
    - flatten / view / reshape / reductions that drop the H x W grid: the whole input map;
    - everything else (activations, batch norm, ``+``, ``*``, ``torch.cat``, linear, padding...):
      the largest field over the tagged inputs. Transposed convolutions and upsampling are not
      modelled: they pass fields through unchanged.

    A squeeze-and-excitation gate (global pooling, then ``x * gate``) therefore makes every
    following unit see the whole input: that is the true theoretical receptive field.
    """

    def __init__(self):
        super().__init__()
        self.fields = WeakIdKeyDictionary()

    def tag(self, tensor: torch.Tensor, field: _Field) -> None:
        self.fields[tensor] = field

    def field_of(self, value) -> _Field | None:
        tensors = [t for t in tree_flatten(value)[0] if isinstance(t, torch.Tensor)]
        return self.fields.get(tensors[0]) if tensors else None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        tagged = [t for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor) and t in self.fields]
        if not tagged:
            return result
        field = self._output_field(_op_name(func), args, kwargs, tagged, result)
        for out in tree_flatten(result)[0]:
            if isinstance(out, torch.Tensor):
                self.fields[out] = field
        return result

    def _merge(self, tagged, result) -> _Field:
        """Largest field over the inputs; the jump comes from the inputs on the output's own grid.

        A broadcast input such as a squeeze-and-excitation gate (``N x C x 1 x 1``) widens the
        field but does not change the spacing of the units it multiplies.
        """
        merged = self.fields[tagged[0]]
        for t in tagged[1:]:
            merged = merged.merge(self.fields[t])
        outs = [t for t in tree_flatten(result)[0] if isinstance(t, torch.Tensor)]
        if not outs or outs[0].dim() < 2:
            return merged
        on_grid = [self.fields[t] for t in tagged if t.dim() >= 2 and t.shape[-2:] == outs[0].shape[-2:]]
        if not on_grid or len(on_grid) == len(tagged):
            return merged
        return _Field(merged.rf_h, merged.rf_w, max(f.jump_h for f in on_grid), max(f.jump_w for f in on_grid))

    def _output_field(self, name, args, kwargs, tagged, result) -> _Field:
        merged = self._merge(tagged, result)
        main = args[0] if args and isinstance(args[0], torch.Tensor) and args[0] in self.fields else tagged[0]
        source = self.fields[main]
        if name == "conv2d" and main.dim() == 4:
            weight = _arg(args, kwargs, 1, "weight")
            kernel = tuple(weight.shape[-2:])
            stride = _pair_arg(_arg(args, kwargs, 3, "stride", 1), 1)
            dilation = _pair_arg(_arg(args, kwargs, 5, "dilation", 1), 1)
            return source.step(kernel, stride, dilation)
        if name in _POOL_OPS and main.dim() == 4:
            kernel = _pair_arg(_arg(args, kwargs, 1, "kernel_size"), None)
            stride = _pair_arg(_arg(args, kwargs, 2, "stride"), kernel)
            dilation = (1, 1) if name == "avg_pool2d" else _pair_arg(_arg(args, kwargs, 4, "dilation", 1), 1)
            return source.step(kernel, stride, dilation)
        if name in _ADAPTIVE_OPS and main.dim() == 4:
            out = tree_flatten(result)[0][0]
            (kh, sh), (kw, sw) = (_adaptive_geometry(main.shape[-2], out.shape[-2]),
                                  _adaptive_geometry(main.shape[-1], out.shape[-1]))
            return source.step((kh, kw), (sh, sw), (1, 1))
        if name in _COLLAPSING_OPS:
            grids = [t for t in tagged if t.dim() == 4]
            outs = [t for t in tree_flatten(result)[0] if isinstance(t, torch.Tensor)]
            if grids and outs:
                grid = max(grids, key=lambda t: t.shape[-2] * t.shape[-1])
                if outs[0].dim() < 2 or tuple(outs[0].shape[-2:]) != tuple(grid.shape[-2:]):
                    return merged.whole_map(grid.shape[-2], grid.shape[-1])
        return merged


# ----------------------------------------------------------------------------------------------
# Running a model once
# ----------------------------------------------------------------------------------------------

class _StopForward(Exception):
    """Raised from a hook once the wanted output is captured, to skip the rest of the network."""


def _input_shape(input_size) -> tuple[int, int, int]:
    """``(C, H, W)`` from ``(C, H, W)`` or ``(H, W)`` (then 3 channels, an RGB image)."""
    size = tuple(input_size)
    if len(size) == 2:
        size = (3, *size)
    if len(size) != 3:
        raise ValueError(f"input_size must be (C, H, W) or (H, W), got {input_size!r}")
    for value, name in zip(size, ("channels", "height", "width")):
        _check_int(value, f"input_size {name}", 1)
    return size


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32


def _find_module(model: nn.Module, layer: str) -> nn.Module:
    modules = dict(model.named_modules())
    if layer not in modules:
        close = difflib.get_close_matches(layer, list(modules), n=5)
        hint = f"; did you mean one of {close}?" if close else "; see dict(model.named_modules()).keys()"
        raise ValueError(f"model has no submodule named {layer!r}{hint}")
    return modules[layer]


class _EvalMode:
    """``model.eval()`` for the duration of a ``with`` block, then every module's own flag back."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.flags = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        return self.model

    def __exit__(self, *exc):
        for module, flag in self.flags:
            module.training = flag
        return False


def _capture_output(model: nn.Module, layer: str, x: torch.Tensor, mode: TorchFunctionMode):
    """Run ``model(x)`` under ``mode`` until ``layer`` has produced its output, and return that output."""
    target = _find_module(model, layer)
    captured = []

    def grab(module, inputs, output):
        captured.append(output)
        raise _StopForward

    handle = target.register_forward_hook(grab)
    try:
        with mode:
            model(x)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not captured:
        raise ValueError(f"submodule {layer!r} was not called in the forward pass")
    return captured[0]


def receptive_field(model: nn.Module, input_size, layer: str) -> int:
    """Theoretical receptive field, in input pixels, of one unit of the output of submodule ``layer``.

    ``layer`` is a name from ``model.named_modules()`` (``""`` is the whole model), ``input_size``
    is ``(C, H, W)`` or ``(H, W)`` (3 channels). One forward pass on a zero image (batch of 1, eval
    mode, no gradients) tags each tensor with its field: see :class:`_FieldTracker` for the rules.
    Branches and shortcuts take the largest field over their inputs. The value is not clipped to
    the image: VGG16 ``features.28`` (conv5_3) gives 196 and ``features.30`` (pool5) 212,
    AlexNet ``features.0`` gives 11. For non-square kernels the larger of the H and W fields is
    returned. If ``layer`` is called more than once, its first call counts. Only shapes matter, so
    a model built on the ``meta`` device works too (``with torch.device("meta"): vgg16()``), instantly.
    """
    device, dtype = _model_device_dtype(model)
    x = torch.zeros(1, *_input_shape(input_size), device=device, dtype=dtype)
    tracker = _FieldTracker()
    tracker.tag(x, _Field())
    with torch.no_grad(), _EvalMode(model):
        output = _capture_output(model, layer, x, tracker)
    field = tracker.field_of(output)
    if field is None:
        raise ValueError(f"the output of {layer!r} does not depend on the input image")
    return field.rf


# ----------------------------------------------------------------------------------------------
# Empirical receptive field
# ----------------------------------------------------------------------------------------------

_IDENTITY_OPS = {
    "relu", "relu6", "hardtanh", "hardswish", "hardsigmoid", "silu", "sigmoid", "tanh", "gelu",
    "leaky_relu", "elu", "selu", "celu", "mish", "softplus", "prelu",
    "batch_norm", "layer_norm", "group_norm", "instance_norm",
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
}


class _Linearize(TorchFunctionMode):
    """Turns a CNN into a linear network with positive weights, without touching its parameters.

    Convolutions and linear layers use constant weights ``1 / fan_in`` and no bias (each one
    averages its window), activations, normalizations and dropout become the identity (batch norm
    with identity statistics), and max pooling becomes average pooling with the same geometry. The
    gradient of an output unit with respect to the input is then a sum of positive path products:
    nonzero exactly on the pixels the unit is connected to.

    With ``one_channel=True`` every convolution and linear layer outputs a single channel (reading
    all channels it is given). In the linearized network all channels of a layer carry the same
    values, so this gives the same gradient map at a tiny fraction of the cost; only where branches
    are concatenated (Inception) are they averaged with equal weights instead of in proportion to
    their widths, which changes the map's shading but not where it is nonzero.
    """

    def __init__(self, dtype: torch.dtype, one_channel: bool = False):
        super().__init__()
        self.dtype = dtype
        self.one_channel = one_channel
        self.weights: dict[tuple, torch.Tensor] = {}

    def constant(self, shape: tuple[int, ...], device) -> torch.Tensor:
        """Weights of the given shape, each ``1 / fan_in`` (fan_in: all dims but the first)."""
        key = (tuple(shape), device)
        if key not in self.weights:
            self.weights[key] = torch.full(shape, 1.0 / math.prod(shape[1:]), dtype=self.dtype, device=device)
        return self.weights[key]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _op_name(func)
        if name in _IDENTITY_OPS:
            return args[0] if args else kwargs["input"]
        if name == "conv2d":
            x, weight = args[0], _arg(args, kwargs, 1, "weight")
            groups = _arg(args, kwargs, 6, "groups", 1)
            shape = tuple(weight.shape)
            if self.one_channel:
                shape, groups = (1, x.shape[1], *shape[2:]), 1
            return F.conv2d(x, self.constant(shape, x.device), None, _arg(args, kwargs, 3, "stride", 1),
                            _arg(args, kwargs, 4, "padding", 0), _arg(args, kwargs, 5, "dilation", 1), groups)
        if name == "linear":
            x, weight = args[0], _arg(args, kwargs, 1, "weight")
            shape = (1, x.shape[-1]) if self.one_channel else tuple(weight.shape)
            return F.linear(x, self.constant(shape, x.device))
        if name in {"max_pool2d", "max_pool2d_with_indices"}:
            if _pair_arg(_arg(args, kwargs, 4, "dilation", 1), 1) != (1, 1) or _arg(args, kwargs, 6, "return_indices"):
                raise NotImplementedError("dilated max pooling or return_indices=True is not supported here")
            kernel = _arg(args, kwargs, 1, "kernel_size")
            stride = _arg(args, kwargs, 2, "stride") or kernel
            return F.avg_pool2d(args[0], kernel, stride, _arg(args, kwargs, 3, "padding", 0),
                                bool(_arg(args, kwargs, 5, "ceil_mode", False)), True)
        if name in {"adaptive_max_pool2d", "adaptive_max_pool2d_with_indices"}:
            if _arg(args, kwargs, 2, "return_indices"):
                raise NotImplementedError("adaptive max pooling with return_indices=True is not supported here")
            return F.adaptive_avg_pool2d(args[0], _arg(args, kwargs, 1, "output_size"))
        return func(*args, **kwargs)


def _input_gradient(model: nn.Module, input_shape, layer: str, one_channel: bool) -> torch.Tensor:
    """``|d unit / d input|`` summed over input channels (H x W, float64) for the centre unit of ``layer``."""
    device, _ = _model_device_dtype(model)
    channels = 1 if one_channel else input_shape[0]
    x = torch.ones(1, channels, *input_shape[1:], device=device, dtype=torch.float64, requires_grad=True)
    with torch.enable_grad(), _EvalMode(model):
        output = _capture_output(model, layer, x, _Linearize(torch.float64, one_channel))
    output = [t for t in tree_flatten(output)[0] if isinstance(t, torch.Tensor)][0]
    if not output.requires_grad:
        raise ValueError(f"the output of {layer!r} does not depend on the input image")
    if output.dim() == 4:
        unit = output[0, :, output.shape[-2] // 2, output.shape[-1] // 2].sum()
    else:
        unit = output[0].sum()
    (grad,) = torch.autograd.grad(unit, x)
    return grad[0].abs().sum(dim=0).detach()


def _nonzero_extent(mask: torch.Tensor) -> tuple[int, int, int, int]:
    """First and last row, first and last column where a 2-D boolean mask is True."""
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def empirical_receptive_field(model: nn.Module, input_size, layer: str,
                              one_channel: bool = True) -> tuple[int, torch.Tensor]:
    """Measure the receptive field of the centre unit of ``layer`` from input gradients.

    Returns ``(side, grad_map)``: ``side`` is the side, in input pixels, of the bounding box of
    the pixels with a nonzero gradient (the larger of its height and width), and ``grad_map`` is
    the ``H x W`` gradient magnitude (summed over input channels, float64, scaled so its maximum
    is 1), ready to draw over an image.

    The output is summed over channels at the centre position ``(H_out // 2, W_out // 2)`` (over
    everything when ``layer`` has no spatial grid). So that *every* connected pixel gets a nonzero
    gradient, the forward pass runs in float64 through a linearized network: constant positive
    conv/linear weights, zero biases, identity activations, batch norm with identity statistics
    and max pooling replaced by average pooling with the same geometry (see :class:`_Linearize`,
    which swaps the ops on the fly so the model itself is neither changed nor copied). The model is
    put in eval mode for the call and restored afterwards.

    ``one_channel=True`` (default) runs that linearized network one channel wide, which is exact
    for the side and hundreds of times faster (VGG16 pool5 at 448 x 448 in well under a second);
    if the model cannot run that way (hard-coded channel counts, channel splits) it falls back to
    full width, as ``one_channel=False`` does.

    Zero padding clips the measured field where it meets the image border, so pick ``input_size``
    comfortably larger than the theoretical field (about twice it); a warning is issued when the
    nonzero region touches the border.
    """
    shape = _input_shape(input_size)
    _find_module(model, layer)
    if _model_device_dtype(model)[0].type == "meta":
        raise ValueError("empirical_receptive_field needs real tensors; the model is on the meta device")
    grad_map = None
    if one_channel:
        try:
            grad_map = _input_gradient(model, shape, layer, one_channel=True)
        except (RuntimeError, IndexError, ValueError):
            grad_map = None
    if grad_map is None:
        grad_map = _input_gradient(model, shape, layer, one_channel=False)
    mask = grad_map > 0
    if not mask.any():
        raise ValueError(f"no input pixel influences the centre unit of {layer!r}")
    top, bottom, left, right = _nonzero_extent(mask)
    if top == 0 or left == 0 or bottom == mask.shape[0] - 1 or right == mask.shape[1] - 1:
        warnings.warn(f"the measured receptive field of {layer!r} touches the image border and is clipped; "
                      "use a larger input_size (about twice the theoretical field)", stacklevel=2)
    side = max(bottom - top + 1, right - left + 1)
    return side, grad_map / grad_map.max()


# ----------------------------------------------------------------------------------------------
# Per-layer summary
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerRow:
    """One call of a module in a forward pass of one image.

    Rows are for leaf modules (modules without children), plus container rows (``leaf=False``):
    one per call of a container that holds parameters of its own (not through a child), such as
    ConvNeXt's layer scale on ``CNBlock`` or a ViT's class token, or that uses parameters of a
    child it never calls (Swin's ``qkv`` and ``proj``). Its ``params`` are those no earlier row
    counted. A container row comes after the rows of its children; it has ``macs == 0`` and
    ``activations == 0``, since its output is computed in its own ``forward`` from its children's
    outputs (as ``out + identity`` in a ResNet block, which no row counts either).

    ``params``: learnable scalars the module holds itself (0 on the second and later calls of a
    shared module); ``macs``: multiply-accumulates (convolutions and linear layers only, else 0);
    ``activations``: elements of the output for one image; ``rf`` / ``jump``: receptive field and
    jump of its output units, in input pixels (None if the output does not depend on the image).
    """

    name: str
    layer_type: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    activations: int
    rf: int | None
    jump: int | None
    inplace: bool = False
    call: int = 1
    leaf: bool = True


def _module_macs(module: nn.Module, inputs, output: torch.Tensor) -> int:
    """MACs of one call for one image (batch of 1): conv via :func:`conv_macs`, linear ``in * out`` per row."""
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        in_spatial = tuple(inputs[0].shape[2:])
        return conv_macs(module.out_channels, module.in_channels, module.kernel_size, in_spatial, module.groups)
    if isinstance(module, nn.modules.conv._ConvNd):
        return conv_macs(module.in_channels, module.out_channels, module.kernel_size,
                         tuple(output.shape[2:]), module.groups)
    if isinstance(module, nn.Linear):
        rows = output.numel() // module.out_features
        return linear_macs(module.in_features, module.out_features) * rows
    return 0


def _fmt_int(value) -> str:
    return "-" if value is None else f"{value:,}"


class LayerSummary:
    """Per-layer table of a CNN for one image: shapes, parameters, MACs, activations, receptive fields.

    Iterate over it or index it (``s[0]``, ``s["features.0"]``) to get :class:`LayerRow` objects;
    ``print(s)`` shows an aligned table and Jupyter renders it as HTML.
    """

    COLUMNS = ("Layer", "Type", "Output shape", "Params", "MACs", "Activations", "RF", "Jump")

    def __init__(self, rows: Sequence[LayerRow], input_size: tuple[int, int, int]):
        self.rows = list(rows)
        self.input_size = tuple(input_size)

    def __iter__(self) -> Iterator[LayerRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        if isinstance(key, str):
            return self.row(key)
        return self.rows[key]

    def row(self, name: str) -> LayerRow:
        """The first row of the module called ``name``."""
        for row in self.rows:
            if row.name == name:
                return row
        close = difflib.get_close_matches(name, [r.name for r in self.rows], n=5)
        raise KeyError(f"no layer named {name!r}" + (f"; did you mean one of {close}?" if close else ""))

    @property
    def total_params(self) -> int:
        """Learnable scalars of the modules that ran, each parameter counted once.

        Parameters held directly by a container are in its row (see :class:`LayerRow`). Modules
        the forward pass never calls are not counted (GoogLeNet's and Inception v3's auxiliary
        classifiers run in training mode only).
        """
        return sum(row.params for row in self.rows)

    @property
    def total_macs(self) -> int:
        """Multiply-accumulates for one image (convolutions and linear layers); FLOPs = 2x this."""
        return sum(row.macs for row in self.rows)

    @property
    def total_activations(self) -> int:
        """Output elements of all leaf layers for one image, in-place ones included."""
        return sum(row.activations for row in self.rows)

    def activation_memory_bytes(self, dtype: torch.dtype = torch.float32, exclude_inplace: bool = False) -> int:
        """Bytes of the leaf-layer outputs for one image: see :func:`activation_memory_bytes`."""
        return activation_memory_bytes(self, dtype, exclude_inplace)

    def _table(self) -> list[tuple[str, ...]]:
        return [(r.name or "(model)", r.layer_type, str(list(r.output_shape)), _fmt_int(r.params), _fmt_int(r.macs),
                 _fmt_int(r.activations), _fmt_int(r.rf), _fmt_int(r.jump)) for r in self.rows]

    def _footer(self) -> str:
        return (f"Input: {list(self.input_size)} | params: {self.total_params:,} | "
                f"MACs: {self.total_macs:,} ({self.total_macs / 1e9:.3f} GMACs = {2 * self.total_macs / 1e9:.3f} "
                f"GFLOPs) | activations: {self.total_activations:,} "
                f"({self.activation_memory_bytes() / 2**20:.1f} MiB in fp32)")

    def __str__(self) -> str:
        body = self._table()
        widths = [max(len(h), *(len(cells[i]) for cells in body)) if body else len(h)
                  for i, h in enumerate(self.COLUMNS)]
        left_aligned = 2  # name and type columns; numbers are right-aligned

        def line(cells):
            return "  ".join(c.ljust(w) if i < left_aligned else c.rjust(w)
                             for i, (c, w) in enumerate(zip(cells, widths)))

        rule = "-" * len(line(self.COLUMNS))
        return "\n".join([line(self.COLUMNS), rule, *(line(cells) for cells in body), rule, self._footer()])

    def __repr__(self) -> str:
        return f"LayerSummary({len(self.rows)} rows, params={self.total_params:,}, macs={self.total_macs:,})"

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.COLUMNS)
        body = "".join(
            "<tr>" + "".join(f'<td style="text-align:{"left" if i < 2 else "right"}">{html.escape(c)}</td>'
                             for i, c in enumerate(cells)) + "</tr>"
            for cells in self._table())
        return (f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
                f"<p>{html.escape(self._footer())}</p>")


def activation_memory_bytes(summary: LayerSummary, dtype: torch.dtype = torch.float32,
                            exclude_inplace: bool = False) -> int:
    """Bytes taken by the outputs of all leaf layers for one image: ``activations x bytes per element``.

    ``dtype`` sets the element size (fp32: 4 bytes, fp16/bf16: 2). This counts each leaf layer's
    output once and nothing else: not the input image, weights, gradients or optimizer state, and
    not the intermediate tensors inside non-leaf code (e.g. ``out + identity`` in a ResNet block).
    It is roughly what training keeps alive for the backward pass; inference can free most of it.
    An in-place layer (``ReLU(inplace=True)``) writes into its input's memory: pass
    ``exclude_inplace=True`` to skip those rows.
    """
    itemsize = torch.empty((), dtype=dtype).element_size()
    return itemsize * sum(row.activations for row in summary if not (exclude_inplace and row.inplace))


class _ParameterUse(TorchFunctionMode):
    """Records which parameters a forward pass hands to torch functions (by ``id``).

    A container may use a child's weights without calling the child: torchvision's Swin calls
    ``F.linear(x, self.qkv.weight, ...)`` and ``nn.MultiheadAttention`` passes ``out_proj.weight``
    to a functional kernel, so no hook of ``qkv`` or ``out_proj`` ever fires.
    """

    def __init__(self):
        super().__init__()
        self.used: set[int] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.used.update(id(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, nn.Parameter))
        return func(*args, **kwargs)


def summary(model: nn.Module, input_size) -> LayerSummary:
    """One forward pass of a zero image (batch of 1, eval mode, no gradients) to tabulate each layer.

    ``input_size`` is ``(C, H, W)`` or ``(H, W)`` (3 channels). Rows follow execution order, one
    per call of a module without children (a module called twice gives two rows), plus container
    rows (``leaf=False``, see :class:`LayerRow`) for the parameters no leaf call accounts for:
    those a container holds itself (ConvNeXt's layer scale, a ViT's class token) and those of
    children it uses without calling them (Swin's attention projections). So ``total_params`` is
    every parameter of the modules that took part, each once. MACs count convolutions and linear
    layers called as modules, which is what ``FlopCounterMode`` counts too for CNNs (its FLOPs are
    2x these MACs); matrix products written in a container's ``forward`` (attention, Swin's
    functional projections) are not counted.
    Works on a model built on the ``meta`` device (shapes only, no memory, instant).
    """
    shape = _input_shape(input_size)
    device, dtype = _model_device_dtype(model)
    x = torch.zeros(1, *shape, device=device, dtype=dtype)
    tracker, use = _FieldTracker(), _ParameterUse()
    tracker.tag(x, _Field())
    rows: list[LayerRow] = []
    calls: dict[nn.Module, int] = {}
    seen_params: set[int] = set()

    def fresh_params(module: nn.Module, leaf: bool) -> list[nn.Parameter] | None:
        """Parameters this call adds to the table, or None when a container call gets no row."""
        if leaf:
            fresh = [p for p in module.parameters(recurse=False) if id(p) not in seen_params]
        else:
            fresh = [p for p in module.parameters() if id(p) not in seen_params and id(p) in use.used]
            if not fresh and next(module.parameters(recurse=False), None) is None:
                return None
        seen_params.update(id(p) for p in fresh)
        return fresh

    def record(name: str, leaf: bool) -> Callable:
        def hook(module, inputs, output):
            calls[module] = calls.get(module, 0) + 1
            fresh = fresh_params(module, leaf)
            if fresh is None:
                return
            tensors = [t for t in tree_flatten(output)[0] if isinstance(t, torch.Tensor)]
            field = tracker.field_of(tensors) if tensors else None
            rows.append(LayerRow(
                name=name,
                layer_type=type(module).__name__,
                output_shape=tuple(tensors[0].shape[1:]) if tensors else (),
                params=sum(p.numel() for p in fresh),
                macs=_module_macs(module, inputs, tensors[0]) if tensors and leaf else 0,
                activations=sum(t.numel() for t in tensors) if leaf else 0,
                rf=field.rf if field else None,
                jump=field.jump if field else None,
                inplace=bool(getattr(module, "inplace", False)),
                call=calls[module],
                leaf=leaf,
            ))
        return hook

    handles = [module.register_forward_hook(record(name, next(module.children(), None) is None))
               for name, module in model.named_modules()]
    try:
        with torch.no_grad(), _EvalMode(model), tracker, use:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return LayerSummary(rows, shape)
