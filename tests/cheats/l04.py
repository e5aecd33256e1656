"""Shortcuts for Lesson 04 (GoogLeNet and Inception): each must score 0 on the exercise it targets."""
from grader.cheats import Cheat

# Shared by the factorised_conv cheats that search the designs: prepended to their code.
_CHEAPEST = '''

def _cheapest_layers(c_in, c_mid, c_out, n):
    """The cheapest of the four 1xn/nx1 designs, as (in, out, kernel, padding) rows."""
    designs = []
    for front in (False, True):
        for back in (False, True):
            layers, width = [], c_in
            if front:
                layers.append((width, c_mid, 1, 0))
                width = c_mid
            layers += [(width, c_mid, (1, n), (0, n // 2)), (c_mid, c_mid if back else c_out, (n, 1), (n // 2, 0))]
            if back:
                layers.append((c_mid, c_out, 1, 0))
            designs.append(layers)
    return min(designs, key=lambda layers: sum(basic_conv_params(a, b, k) for a, b, k, _ in layers))
'''

# A correct bottleneck_macs, for the cheats that target widest_reduction only.
_BOTTLENECK_MACS = '''
def bottleneck_macs(size, c_in, c_out, kernel, reduce_to=None):
    if reduce_to is None:
        return conv_macs(c_in, c_out, kernel, size)
    return conv_macs(c_in, reduce_to, 1, size) + conv_macs(reduce_to, c_out, kernel, size)


'''

