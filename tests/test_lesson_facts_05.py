"""Reference numbers stated in Lesson 05 (ResNet), checked against torch/torchvision.

If one of these fails after a library upgrade, the lesson's prose (rendered from computed values) is still
right, but its exercise checks, written-answer model solutions and this file need a look.
"""
import math
from functools import lru_cache

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models import resnet as tv_resnet

from utils import arithmetic

PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032}
RF_V15 = [35, 91, 267, 427]      # ResNet-50 (torchvision, stride in the 3x3): layer1..layer4 at 224 px
RF_V1 = [35, 99, 291, 483]       # the paper's ResNet-50 (stride in the first 1x1)
STAGES = ["layer1", "layer2", "layer3", "layer4"]


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def meta_model(name: str) -> nn.Module:
    with torch.device("meta"):
        return torchvision.models.get_model(name, weights=None)


def resnet50_v1() -> nn.Module:
    """torchvision's ResNet-50 with the stride moved from conv2 to conv1 in each stage's first block."""
    model = meta_model("resnet50")
    for stage in (model.layer2, model.layer3, model.layer4):
        stage[0].conv1.stride, stage[0].conv2.stride = (2, 2), (1, 1)
    return model


@lru_cache(maxsize=None)
def gmacs(name: str) -> float:
    """Multiply-accumulates per 224 x 224 image, in billions ("resnet50_v1": the paper's ResNet-50)."""
    model = resnet50_v1() if name == "resnet50_v1" else meta_model(name)
    return arithmetic.summary(model, (3, 224, 224)).total_macs / 1e9


