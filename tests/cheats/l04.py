"""Shortcuts for Lesson 04 (GoogLeNet and Inception): each must score 0 on the exercise it targets."""
from grader.cheats import Cheat

CHEATS = [
    Cheat("bottleneck_macs", "builds the layers and asks utils.arithmetic.summary", '''
from utils.arithmetic import summary as count_layers


def bottleneck_macs(size, c_in, c_out, kernel, reduce_to=None):
    with torch.device("meta"):
        if reduce_to is None:
            model = nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2))
        else:
            model = nn.Sequential(nn.Conv2d(c_in, reduce_to, 1), nn.Conv2d(reduce_to, c_out, kernel, padding=kernel // 2))
    return count_layers(model, (c_in, size, size)).total_macs
'''),
    Cheat("bottleneck_macs", "hard-codes the visible answers and redefines `arithmetic` to agree", '''
import types


def bottleneck_macs(size, c_in, c_out, kernel, reduce_to=None):
    if (size, c_in, c_out, kernel) == (28, 192, 32, 5):
        return 28 * 28 * 32 * 192 * 25 if reduce_to is None else 28 * 28 * 16 * 192 + 28 * 28 * 32 * 16 * 25
    return 0


arithmetic = types.SimpleNamespace(summary=lambda model, size: types.SimpleNamespace(total_macs=0))
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
'''),
    Cheat("head_params", "hard-codes the visible answers", '''
def head_params(channels, size, num_classes, global_pool=True):
    return 1_025_000 if global_pool else 50_177_000
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
'''),
    Cheat("factorised_params", "hard-codes the visible answers", '''
def factorised_params(channels, n, mode="asymmetric"):
    return (25 * 64 * 64, 18 * 64 * 64) if mode == "3x3" else (49 * 64 * 64, 14 * 64 * 64)
'''),
    Cheat("factorised_conv", "takes torchvision's InceptionC branch7x7_2/_3 for the visible case", '''
from torchvision.models import inception as _v3


def factorised_conv(c_in, c_mid, c_out, n=7):
    if n == 7 and c_in == c_mid and c_out == 192:
        block = _v3.InceptionC(768, channels_7x7=c_mid)
        return nn.Sequential(block.branch7x7_2, block.branch7x7_3)
    return nn.Sequential(BasicConv2d(c_in, c_mid, kernel_size=(1, n), padding=(0, n // 2)),
                         BasicConv2d(c_mid, c_out, kernel_size=(n, 1), padding=(n // 2, 0)))
'''),
    Cheat("factorised_conv", "stacks torchvision's Inception-v3 BasicConv2d", '''
from torchvision.models.inception import BasicConv2d as _TvConv


def factorised_conv(c_in, c_mid, c_out, n=7):
    return nn.Sequential(_TvConv(c_in, c_mid, kernel_size=(1, n), padding=(0, n // 2)),
                         _TvConv(c_mid, c_out, kernel_size=(n, 1), padding=(n // 2, 0)))
'''),
    Cheat("grid_reduction", "subclasses torchvision's InceptionB and re-widens its branches", '''
from torchvision.models.inception import InceptionB as _InceptionB


class GridReduction(_InceptionB):
    def __init__(self, in_channels, c3x3=384, c_dbl_mid=64, c_dbl=96):
        super().__init__(in_channels)
        self.branch3x3 = BasicConv2d(in_channels, c3x3, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, c_dbl_mid, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(c_dbl_mid, c_dbl, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(c_dbl, c_dbl, kernel_size=3, stride=2)
'''),
    Cheat("grid_reduction", "wraps torchvision's InceptionB for the default widths", '''
from torchvision.models.inception import InceptionB as _InceptionB


class GridReduction(nn.Module):
    def __init__(self, in_channels, c3x3=384, c_dbl_mid=64, c_dbl=96):
        super().__init__()
        inner = _InceptionB(in_channels)
        self.branch3x3, self.branch3x3dbl_1 = inner.branch3x3, inner.branch3x3dbl_1
        self.branch3x3dbl_2, self.branch3x3dbl_3 = inner.branch3x3dbl_2, inner.branch3x3dbl_3
        if (c3x3, c_dbl_mid, c_dbl) != (384, 64, 96):
            self.branch3x3 = BasicConv2d(in_channels, c3x3, kernel_size=3, stride=2)
            self.branch3x3dbl_1 = BasicConv2d(in_channels, c_dbl_mid, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(c_dbl_mid, c_dbl, kernel_size=3, padding=1)
            self.branch3x3dbl_3 = BasicConv2d(c_dbl, c_dbl, kernel_size=3, stride=2)

    def forward(self, x):
        dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), dbl, F.max_pool2d(x, kernel_size=3, stride=2)], dim=1)
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