CHEATS = [
    Cheat("bottleneck_macs", "builds the layers and asks utils.arithmetic.summary (both functions)", '''
from utils.arithmetic import summary as count_layers


def bottleneck_macs(size, c_in, c_out, kernel, reduce_to=None):
    with torch.device("meta"):
        if reduce_to is None:
            model = nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2))
        else:
            model = nn.Sequential(nn.Conv2d(c_in, reduce_to, 1), nn.Conv2d(reduce_to, c_out, kernel, padding=kernel // 2))
    return count_layers(model, (c_in, size, size)).total_macs


def widest_reduction(size, c_in, c_out, kernel, budget):
    fits = [r for r in range(1, c_in + 1) if bottleneck_macs(size, c_in, c_out, kernel, r) <= budget]
    return max(fits) if fits else None
'''),
    Cheat("bottleneck_macs", "hard-codes the visible answers and redefines `arithmetic` to agree", '''
import types


def bottleneck_macs(size, c_in, c_out, kernel, reduce_to=None):
    if (size, c_in, c_out, kernel) == (28, 192, 32, 5):
        return 28 * 28 * 32 * 192 * 25 if reduce_to is None else 28 * 28 * 16 * 192 + 28 * 28 * 32 * 16 * 25
    return 0


def widest_reduction(size, c_in, c_out, kernel, budget):
    return 154 if budget > 1_000_000 else None


arithmetic = types.SimpleNamespace(summary=lambda model, size: types.SimpleNamespace(total_macs=0))
'''),
    Cheat("bottleneck_macs", "widest_reduction forgets the cost of the 1x1 layer itself", _BOTTLENECK_MACS + '''
def widest_reduction(size, c_in, c_out, kernel, budget):
    width = min(budget // (size * size * kernel * kernel * c_out), c_in)
    return int(width) if width >= 1 else None
'''),
    Cheat("bottleneck_macs", "widest_reduction does not cap the width at c_in", _BOTTLENECK_MACS + '''
def widest_reduction(size, c_in, c_out, kernel, budget):
    width = budget // (size * size * (c_in + kernel * kernel * c_out))
    return int(width) if width >= 1 else None
'''),
    Cheat("inception", "subclasses torchvision's GoogLeNet Inception and swaps branch 3", '''
from torchvision.models.googlenet import Inception as _TvInception


class Inception(_TvInception):
    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, big_kernel=5):
        super().__init__(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)
        self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5x5red, kernel_size=1),
                                     BasicConv2d(ch5x5red, ch5x5, kernel_size=big_kernel, padding=big_kernel // 2))
'''),
    Cheat("inception", "borrows the branches of a torchvision Inception inside an nn.Module", '''
from torchvision.models.googlenet import Inception as _TvInception


class Inception(nn.Module):
    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, big_kernel=5):
        super().__init__()
        tv = _TvInception(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)
        self.branch1, self.branch2, self.branch4 = tv.branch1, tv.branch2, tv.branch4
        self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5x5red, kernel_size=1),
                                     BasicConv2d(ch5x5red, ch5x5, kernel_size=big_kernel, padding=big_kernel // 2))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)
'''),
    Cheat("inception", "ignores big_kernel (always 3x3, like torchvision) and redefines basic_conv_params to agree", '''
class Inception(nn.Module):
    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, big_kernel=5):
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3red, kernel_size=1),
                                     BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5x5red, kernel_size=1),
                                     BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1))
        self.branch3[1].conv.kernel_size = (big_kernel, big_kernel)   # looks right, computes a 3x3
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(in_channels, pool_proj, kernel_size=1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)


def basic_conv_params(c_in, c_out, kernel):
    return conv_params(c_in, c_out, 3 if kernel in (5, 7) else kernel, bias=False) + 2 * c_out
'''),
    Cheat("head_params", "builds the head and asks utils.arithmetic.summary", '''
from utils.arithmetic import summary as count_layers


def head_params(channels, size, num_classes, global_pool=True):
    with torch.device("meta"):
        head = nn.Sequential(nn.Flatten(), nn.Linear(channels if global_pool else channels * size * size, num_classes))
    return count_layers(head, (channels, 1, 1) if global_pool else (channels, size, size)).total_params


def largest_flatten_map(channels, num_classes, budget):
    room = budget // num_classes - 1
    return math.isqrt(room // channels) if room >= channels else 0
'''),
    Cheat("head_params", "hard-codes the visible answers", '''
def head_params(channels, size, num_classes, global_pool=True):
    return 1_025_000 if global_pool else 50_177_000


def largest_flatten_map(channels, num_classes, budget):
    return 7 if budget >= 50_177_000 else 6
'''),
    Cheat("head_params", "largest_flatten_map ignores the biases", '''
def head_params(channels, size, num_classes, global_pool=True):
    return linear_params(channels if global_pool else channels * size * size, num_classes)


def largest_flatten_map(channels, num_classes, budget):
    return math.isqrt(budget // (num_classes * channels))
'''),
    Cheat("head_params", "largest_flatten_map with a floating-point square root", '''
def head_params(channels, size, num_classes, global_pool=True):
    return linear_params(channels if global_pool else channels * size * size, num_classes)


def largest_flatten_map(channels, num_classes, budget):
    return int(math.sqrt(max(0.0, (budget / num_classes - 1) / channels)))
'''),
    Cheat("googlenet_loss", "ignores the auxiliary outputs unless they are the visible pair", '''
def googlenet_loss(outputs, target, aux_weight=0.3):
    if isinstance(outputs, torch.Tensor):
        return F.cross_entropy(outputs, target)
    loss = F.cross_entropy(outputs.logits, target)
    if abs(aux_weight - 0.3) < 1e-9 and outputs.aux_logits1 is not None:
        loss = loss + 0.3 * (F.cross_entropy(outputs.aux_logits1, target) + F.cross_entropy(outputs.aux_logits2, target))
    return loss
'''),
    Cheat("factorised_params", "builds the layers and asks utils.arithmetic.summary", '''
from utils.arithmetic import summary as count_layers


def factorised_params(channels, n, mode="asymmetric"):
    with torch.device("meta"):
        full = nn.Conv2d(channels, channels, n, bias=False)
        if mode == "3x3":
            fact = nn.Sequential(*[nn.Conv2d(channels, channels, 3, padding=1, bias=False) for _ in range((n - 1) // 2)])
        else:
            fact = nn.Sequential(nn.Conv2d(channels, channels, (1, n), padding=(0, n // 2), bias=False),
                                 nn.Conv2d(channels, channels, (n, 1), padding=(n // 2, 0), bias=False))
    size = (channels, n, n)
    return count_layers(full, size).total_params, count_layers(fact, size).total_params


def smallest_kernel_for_saving(saving, mode="asymmetric"):
    n = 3
    while (1 - (lambda f: f[1] / f[0])(factorised_params(1, n, mode))) < saving:
        n += 2
    return n
'''),
    Cheat("factorised_params", "hard-codes the visible answers", '''
def factorised_params(channels, n, mode="asymmetric"):
    return (25 * 64 * 64, 18 * 64 * 64) if mode == "3x3" else (49 * 64 * 64, 14 * 64 * 64)


def smallest_kernel_for_saving(saving, mode="asymmetric"):
    return 9 if mode == "3x3" else 5
'''),
    Cheat("factorised_params", "smallest_kernel_for_saving rounds n up but forgets it must be odd", '''
def factorised_params(channels, n, mode="asymmetric"):
    full = conv_params(channels, channels, n, bias=False)
    if mode == "3x3":
        return full, (n - 1) // 2 * conv_params(channels, channels, 3, bias=False)
    return full, conv_params(channels, channels, (1, n), bias=False) + conv_params(channels, channels, (n, 1), bias=False)


def smallest_kernel_for_saving(saving, mode="asymmetric"):
    n = 3
    while (9 * (n - 1) / 2 if mode == "3x3" else 2 * n) > (1 - saving) * n * n:
        n += 1
    return n
'''),
    Cheat("factorised_conv", "always builds torchvision's 1x1 -> 1xn -> nx1 branch, whatever the budget", '''
def factorised_conv(c_in, c_mid, c_out, n, budget):
    return nn.Sequential(BasicConv2d(c_in, c_mid, kernel_size=1),
                         BasicConv2d(c_mid, c_mid, kernel_size=(1, n), padding=(0, n // 2)),
                         BasicConv2d(c_mid, c_out, kernel_size=(n, 1), padding=(n // 2, 0)))
'''),
    Cheat("factorised_conv", "stacks torchvision's Inception-v3 BasicConv2d", _CHEAPEST + '''
from torchvision.models.inception import BasicConv2d as _TvConv


def factorised_conv(c_in, c_mid, c_out, n, budget):
    best = _cheapest_layers(c_in, c_mid, c_out, n)
    return nn.Sequential(*[_TvConv(a, b, kernel_size=k, padding=p) for a, b, k, p in best])
'''),
    Cheat("factorised_conv", "the cheapest design, but no nonlinearity between the 1xn and the nx1", _CHEAPEST + '''
def factorised_conv(c_in, c_mid, c_out, n, budget):
    best = _cheapest_layers(c_in, c_mid, c_out, n)
    modules = []
    for a, b, k, p in best:
        modules += [nn.Conv2d(a, b, k, padding=p, bias=False), nn.BatchNorm2d(b, eps=0.001)]
        if k != (1, n):
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)
'''),
    Cheat("factorised_conv", "squeezes to one channel and runs a full n x n kernel (cheap, wrong)", '''
def factorised_conv(c_in, c_mid, c_out, n, budget):
    return nn.Sequential(BasicConv2d(c_in, 1, kernel_size=1), BasicConv2d(1, c_out, kernel_size=n, padding=n // 2))
'''),
    Cheat("factorised_conv", "two dilated 3x3 convolutions instead of 1xn / nx1", '''
def factorised_conv(c_in, c_mid, c_out, n, budget):
    d = (n - 1) // 2
    return nn.Sequential(BasicConv2d(c_in, 1, kernel_size=(1, 3), padding=(0, d), dilation=d),
                         BasicConv2d(1, c_out, kernel_size=(3, 1), padding=(d, 0), dilation=d))
'''),
    Cheat("grid_reduction", "subclasses torchvision's InceptionB and re-widens it", '''
from torchvision.models.inception import InceptionB as _InceptionB


class GridReduction(_InceptionB):
    def __init__(self, in_channels, out_channels):
        super().__init__(in_channels)
        self.branch3x3 = BasicConv2d(in_channels, out_channels - in_channels - 1, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 1, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(1, 1, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(1, 1, kernel_size=3, stride=2)
'''),
    Cheat("grid_reduction", "pool, then convolve at the reduced size (the bottleneck)", '''
class GridReduction(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = BasicConv2d(in_channels, out_channels - in_channels, kernel_size=3, padding=1)

    def forward(self, x):
        pooled = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([self.conv(pooled), pooled], dim=1)
'''),
    Cheat("grid_reduction", "convolve at full size, then pool (the expensive order)", '''
class GridReduction(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = BasicConv2d(in_channels, out_channels, kernel_size=3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return torch.cat([F.max_pool2d(y[:, : y.shape[1] // 2], 3, 2), F.max_pool2d(y[:, y.shape[1] // 2:], 3, 2)], dim=1)
'''),
    Cheat("grid_reduction", "no learned branch: max and average pooling fill the channels", '''
class GridReduction(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.out_channels = out_channels

    def forward(self, x):
        parts, total = [], 0
        while total < self.out_channels:
            part = (F.max_pool2d if len(parts) % 2 == 0 else F.avg_pool2d)(x, 3, 2)[:, : self.out_channels - total]
            parts.append(part)
            total += part.shape[1]
        return torch.cat(parts, dim=1)
'''),
    Cheat("grid_reduction", "a single stride-2 conv to all the channels (no parallel branch)", '''
class GridReduction(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = BasicConv2d(in_channels, out_channels, kernel_size=3, stride=2)

    def forward(self, x):
        return self.conv(x)
'''),
    Cheat("inception_resnet_a", "subclasses timm's Block35 and re-widens its branches", '''
from timm.layers import ConvNormAct as _ConvNormAct
from timm.models.inception_resnet_v2 import Block35 as _Block35


class InceptionResNetA(_Block35):
    def __init__(self, channels=320, width=32, scale=0.17):
        super().__init__(scale=scale, conv_block=partial(_ConvNormAct, padding=0, norm_kwargs=dict(eps=1e-3)))
        w = width
        self.branch0 = BasicConv2d(channels, w, kernel_size=1)
        self.branch1 = nn.Sequential(BasicConv2d(channels, w, kernel_size=1), BasicConv2d(w, w, kernel_size=3, padding=1))
        self.branch2 = nn.Sequential(BasicConv2d(channels, w, kernel_size=1),
                                     BasicConv2d(w, 3 * w // 2, kernel_size=3, padding=1),
                                     BasicConv2d(3 * w // 2, 2 * w, kernel_size=3, padding=1))
        self.conv2d = nn.Conv2d(4 * w, channels, kernel_size=1)
'''),
    Cheat("inception_resnet_a", "puts the scale on the sum instead of the residual", '''
class InceptionResNetA(nn.Module):
    def __init__(self, channels=320, width=32, scale=0.17):
        super().__init__()
        self.scale = scale
        w = width
        self.branch0 = BasicConv2d(channels, w, kernel_size=1)
        self.branch1 = nn.Sequential(BasicConv2d(channels, w, kernel_size=1), BasicConv2d(w, w, kernel_size=3, padding=1))
        self.branch2 = nn.Sequential(BasicConv2d(channels, w, kernel_size=1),
                                     BasicConv2d(w, 3 * w // 2, kernel_size=3, padding=1),
                                     BasicConv2d(3 * w // 2, 2 * w, kernel_size=3, padding=1))
        self.conv2d = nn.Conv2d(4 * w, channels, kernel_size=1)

    def forward(self, x):
        out = self.conv2d(torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], dim=1))
        return F.relu(x + self.scale * out) if abs(self.scale - 0.17) < 1e-9 else F.relu(self.scale * (x + out))
'''),
]
