"""Reference numbers stated in Lesson 04 (GoogLeNet and Inception v1-v4), checked against torch/torchvision/timm.

If one of these fails after a library upgrade, the lesson's prose (rendered from computed values) is still
right, but its recap, written-answer model solutions and this file need a look.
"""
import pytest
import timm
import torch
import torchvision
from torch import nn

from utils import arithmetic
from utils.arithmetic import conv_macs, conv_output_size, conv_params, linear_params

GOOGLENET_WIDTHS = {  # the paper's Table 1: (in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj), map side
    "inception3a": ((192, 64, 96, 128, 16, 32, 32), 28),
    "inception3b": ((256, 128, 128, 192, 32, 96, 64), 28),
    "inception4a": ((480, 192, 96, 208, 16, 48, 64), 14),
    "inception4b": ((512, 160, 112, 224, 24, 64, 64), 14),
    "inception4c": ((512, 128, 128, 256, 24, 64, 64), 14),
    "inception4d": ((512, 112, 144, 288, 32, 64, 64), 14),
    "inception4e": ((528, 256, 160, 320, 32, 128, 128), 14),
    "inception5a": ((832, 256, 160, 320, 32, 128, 128), 7),
    "inception5b": ((832, 384, 192, 384, 48, 128, 128), 7),
}


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def meta_googlenet(**kwargs) -> nn.Module:
    with torch.device("meta"):
        return torchvision.models.googlenet(weights=None, init_weights=False, **kwargs)


def test_bottleneck_example():
    direct = conv_macs(192, 32, 5, 28)
    reduced = conv_macs(192, 16, 1, 28) + conv_macs(16, 32, 5, 28)
    assert (direct, reduced) == (120_422_400, 12_443_648)
    assert round(direct / reduced, 2) == 9.68


def test_googlenet_widths_match_torchvision():
    net = meta_googlenet()
    for name, (widths, _) in GOOGLENET_WIDTHS.items():
        module = getattr(net, name)
        c_in, c1, c3r, c3, c5r, c5, pp = widths
        assert module.branch1.conv.in_channels == c_in and module.branch1.conv.out_channels == c1
        assert (module.branch2[0].conv.out_channels, module.branch2[1].conv.out_channels) == (c3r, c3)
        assert (module.branch3[0].conv.out_channels, module.branch3[1].conv.out_channels) == (c5r, c5)
        assert module.branch4[1].conv.out_channels == pp
        assert module.branch3[1].conv.kernel_size == (3, 3)     # torchvision's "known bug": 3x3, not 5x5
    assert n_params(net.inception3a) == 155_872


def test_inception_module_macs_and_reduction_savings():
    def module_macs(widths, size, reduce=True):
        c_in, c1, c3r, c3, c5r, c5, pp = widths
        three = conv_macs(c_in, c3r, 1, size) + conv_macs(c3r, c3, 3, size) if reduce else conv_macs(c_in, c3, 3, size)
        five = conv_macs(c_in, c5r, 1, size) + conv_macs(c5r, c5, 5, size) if reduce else conv_macs(c_in, c5, 5, size)
        return conv_macs(c_in, c1, 1, size) + three + five + conv_macs(c_in, pp, 1, size)

    assert module_macs(*GOOGLENET_WIDTHS["inception3a"]) == 128_049_152
    ratios = [module_macs(w, s, False) / module_macs(w, s) for w, s in GOOGLENET_WIDTHS.values()]
    assert round(min(ratios), 1) == 2.4 and round(max(ratios), 1) == 5.2
    total = sum(module_macs(w, s) for w, s in GOOGLENET_WIDTHS.values())
    naive = sum(module_macs(w, s, False) for w, s in GOOGLENET_WIDTHS.values())
    assert round(total / 1e9, 2) == 1.10 and round(naive / 1e9, 2) == 3.95


def test_gap_versus_fc_head():
    assert linear_params(1024 * 49, 1000) == 50_177_000
    assert linear_params(1024, 1000) == 1_025_000