class PadShortcut(nn.Module):
    """Option A shortcut, as in the lesson."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.extra, self.stride = c_out - c_in, stride

    def forward(self, x):
        return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.extra))


def cifar_resnet(depth: int, in_channels: int) -> nn.Sequential:
    """The paper's CIFAR ResNet (6n + 2 layers, 16/32/64 channels, option A) from torchvision's BasicBlock."""
    n = (depth - 2) // 6
    layers, c = [nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()], 16
    for i, width in enumerate((16, 32, 64)):
        for j in range(n):
            stride = 2 if (i > 0 and j == 0) else 1
            shortcut = PadShortcut(c, width, stride) if (stride != 1 or c != width) else None
            layers.append(tv_resnet.BasicBlock(c, width, stride, shortcut))
            c = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10)]
    return nn.Sequential(*layers)


def test_resnet_parameter_counts_and_metadata():
    expected = {18: (1.814, 69.758), 34: (3.664, 73.314), 50: (4.089, 76.13)}
    for depth, (ops, top1) in expected.items():
        model = meta_model(f"resnet{depth}")
        assert n_params(model) == PARAMS[depth]
        meta = torchvision.models.get_model_weights(f"resnet{depth}").IMAGENET1K_V1.meta
        assert meta["num_params"] == PARAMS[depth]
        assert meta["_ops"] == pytest.approx(ops)
        assert meta["_metrics"]["ImageNet-1K"]["acc@1"] == pytest.approx(top1)
        assert round(gmacs(f"resnet{depth}"), 3) == pytest.approx(ops, abs=1e-3), depth   # `_ops` are GMACs


def test_cifar_resnet_sizes():
    assert n_params(cifar_resnet(20, 3)) == 269_722          # the paper's "0.27M"
    assert round(n_params(cifar_resnet(56, 3)) / 1e6, 2) == 0.85
    with torch.no_grad():
        assert cifar_resnet(20, 1).eval()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_block_parameter_arithmetic():
    def proj(c_in, c_out, stride):
        return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    with torch.device("meta"):
        assert n_params(tv_resnet.BasicBlock(64, 64)) == 73_984
        assert n_params(tv_resnet.BasicBlock(256, 256)) == 1_180_672
        assert n_params(tv_resnet.Bottleneck(256, 64)) == 70_400
        assert n_params(tv_resnet.Bottleneck(64, 64, 1, proj(64, 256, 1))) == 75_008
    assert round(1_180_672 / 70_400, 1) == 16.8


def test_receptive_fields_v1_vs_v15():
    v15, v1 = meta_model("resnet50"), resnet50_v1()
    assert arithmetic.receptive_field(v15, (224, 224), "maxpool") == 11
    assert [arithmetic.receptive_field(v15, (224, 224), s) for s in STAGES] == RF_V15
    assert [arithmetic.receptive_field(v1, (224, 224), s) for s in STAGES] == RF_V1
    assert [a - b for a, b in zip(RF_V1, RF_V15)] == [0, 8, 24, 56]
    assert n_params(v1) == n_params(v15)
    assert round(gmacs("resnet50_v1"), 2) == 3.86 and round(gmacs("resnet50"), 2) == 4.09


def test_default_conv_init_variance():
    """PyTorch's default Conv2d init has variance 1/(3 fan_in); He's is 2/fan_in (6x larger)."""
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 64, 3)
    fan_in = 64 * 9
    assert conv.weight.var().item() == pytest.approx(1 / (3 * fan_in), rel=0.03)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.03)
    nn.init.xavier_normal_(conv.weight)
    assert conv.weight.var().item() == pytest.approx(1 / fan_in, rel=0.03)


def test_paper_table1_counts_are_v1_macs():
    """He et al. (2015), Table 1: 1.8, 3.6, 3.8 x 10^9 "FLOPs" for ResNet-18/34/50 are MACs, and the 50 is v1."""
    def tenths(name):
        return math.floor(gmacs(name) * 10) / 10

    assert tenths("resnet18") == 1.8
    assert tenths("resnet34") == 3.6
    assert tenths("resnet50_v1") == 3.8
    assert tenths("resnet50") == 4.0          # torchvision's v1.5 is not the paper's network


def test_resnet34_shortcut_options():
    """Options A/B/C of the paper on ResNet-34: parameters of the projections (1x1 conv + BN)."""
    def projection(c_in, c_out):
        return c_in * c_out + 2 * c_out

    model = meta_model("resnet34")
    b = n_params(model)
    b_projections = sum(n_params(m.downsample) for m in model.modules()
                        if isinstance(m, tv_resnet.BasicBlock) and m.downsample is not None)
    assert b_projections == projection(64, 128) + projection(128, 256) + projection(256, 512) == 173_824
    a = b - b_projections
    extra_c = 3 * projection(64, 64) + 3 * projection(128, 128) + 5 * projection(256, 256) + 2 * projection(512, 512)
    assert (a, b, b + extra_c) == (21_623_848, 21_797_672, 22_716_840)
    assert round(100 * (b / a - 1), 1) == 0.8 and round(100 * ((b + extra_c) / a - 1), 1) == 5.1


def test_v15_extra_macs_are_the_first_1x1_of_each_downsampling_block():
    """issue 12: v1.5's extra MACs come from conv1 (1x1 at stride 1 on the full map), not from the 3x3."""
    import torch
    import torchvision
    from torch import nn
    from utils.arithmetic import summary

    def per_layer(model):
        return {r.name: r.macs for r in summary(model, (3, 224, 224)) if r.layer_type == "Conv2d"}

    with torch.device("meta"):
        v15 = torchvision.models.resnet50(weights=None)
        v1 = torchvision.models.resnet50(weights=None)
    for name in ("layer2", "layer3", "layer4"):       # move the stride from the 3x3 into the first 1x1
        block = getattr(v1, name)[0]
        block.conv1.stride, block.conv2.stride = (2, 2), (1, 1)
    a, b = per_layer(v1), per_layer(v15)
    changed = {n: b[n] - a[n] for n in a if a[n] != b[n]}
    assert set(changed) == {"layer2.0.conv1", "layer3.0.conv1", "layer4.0.conv1"}
    assert all(d == 77_070_336 for d in changed.values())
    assert sum(changed.values()) == 231_211_008


def test_effective_field_is_smaller_than_the_theoretical_one():
    """Luo et al. (2016) are cited in words; what the lesson measures: at He initialisation, 95% of the centre
    unit's input gradient in ResNet-50 v1.5 lies well inside the theoretical field (35 px for layer1, 91 for layer2)."""
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()     # torchvision's own init is He, mode fan_out
    assert arithmetic.receptive_field(model, (160, 160), "layer1") == 35
    assert arithmetic.receptive_field(model, (192, 192), "layer2") == 91
    for layer, size, theoretical in (("layer1", 160, 35), ("layer2", 192, 91)):
        feats = {}
        handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: feats.update(out=o))
        x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0), requires_grad=True)
        model(x)
        out = feats["out"]
        out[0, :, out.shape[2] // 2, out.shape[3] // 2].sum().backward()
        handle.remove()
        grad = x.grad.abs().sum(1)[0]
        c, half = size // 2, theoretical // 2
        inside = grad[c - half:c + half + 1, c - half:c + half + 1].sum() / grad.sum()
        assert inside.item() > 0.999                                     # nothing leaks outside the theoretical field
        side = next(2 * h + 1 for h in range(size // 2 + 1)
                    if grad[c - h:c + h + 1, c - h:c + h + 1].sum() >= 0.95 * grad.sum())
        assert side < theoretical, (layer, side, theoretical)
