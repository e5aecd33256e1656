"""Reference numbers stated in Lesson 01 (convolution arithmetic), checked against torch/torchvision.

If a library update changes one of them, the lesson's prose (rendered from computed values) changes too,
and these tests say which fact moved.
"""
import math
from fractions import Fraction

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from utils import arithmetic

META = torch.device("meta")


def build(name: str, **kwargs) -> nn.Module:
    with torch.device(META):
        return torchvision.models.get_model(name, weights=None, **kwargs).eval()


def out_side(conv: nn.Module, size: int, channels: int = 3) -> int:
    return conv(torch.empty(1, channels, size, size, device=META)).shape[-1]


# ------------------------------------------------------------------------------------------ output sizes
def test_alexnet_conv1_224_does_not_divide():
    assert (224 - 11) / 4 + 1 == 54.25
    assert (227 - 11) / 4 + 1 == 55.0
    paper_conv1 = nn.Conv2d(3, 96, 11, stride=4, device=META)
    assert out_side(paper_conv1, 224) == 54  # PyTorch floors
    assert out_side(paper_conv1, 227) == 55


def test_torchvision_alexnet_pads_224_to_get_55():
    conv1 = build("alexnet").features[0]
    assert (conv1.in_channels, conv1.out_channels) == (3, 64)
    assert conv1.kernel_size == (11, 11) and conv1.stride == (4, 4) and conv1.padding == (2, 2)
    assert out_side(conv1, 224) == 55


@pytest.mark.parametrize("n, padding, outputs, skipped", [(224, 0, 54, 1), (227, 0, 55, 0), (224, 2, 55, 1)])
def test_alexnet_columns_never_read(n, padding, outputs, skipped):
    out = arithmetic.conv_output_size(n, 11, 4, padding)
    assert out == outputs
    assert n + 2 * padding - ((out - 1) * 4 + 11) == skipped


def test_sliding_window_figure_counts():
    image = torch.zeros(1, 1, 7, 7)
    assert nn.Conv2d(1, 1, 3)(image).shape[-1] == 5
    assert nn.Conv2d(1, 1, 3, stride=2, padding=1)(image).shape[-1] == 4
    assert nn.Conv2d(1, 1, 3, dilation=2)(image).shape[-1] == 3


# ------------------------------------------------------------------------------------------ params, MACs
@pytest.mark.parametrize("layer, expected", [
    (dict(in_channels=3, out_channels=64, kernel_size=3), 1792),
    (dict(in_channels=96, out_channels=256, kernel_size=5, groups=2), 307456),
    (dict(in_channels=32, out_channels=32, kernel_size=3, groups=32), 320),
    (dict(in_channels=32, out_channels=64, kernel_size=1, bias=False), 2048),
    (dict(in_channels=64, out_channels=128, kernel_size=(1, 7), bias=False), 57344),
])
def test_parameter_counts(layer, expected):
    conv = nn.Conv2d(**layer, device=META)
    assert sum(p.numel() for p in conv.parameters()) == expected


def test_flop_counter_counts_two_flops_per_mac():
    conv = nn.Conv2d(64, 128, 3, stride=2, padding=1, device=META)
    with FlopCounterMode(display=False) as counter:
        y = conv(torch.empty(1, 64, 56, 56, device=META))
    macs = 128 * y.shape[-2] * y.shape[-1] * 64 * 9
    assert macs == 57_802_752
    assert counter.get_total_flops() == 2 * macs


@pytest.mark.parametrize("name, macs, ops", [
    ("alexnet", 714_188_480, 0.714),
    ("resnet18", 1_814_073_344, 1.814),
    ("resnet50", 4_089_184_256, 4.089),
    ("vgg16", 15_470_264_320, 15.47),
    ("mobilenet_v2", 300_774_272, 0.301),
])
def test_torchvision_gflops_are_gmacs(name, macs, ops):
    model = build(name)
    assert arithmetic.summary(model, (3, 224, 224)).total_macs == macs
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, 3, 224, 224, device=META))
    assert counter.get_total_flops() == 2 * macs
    listed = torchvision.models.get_model_weights(name).IMAGENET1K_V1.meta["_ops"]
    assert listed == ops
    assert round(macs / 1e9, 3) == pytest.approx(listed, abs=1e-9)


# ------------------------------------------------------------------------------------------ memory
@pytest.mark.parametrize("name, activations, params, no_inplace_mib", [
    ("resnet18", 7_477_736, 11_689_512, 19.7),
    ("vgg16", 28_676_072, 138_357_544, 57.7),
])
def test_activation_totals(name, activations, params, no_inplace_mib):
    table = arithmetic.summary(build(name), (3, 224, 224))
    assert table.total_activations == activations
    assert table.total_params == params
    assert table.activation_memory_bytes(torch.float16) * 2 == table.activation_memory_bytes(torch.float32)
    assert round(table.activation_memory_bytes(exclude_inplace=True) / 2**20, 1) == no_inplace_mib


# ------------------------------------------------------------------------------------------ receptive fields
def test_stacked_3x3_fields_and_costs():
    def rf_of(kernel, depth):
        rf, jump = 1, 1
        for _ in range(depth):
            rf, jump = arithmetic.receptive_field_step(rf, jump, kernel, 1)
        return rf

    assert rf_of(3, 2) == rf_of(5, 1) == 5
    assert rf_of(3, 3) == rf_of(7, 1) == 7
    for c in (16, 64, 256, 512):
        three = 3 * arithmetic.conv_params(c, c, 3, bias=False)
        one = arithmetic.conv_params(c, c, 7, bias=False)
        assert Fraction(three, one) == Fraction(27, 49)
        assert Fraction(2 * arithmetic.conv_macs(c, c, 3, 56), arithmetic.conv_macs(c, c, 5, 56)) == Fraction(18, 25)
    assert 3 * arithmetic.conv_params(64, 64, 3, bias=False) == 110_592
    assert arithmetic.conv_params(64, 64, 7, bias=False) == 200_704