def test_googlenet_parameter_counts():
    default = meta_googlenet()                       # aux heads are built by default
    no_aux = meta_googlenet(aux_logits=False)
    assert default.aux_logits is True
    assert n_params(default) == 13_004_888
    assert n_params(no_aux) == 6_624_904
    assert torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.meta["num_params"] == 6_624_904
    assert (n_params(default.aux1), n_params(default.aux2)) == (3_188_968, 3_191_016)
    assert n_params(default.aux1.fc1) == 2_098_176
    assert round(100 * (n_params(default.aux1) + n_params(default.aux2)) / n_params(default)) == 49


def test_googlenet_paper_faithful_rebuild():
    """5x5 kernels in branch 3, biases instead of batch norm, no aux heads: 7.0M (the paper's Table 1 sums to 6.8M)."""
    total = 0
    for name, module in meta_googlenet(aux_logits=False).named_modules():
        if isinstance(module, nn.Conv2d):
            k = 5 if name.endswith("branch3.1.conv") else module.kernel_size[0]
            total += conv_params(module.in_channels, module.out_channels, k)
        elif isinstance(module, nn.Linear):
            total += linear_params(module.in_features, module.out_features)
    assert total == 6_998_552


def test_factorisation_savings():
    assert round(100 * (1 - 18 / 25)) == 28
    assert round(100 * (1 - 14 / 49)) == 71


def test_grid_reduction_costs():
    small = conv_output_size(35, 3, stride=2)
    assert small == 17
    assert conv_macs(320, 640, 3, small) == 532_684_800
    assert conv_macs(320, 640, 3, 35) == 2_257_920_000
    assert conv_macs(320, 320, 3, small) == 266_342_400


def test_torchvision_inception_v3_blocks():
    with torch.device("meta"):
        v3 = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    assert n_params(v3) == 23_834_568
    assert v3.Mixed_5b.branch5x5_2.conv.kernel_size == (5, 5)   # the released v3 keeps a 5x5 branch
    assert v3.Mixed_6b.branch7x7_2.conv.kernel_size == (1, 7)
    assert n_params(v3.Mixed_6a) == 1_153_280
    meta = torchvision.models.Inception_V3_Weights.IMAGENET1K_V1.meta
    assert meta["num_params"] == 27_161_264                    # includes the aux head
    assert meta["_metrics"]["ImageNet-1K"]["acc@1"] == pytest.approx(77.294)
    assert arithmetic.summary(v3, (3, 299, 299)).total_macs / 1e9 == pytest.approx(meta["_ops"], abs=1e-3)


def test_googlenet_metadata_and_macs():
    meta = torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.meta
    assert meta["_metrics"]["ImageNet-1K"]["acc@1"] == pytest.approx(69.778)
    macs = arithmetic.summary(meta_googlenet(aux_logits=False), (3, 224, 224)).total_macs
    assert macs / 1e9 == pytest.approx(meta["_ops"], abs=1e-3)


def test_timm_inception_v4_and_resnet_v2():
    with torch.device("meta"):
        v4 = timm.create_model("inception_v4", pretrained=False)
        irv2 = timm.create_model("inception_resnet_v2", pretrained=False)
    assert n_params(v4) == 42_679_816 and n_params(irv2) == 55_843_464
    assert n_params(irv2.repeat[0]) == 123_168                   # Inception-ResNet-A (Block35), 320 channels
    assert n_params(v4.features[6]) == 317_632                   # Inception-v4 Inception-A, 384 channels
    assert [irv2.repeat[0].scale, irv2.repeat_1[0].scale, irv2.repeat_2[0].scale] == [0.17, 0.10, 0.20]


def test_alexnet_over_googlenet_is_about_nine_not_twelve():
    """The paper's "12 times fewer parameters than AlexNet": no GoogLeNet count gives it (issue 12)."""
    with torch.device("meta"):
        alexnet = n_params(torchvision.models.alexnet(weights=None))
    no_aux = meta_googlenet(aux_logits=False)
    assert alexnet == 61_100_840
    assert round(alexnet / n_params(no_aux), 1) == 9.2
    assert round(alexnet / 6_797_700, 1) == 9.0
    assert round(alexnet / (n_params(no_aux) - n_params(no_aux.fc)), 1) == 10.9
    assert alexnet / 12 < n_params(no_aux) - n_params(no_aux.fc)


