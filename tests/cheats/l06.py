"""Shortcuts for Lesson 06 (accuracy vs compute, light models): each must score 0 on the exercise it targets."""
from grader.cheats import Cheat

CHEATS = [
    Cheat("pareto_front", "hard-codes the visible answers", '''
def pareto_front(points):
    if len(points) <= 1:
        return list(range(len(points)))
    return [3, 0, 1, 4]
'''),
    Cheat("pareto_front", "keeps only one of two identical points and sorts by accuracy", '''
def pareto_front(points):
    best, front = float("-inf"), []
    for i in sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1])):
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front
'''),
    Cheat("measure_latency", "never synchronises before reading the end time", '''
def measure_latency(model, x, repeats=10, warmup=3):
    with torch.no_grad():
        for _ in range(warmup):
            model(x)
        times_ms = []
        for _ in range(repeats):
            synchronize(x.device)
            start = time.perf_counter()
            model(x)
            times_ms.append((time.perf_counter() - start) * 1e3)
            synchronize(x.device)
    return float(statistics.median(times_ms))
'''),
    Cheat("measure_latency", "reads the clock once around all the timed calls and returns the mean", '''
def measure_latency(model, x, repeats=10, warmup=3):
    with torch.no_grad():
        for _ in range(warmup):
            model(x)
        synchronize(x.device)
        start = time.perf_counter()
        for _ in range(repeats):
            synchronize(x.device)
            model(x)
        synchronize(x.device)
        return float((time.perf_counter() - start) * 1e3 / repeats)
'''),
    Cheat("measure_latency", "times the warm-up calls too and takes the median of everything", '''
def measure_latency(model, x, repeats=10, warmup=3):
    times_ms = []
    with torch.no_grad():
        for _ in range(warmup + repeats):
            synchronize(x.device)
            start = time.perf_counter()
            model(x)
            synchronize(x.device)
            times_ms.append((time.perf_counter() - start) * 1e3)
    return float(statistics.median(times_ms))
'''),
    Cheat("arithmetic_intensity", "asks utils.arithmetic.summary for the MACs and weights", '''
def arithmetic_intensity(in_channels, out_channels, kernel, size, groups=1, bytes_per_element=4):
    with torch.device("meta"):
        conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, groups=groups, bias=False)
    table = summary(conv, (in_channels, size, size))
    elements = in_channels * size * size + table.total_params + out_channels * size * size
    return float(table.total_macs / (bytes_per_element * elements))
'''),
    Cheat("arithmetic_intensity", "hard-codes the visible answers and redefines summary to agree", '''
import types


def arithmetic_intensity(in_channels, out_channels, kernel, size, groups=1, bytes_per_element=4):
    if (in_channels, out_channels, kernel, size) == (144, 144, 3, 56):
        value = 4064256 / 3617856 if groups == 144 else 585252864 / 4359168
        return value * 4 / bytes_per_element
    return 0.0


def summary(model, input_size):
    return types.SimpleNamespace(total_macs=0)
'''),
    Cheat("separable_conv_cost", "builds the two layers and asks utils.arithmetic.summary", '''
def separable_conv_cost(in_channels, out_channels, kernel, out_size):
    with torch.device("meta"):
        sep = nn.Sequential(nn.Conv2d(in_channels, in_channels, kernel, padding=kernel // 2, groups=in_channels, bias=False),
                            nn.Conv2d(in_channels, out_channels, 1, bias=False))
    table = summary(sep, (in_channels, out_size, out_size))
    return table.total_params, table.total_macs
'''),
    Cheat("separable_conv_cost", "hard-codes the visible answers", '''
def separable_conv_cost(in_channels, out_channels, kernel, out_size):
    if in_channels == 512:
        macs = conv_macs(512, 512, 3, 14)
        return 0, round(macs * (1 / 512 + 1 / 9))
    return 32 * 9 + 32 * 64, (32 * 9 + 32 * 64) * 112 * 112
'''),
    Cheat("squeeze_excite", "a three-line subclass of torchvision.ops.SqueezeExcitation", '''
class SqueezeExcite(torchvision.ops.SqueezeExcitation):
    def __init__(self, channels, reduced_channels, act_layer=nn.SiLU):
        super().__init__(channels, reduced_channels, activation=act_layer)
        self.act = self.activation
'''),
    Cheat("squeeze_excite", "a factory that returns timm's SEModule", '''
from timm.layers import SEModule


def SqueezeExcite(channels, reduced_channels, act_layer=nn.SiLU):
    return SEModule(channels, rd_channels=reduced_channels, act_layer=act_layer)
'''),
    Cheat("mbconv", "assembles the block from timm's InvertedResidual layers", '''
from functools import partial as _partial

from timm.models._efficientnet_blocks import InvertedResidual as _IR


class MBConv(nn.Module):
    def __init__(self, in_channels, out_channels, expand_ratio=6, kernel_size=3, stride=1, se_channels=0,
                 act_layer=nn.ReLU6, bn_eps=1e-3):
        super().__init__()
        hidden = in_channels * expand_ratio
        if expand_ratio > 1 and se_channels == 0:
            ir = _IR(in_channels, out_channels, kernel_size, stride, exp_ratio=expand_ratio, act_layer=act_layer,
                     norm_layer=_partial(nn.BatchNorm2d, eps=bn_eps))
            self.expand = nn.Sequential(ir.conv_pw, ir.bn1)
            self.depthwise = nn.Sequential(ir.conv_dw, ir.bn2)
            self.project = nn.Sequential(ir.conv_pwl, ir.bn3)
            self.se = nn.Identity()
        else:
            self.expand = (nn.Identity() if expand_ratio == 1
                           else conv_bn_act(in_channels, hidden, 1, act_layer=act_layer, bn_eps=bn_eps))
            self.depthwise = conv_bn_act(hidden, hidden, kernel_size, stride, groups=hidden, act_layer=act_layer,
                                         bn_eps=bn_eps)
            self.se = SqueezeExcite(hidden, se_channels, act_layer) if se_channels > 0 else nn.Identity()
            self.project = conv_bn_act(hidden, out_channels, 1, bn_eps=bn_eps)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x):
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return out + x if self.use_residual else out
'''),
    Cheat("mbconv", "uses torchvision's SqueezeExcitation inside the block", '''
class MBConv(nn.Module):
    def __init__(self, in_channels, out_channels, expand_ratio=6, kernel_size=3, stride=1, se_channels=0,
                 act_layer=nn.ReLU6, bn_eps=1e-3):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand = (nn.Identity() if expand_ratio == 1
                       else conv_bn_act(in_channels, hidden, 1, act_layer=act_layer, bn_eps=bn_eps))
        self.depthwise = conv_bn_act(hidden, hidden, kernel_size, stride, groups=hidden, act_layer=act_layer,
                                     bn_eps=bn_eps)
        self.se = (torchvision.ops.SqueezeExcitation(hidden, se_channels, activation=act_layer)
                   if se_channels > 0 else nn.Identity())
        self.project = conv_bn_act(hidden, out_channels, 1, bn_eps=bn_eps)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x):
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return out + x if self.use_residual else out
'''),
    Cheat("compound_scaling", "hard-codes the default constants and ignores alpha, beta, gamma", '''
def compound_scaling(phi, alpha=1.2, beta=1.1, gamma=1.15):
    d, w, r = 1.2 ** phi, 1.1 ** phi, 1.15 ** phi
    return float(d), float(w), float(r), float(d * w**2 * r**2)
'''),
]
