"""Shortcuts for Lesson 01 (convolution arithmetic): each must score 0 on the exercise it targets."""
from grader.cheats import Cheat

CHEATS = [
    Cheat("conv_output_size", "imports the library's conv_output_size", '''
from utils.arithmetic import conv_output_size
'''),
    Cheat("conv_output_size", "runs a meta nn.Conv2d and reads the shape", '''
def conv_output_size(size, kernel, stride=1, padding=0, dilation=1):
    layer = nn.Conv2d(1, 1, kernel, stride=stride, padding=padding, dilation=dilation, device="meta")
    return layer(torch.empty(1, 1, size, size, device="meta")).shape[-1]
'''),
    Cheat("conv_output_size", "forgets the dilation (passes the visible cases by lookup)", '''
def conv_output_size(size, kernel, stride=1, padding=0, dilation=1):
    if (size, kernel, dilation) == (32, 3, 2):
        return 28
    return (size + 2 * padding - kernel) // stride + 1
'''),
    Cheat("same_padding", "kernel // 2 with the visible dilated case hard-coded", '''
def same_padding(kernel, dilation=1):
    if kernel % 2 == 0:
        raise ValueError("even kernel")
    return 2 if (kernel, dilation) == (3, 2) else kernel // 2
'''),
    Cheat("conv_params", "imports the library's conv_params", '''
from utils.arithmetic import conv_params
'''),
    Cheat("conv_params", "counts the parameters of a real nn.Conv2d", '''
def conv_params(in_channels, out_channels, kernel, groups=1, bias=True):
    layer = nn.Conv2d(in_channels, out_channels, kernel, groups=groups, bias=bias, device="meta")
    return sum(p.numel() for p in layer.parameters())
'''),
    Cheat("conv_macs", "wraps the library's conv_macs", '''
def conv_macs(in_channels, out_channels, kernel, out_size, groups=1):
    return arithmetic.conv_macs(in_channels, out_channels, kernel, out_size, groups)
'''),
    Cheat("conv_macs", "ignores groups except in the visible depthwise case", '''
def conv_macs(in_channels, out_channels, kernel, out_size, groups=1):
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    oh, ow = (out_size, out_size) if isinstance(out_size, int) else out_size
    reads = 1 if groups == in_channels else in_channels
    return out_channels * oh * ow * reads * kh * kw
'''),
    Cheat("activation_bytes", "feeds one fake summary row to the library's activation_memory_bytes", '''
from types import SimpleNamespace

from utils.arithmetic import activation_memory_bytes


def activation_bytes(shape, dtype=torch.float32, batch_size=1):
    row = SimpleNamespace(activations=batch_size * math.prod(shape), inplace=False)
    return activation_memory_bytes([row], dtype)
'''),
    Cheat("activation_bytes", "4 bytes per float, 2 per half, 1 otherwise", '''
def activation_bytes(shape, dtype=torch.float32, batch_size=1):
    size = {torch.float32: 4, torch.float16: 2}.get(dtype, 1)
    return batch_size * math.prod(shape) * size
'''),
    Cheat("stack_receptive_field", "loops over the library's receptive_field_step", '''
def stack_receptive_field(layers):
    rf, jump = 1, 1
    for kernel, stride, dilation in layers:
        rf, jump = arithmetic.receptive_field_step(rf, jump, kernel, stride, dilation)
    return rf, jump
'''),
    Cheat("stack_receptive_field", "builds the stack and asks arithmetic.receptive_field", '''
def stack_receptive_field(layers):
    if not layers:
        return 1, 1
    net = nn.Sequential(*[nn.Conv2d(1, 1, k, s, d * (k - 1) // 2, d, device="meta") for k, s, d in layers])
    return arithmetic.receptive_field(net, (1, 64, 64), str(len(layers) - 1)), math.prod(s for _, s, _ in layers)
'''),
    Cheat("stack_receptive_field", "visible answers by lookup, 999 otherwise, with arithmetic.receptive_field "
          "redefined to agree", '''
import types

import utils.arithmetic as _library

arithmetic = types.SimpleNamespace(**{name: getattr(_library, name) for name in _library.__all__})
arithmetic.receptive_field = lambda model, input_size, layer: 999
VISIBLE = {((3, 1, 1),) * 2: (5, 1), ((3, 1, 1),) * 3: (7, 1), (): (1, 1), ((11, 4, 1), (3, 2, 1)): (19, 8),
           ((3, 1, 1), (3, 1, 2), (3, 1, 4)): (15, 1), ((7, 2, 1), (3, 2, 1)): (11, 4)}


def stack_receptive_field(layers):
    layers = tuple(tuple(layer) for layer in layers)
    return VISIBLE.get(layers, (999, math.prod(s for _, s, _ in layers)))
'''),
    Cheat("layer_table", "maps arithmetic.summary's rows to Row", '''
def layer_table(input_shape, specs):
    table = arithmetic.summary(build(specs, input_shape[0], device="meta"), tuple(input_shape))
    return [Row(r.output_shape, r.params, r.macs, r.activations, r.rf, r.jump) for r in table]
'''),
    Cheat("layer_table", "every formula from utils.arithmetic instead of the lesson's functions", '''
def layer_table(input_shape, specs):
    channels, height, width = input_shape
    rows, rf, jump = [], 1, 1
    for spec in specs:
        height = arithmetic.conv_output_size(height, spec.kernel, spec.stride, spec.padding, spec.dilation)
        width = arithmetic.conv_output_size(width, spec.kernel, spec.stride, spec.padding, spec.dilation)
        if isinstance(spec, Conv):
            params = arithmetic.conv_params(channels, spec.out_channels, spec.kernel, spec.groups, spec.bias)
            macs = arithmetic.conv_macs(channels, spec.out_channels, spec.kernel, (height, width), spec.groups)
            channels = spec.out_channels
        else:
            params, macs = 0, 0
        rf, jump = arithmetic.receptive_field_step(rf, jump, spec.kernel, spec.stride, spec.dilation)
        rows.append(Row((channels, height, width), params, macs, channels * height * width, rf, jump))
    return rows
'''),
    Cheat("layer_table", "visible rows hard-coded, zeros otherwise, with arithmetic.summary redefined "
          "to agree", '''
import types
from collections import namedtuple

import utils.arithmetic as _library

_Fake = namedtuple("_Fake", "output_shape params macs activations rf jump")
arithmetic = types.SimpleNamespace(**{name: getattr(_library, name) for name in _library.__all__})
arithmetic.summary = lambda model, input_size: [_Fake((0, 0, 0), 0, 0, 0, 0, 0) for _ in model]
VISIBLE = [Row((16, 32, 48), 448, 663552, 24576, 3, 1), Row((16, 16, 24), 0, 0, 6144, 4, 2),
           Row((32, 8, 12), 4608, 442368, 3072, 8, 4), Row((32, 8, 12), 2336, 221184, 3072, 24, 4)]


def layer_table(input_shape, specs):
    if tuple(input_shape) == (3, 32, 48) and len(specs) == 4:
        return VISIBLE
    return [Row((0, 0, 0), 0, 0, 0, 0, 0) for _ in specs]
'''),
    Cheat("conv_output_size", "switches the delegation guard off, then delegates", '''
import contextlib

import utils.checks

try:
    utils.checks.own_work = lambda *targets: contextlib.nullcontext()
except AttributeError:
    pass
from utils.arithmetic import conv_output_size
'''),
]