def test_mixed_6a_and_block35_widths_drawn():
    with torch.device("meta"):
        v3 = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
        block35 = timm.create_model("inception_resnet_v2", pretrained=False).repeat[0]
    assert v3.Mixed_6a.branch3x3.conv.out_channels + v3.Mixed_6a.branch3x3dbl_3.conv.out_channels + 288 == 768
    assert abs(block35.scale - 0.17) < 1e-9 and block35.conv2d.in_channels == 128


def _basic_conv(c_in, c_out, kernel):
    return conv_params(c_in, c_out, kernel, bias=False) + 2 * c_out


def test_break_even_reduction_widths():
    """Widest 1x1 reduction that is still cheaper than none, for inception3a's 3x3 and 5x5 branches (28x28x192)."""
    def widest(c_out, k):
        direct = conv_macs(192, c_out, k, 28)
        return max(r for r in range(1, 193) if conv_macs(192, r, 1, 28) + conv_macs(r, c_out, k, 28) < direct)

    assert (widest(128, 3), widest(32, 5)) == (164, 154)
    assert conv_macs(192, 96, 1, 28) + conv_macs(96, 128, 3, 28) == 101_154_816


def test_flatten_head_budget_on_googlenet():
    """A flattening head no bigger than the rest of GoogLeNet fits a 2x2 map at most: inputs up to 78 px."""
    net = meta_googlenet(aux_logits=False)
    budget = n_params(net) - n_params(net.fc)
    assert budget == 5_599_904
    side = max(s for s in range(1, 10) if linear_params(1024 * s * s, 1000) <= budget)
    assert side == 2

    def final_side(image):
        seen = []
        hook = net.inception5b.register_forward_hook(lambda m, i, o: seen.append(o.shape[-1]))
        with torch.no_grad():
            net.eval()(torch.zeros(1, 3, image, image, device="meta"))
        hook.remove()
        return seen[0]

    assert final_side(78) == 2 and final_side(79) == 3 and final_side(224) == 7


def test_smallest_kernels_for_a_saving():
    def smallest(saving, per_pair):
        n = 3
        while per_pair(n) > (1 - saving) * n * n:
            n += 2
        return n

    stack, pair = (lambda n: 9 * (n - 1) / 2), (lambda n: 2 * n)
    assert [smallest(s, stack) for s in (0.5, 0.75, 0.9)] == [9, 17, 45]
    assert [smallest(s, pair) for s in (0.5, 0.75, 0.9)] == [5, 9, 21]


def test_cheapest_factorisation_at_mixed_6b_widths():
    """torchvision's branch7x7 (1x1 -> 1x7 -> 7x1, 768 -> 128 -> 192) versus a 1x1 behind the pair as well."""
    with torch.device("meta"):
        block = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).Mixed_6b
    branch = sum(n_params(getattr(block, f"branch7x7_{i}")) for i in (1, 2, 3))
    assert branch == 385_920
    assert branch == _basic_conv(768, 128, 1) + _basic_conv(128, 128, (1, 7)) + _basic_conv(128, 192, (7, 1))
    both = _basic_conv(768, 128, 1) + _basic_conv(128, 128, (1, 7)) + _basic_conv(128, 128, (7, 1)) + _basic_conv(128, 192, 1)
    assert both == 353_408
    assert _basic_conv(768, 192, 7) == 7_225_728


def test_parallel_grid_reduction_320_to_640():
    """Stride-2 3x3 conv 320 -> 320 next to a stride-2 max pool: MACs and parameters of the lesson's design."""
    assert conv_macs(320, 320, 3, 17) == 266_342_400
    assert _basic_conv(320, 320, 3) == 922_240