def test_dilated_stack_field():
    net = nn.Sequential(*[nn.Conv2d(64, 64, 3, padding=d, dilation=d, bias=False, device=META) for d in (1, 2, 4)])
    assert arithmetic.receptive_field(net, (64, 56, 56), "2") == 15
    assert net(torch.empty(1, 64, 56, 56, device=META)).shape[-1] == 56


def test_vgg16_receptive_fields_and_pool5_212():
    table = arithmetic.summary(build("vgg16"), (3, 224, 224))
    rows = [r for r in table if r.layer_type in ("Conv2d", "MaxPool2d")]
    assert [r.rf for r in rows] == [3, 5, 6, 10, 14, 16, 24, 32, 40, 44, 60, 76, 92, 100, 132, 164, 196, 212]
    assert rows[-1].jump == 32
    jumps_in = [1] + [r.jump for r in rows[:-1]]
    convs = sum(2 * j for j, r in zip(jumps_in, rows) if r.layer_type == "Conv2d")   # 3x3: adds (3 - 1) * jump
    pools = sum(1 * j for j, r in zip(jumps_in, rows) if r.layer_type == "MaxPool2d")  # 2x2: adds (2 - 1) * jump
    assert (convs, pools) == (180, 31) and 1 + convs + pools == 212
    assert sum(r.params for r in rows) == 14_714_688
    assert round(sum(r.macs for r in rows) / 1e9, 2) == 15.35


def test_vgg16_pool5_unit_positions():
    centre0 = sum(0.5 * 2 ** i for i in range(5))  # each 2x2 pool moves the first centre by half a jump
    assert centre0 == 15.5
    half = (212 - 1) / 2
    assert (centre0 - half, centre0 + half) == (-90, 121)
    assert (centre0 + 3 * 32 - half, centre0 + 3 * 32 + half) == (6, 217)


def test_alexnet_pool5_field():
    table = arithmetic.summary(build("alexnet"), (3, 224, 224))
    pool5 = table["features.12"]
    assert (pool5.rf, pool5.jump, pool5.output_shape) == (195, 32, (256, 6, 6))
    conv1 = table["features.0"]
    assert (conv1.params, conv1.macs, conv1.output_shape) == (23_296, 70_276_800, (64, 55, 55))


def test_resnet18_layer2_field_theory_and_measurement():
    model = torchvision.models.resnet18(weights=None)
    assert arithmetic.receptive_field(model, (3, 224, 224), "layer2") == 99
    side, grad_map = arithmetic.empirical_receptive_field(model, (3, 262, 262), "layer2")
    assert side == 99 and grad_map.shape == (262, 262)


def test_small_stacks_in_exercise_six():
    def stack(layers):
        rf, jump = 1, 1
        for k, s, d in layers:
            rf, jump = arithmetic.receptive_field_step(rf, jump, k, s, d)
        return rf, jump

    assert stack([(11, 4, 1), (3, 2, 1)]) == (19, 8)
    assert stack([(7, 2, 1), (3, 2, 1)]) == (11, 4)
    assert math.prod([4, 2]) == stack([(11, 4, 1), (3, 2, 1)])[1]


# ------------------------------------------------------------------------------------------ corrections (issue 12)
def test_same_padding_even_kernel_pads_right_and_bottom_and_refuses_stride_2():
    x = torch.randn(1, 1, 7, 7)
    same = nn.Conv2d(1, 1, 4, padding="same", bias=False)
    explicit = nn.Conv2d(1, 1, 4, bias=False)
    explicit.load_state_dict(same.state_dict())
    with torch.no_grad():
        y = same(x)
        assert y.shape[-2:] == (7, 7)
        assert torch.allclose(explicit(nn.functional.pad(x, (1, 2, 1, 2))), y)
        assert not torch.allclose(explicit(nn.functional.pad(x, (2, 1, 2, 1))), y)
    with pytest.raises(ValueError, match="strided"):
        nn.Conv2d(1, 1, 3, stride=2, padding="same")


def test_multichannel_output_value_is_a_sum_over_input_channels():
    demo = nn.Conv2d(3, 2, 3)
    x = torch.randn(1, 3, 5, 5)
    with torch.no_grad():
        y = demo(x)
        by_hand = sum((demo.weight[0, c] * x[0, c, 1:4, 2:5]).sum() for c in range(3)) + demo.bias[0]
    assert tuple(demo.weight.shape) == (2, 3, 3, 3) and tuple(y.shape[1:]) == (2, 3, 3)
    assert torch.allclose(by_hand, y[0, 0, 1, 2], atol=1e-5)


def test_resnet18_saved_for_backward_is_not_the_per_layer_table():
    model = torchvision.models.resnet18(weights=None).train()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in weights:
            storages[ptr] = max(storages.get(ptr, 0), t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(torch.randn(1, 3, 224, 224))
    saved = sum(storages.values())
    table = arithmetic.summary(build("resnet18"), (3, 224, 224))
    every, no_inplace = table.activation_memory_bytes(), table.activation_memory_bytes(exclude_inplace=True)
    assert round(saved / 2**20, 1) == 21.2 and round(every / 2**20, 1) == 28.5
    assert no_inplace < saved < every  # not every output is stored; pooling indices are stored on top
    pool = [r for r in table if r.layer_type == "MaxPool2d"]
    assert round(8 * sum(r.activations for r in pool) / 2**20, 1) == 1.5
