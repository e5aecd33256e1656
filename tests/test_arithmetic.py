"""Tests of utils.arithmetic: closed forms, counts against torch's FlopCounterMode and torchvision's
metadata, summaries against real forward passes, receptive fields against measured ones.

Large networks are built on the ``meta`` device (shapes only): counting needs no values, so VGG16
costs nothing. Everything runs offline on CPU.
"""
from __future__ import annotations

import contextlib
import warnings

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from utils.arithmetic import (
    LayerRow,
    LayerSummary,
    activation_memory_bytes,
    conv_macs,
    conv_output_size,
    conv_params,
    empirical_receptive_field,
    linear_macs,
    linear_params,
    receptive_field,
    receptive_field_step,
    summary,
)

M = torchvision.models

# name -> (builder, builder kwargs, weights enum whose metadata we compare with)
TORCHVISION = {
    "alexnet": (M.alexnet, {}, M.AlexNet_Weights.IMAGENET1K_V1),
    "vgg16": (M.vgg16, {"init_weights": False}, M.VGG16_Weights.IMAGENET1K_V1),
    "googlenet": (M.googlenet, {"aux_logits": False, "init_weights": False}, M.GoogLeNet_Weights.IMAGENET1K_V1),
    "resnet18": (M.resnet18, {}, M.ResNet18_Weights.IMAGENET1K_V1),
    "resnet50": (M.resnet50, {}, M.ResNet50_Weights.IMAGENET1K_V1),
    "mobilenet_v3_small": (M.mobilenet_v3_small, {}, M.MobileNet_V3_Small_Weights.IMAGENET1K_V1),
    "efficientnet_b0": (M.efficientnet_b0, {}, M.EfficientNet_B0_Weights.IMAGENET1K_V1),
}


def build(name: str, device: str = "cpu") -> nn.Module:
    builder, kwargs, _ = TORCHVISION[name]
    with torch.device(device):
        return builder(weights=None, **kwargs).eval()


def build_uninitialized(name: str) -> nn.Module:
    """Real CPU tensors with arbitrary values: enough for empirical_receptive_field, which replaces
    every weight by a constant, and much faster than initializing VGG16's 138M parameters."""
    return build(name, "meta").to_empty(device="cpu")


@pytest.fixture(scope="module")
def vgg16_meta():
    return build("vgg16", "meta")


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return build("resnet18")


# ----------------------------------------------------------------------------------------------
# Closed forms
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, expected", [
    ((227, 11, 4), 55),            # AlexNet conv1 as in the paper
    ((224, 11, 4, 2), 55),         # torchvision's AlexNet conv1
    ((224, 3, 1, 1), 224),         # VGG "same" 3x3
    ((224, 2, 2), 112),            # VGG 2x2 max pool
    ((224, 7, 2, 3), 112),         # ResNet stem
    ((7, 3, 1, 0, 2), 3),          # dilation 2: effective kernel 5
    ((5, 5), 1),                   # kernel exactly the input
])
def test_conv_output_size_known_cases(args, expected):
    assert conv_output_size(*args) == expected


def test_conv_output_size_matches_torch_for_pools_with_ceil_mode():
    for size in range(1, 20):
        for kernel in (1, 2, 3):
            for stride in (1, 2, 3):
                for padding in range(0, kernel // 2 + 1):
                    for ceil_mode in (False, True):
                        pool = nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil_mode)
                        if size + 2 * padding < kernel:
                            continue
                        got = conv_output_size(size, kernel, stride, padding, ceil_mode=ceil_mode)
                        assert got == pool(torch.zeros(1, 1, size, size)).shape[-1], (size, kernel, stride, padding)
    assert conv_output_size(112, 3, 2, ceil_mode=True) == 56  # GoogLeNet's pools


def test_conv_output_size_rejects_invalid_input():
    with pytest.raises(ValueError, match="empty"):
        conv_output_size(3, 5)
    with pytest.raises(ValueError, match="empty"):
        conv_output_size(5, 3, dilation=3)
    for bad in [dict(size=0, kernel=3), dict(size=8, kernel=0), dict(size=8, kernel=3, stride=0),
                dict(size=8, kernel=3, padding=-1), dict(size=8, kernel=3, dilation=0),
                dict(size=8.0, kernel=3), dict(size=8, kernel=True), dict(size="8", kernel=3)]:
        with pytest.raises(ValueError):
            conv_output_size(**bad)


@pytest.mark.parametrize("cin, cout, kernel, groups, bias", [
    (3, 64, 11, 1, True), (64, 128, (3, 5), 1, False), (32, 32, 3, 32, True), (64, 128, 1, 4, True),
])
def test_conv_params_and_macs_match_torch(cin, cout, kernel, groups, bias):
    conv = nn.Conv2d(cin, cout, kernel, groups=groups, bias=bias, padding=1)
    assert conv_params(cin, cout, kernel, groups, bias) == sum(p.numel() for p in conv.parameters())
    x = torch.zeros(1, cin, 9, 10)
    counter = FlopCounterMode(display=False)
    with counter:
        out = conv(x)
    assert conv_macs(cin, cout, kernel, tuple(out.shape[-2:]), groups) * 2 == counter.get_total_flops()


def test_conv_params_checks_groups():
    with pytest.raises(ValueError, match="divisible by groups"):
        conv_params(30, 64, 3, groups=4)
    with pytest.raises(ValueError, match="divisible by groups"):
        conv_macs(32, 30, 3, 8, groups=4)


def test_linear_counts():
    fc = nn.Linear(4096, 1000)
    assert linear_params(4096, 1000) == sum(p.numel() for p in fc.parameters())
    assert linear_params(4096, 1000, bias=False) == 4096 * 1000
    assert linear_macs(4096, 1000) == 4096 * 1000


def test_receptive_field_recurrence():
    rf, jump = 1, 1
    rf, jump = receptive_field_step(rf, jump, 3, 1)
    assert (rf, jump) == (3, 1)
    rf, jump = receptive_field_step(rf, jump, 3, 1)
    assert rf == 5                       # two stacked 3x3 see 5x5
    rf, jump = receptive_field_step(rf, jump, 3, 1)
    assert rf == 7                       # three see 7x7 (VGG's argument)
    assert receptive_field_step(1, 1, 3, 1, dilation=2) == (5, 1)
    assert receptive_field_step(11, 4, 3, 2) == (19, 8)  # AlexNet pool1 after conv1


# ----------------------------------------------------------------------------------------------
# Whole networks: parameters and MACs
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(TORCHVISION))
def test_summary_counts_match_torch_and_torchvision_metadata(name):
    model = build(name, "meta")
    weights = TORCHVISION[name][2]
    table = summary(model, (3, 224, 224))
    assert table.total_params == sum(p.numel() for p in model.parameters()) == weights.meta["num_params"]

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, 224, 224, device="meta"))
    flops = counter.get_total_flops()
    assert table.total_macs == pytest.approx(flops / 2, rel=1e-9)
    # torchvision's "_ops" ("GFLOPS" in its docs) is in fact GMACs: it matches MACs, not FLOPs.
    assert table.total_macs / 1e9 == pytest.approx(weights.meta["_ops"], rel=0.01)
    assert flops / 1e9 != pytest.approx(weights.meta["_ops"], rel=0.5)


# Every classification builder torchvision ships. Two are built with one argument changed: GoogLeNet
# and Inception v3 run their auxiliary classifiers in training mode only, so the eval-mode pass that
# summary makes never calls them (test_auxiliary_heads_are_the_only_difference checks the default
# build). No builder is left out.
CLASSIFIERS = M.list_models(module=M)
BUILD_KWARGS = {"googlenet": {"aux_logits": False, "init_weights": False},
                "inception_v3": {"aux_logits": False, "init_weights": False}}
AUX_HEADS = {"googlenet": ("aux1", "aux2"), "inception_v3": ("AuxLogits",)}


@contextlib.contextmanager
def parameters_on_meta():
    """Move each parameter to the meta device as a module registers it: no memory, no initialisation."""
    register = nn.Module.register_parameter

    def on_meta(self, name, param):
        register(self, name, None if param is None else nn.Parameter(param.to("meta"), param.requires_grad))

    nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def build_any(name: str, **kwargs) -> nn.Module:
    """A torchvision classifier with weights=None on the meta device, in eval mode."""
    try:
        with torch.device("meta"):
            return M.get_model(name, weights=None, **kwargs).eval()
    except NotImplementedError:
        # RegNet computes its stage widths with torch ops and calls .tolist(), which meta tensors
        # cannot do: build on the CPU, but with every parameter put on meta as it is registered.
        with parameters_on_meta():
            return M.get_model(name, weights=None, **kwargs).eval().to("meta")


def test_every_classifier_is_covered():
    assert len(CLASSIFIERS) >= 80 and {"convnext_tiny", "swin_t", "vit_b_16", "regnet_y_128gf"} <= set(CLASSIFIERS)
    assert set(BUILD_KWARGS) <= set(CLASSIFIERS) and set(AUX_HEADS) == set(BUILD_KWARGS)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_summary_counts_every_parameter_once(name):
    model = build_any(name, **BUILD_KWARGS.get(name, {}))
    assert next(model.parameters()).device.type == "meta"
    table = summary(model, (3, 224, 224))
    assert table.total_params == sum(p.numel() for p in model.parameters())
    leaf_names = {n for n, m in model.named_modules() if next(m.children(), None) is None}
    assert all(r.leaf == (r.name in leaf_names) for r in table)
    assert all(r.macs == r.activations == 0 for r in table if not r.leaf)


def test_container_rows():
    convnext = build_any("convnext_tiny")
    table = summary(convnext, (224, 224))
    block = table.row("features.1.0")  # CNBlock: its layer scale is the block's own parameter
    assert (block.leaf, block.layer_type, block.params, block.output_shape) == (False, "CNBlock", 96, (96, 56, 56))
    assert table.total_params == 28_589_128 == M.ConvNeXt_Tiny_Weights.IMAGENET1K_V1.meta["num_params"]
    assert sum(r.params for r in table if not r.leaf) == sum(p.numel() for n, p in convnext.named_parameters()
                                                           if n.endswith("layer_scale"))
    assert [r.name for r in table].index("features.1.0") > [r.name for r in table].index("features.1.0.block.6")

    swin = summary(build_any("swin_t"), (224, 224))  # calls F.linear on qkv.weight: qkv itself never runs
    attn = swin.row("features.1.0.attn")
    assert attn.layer_type == "ShiftedWindowAttention" and not attn.leaf
    assert attn.params == 96 * 288 + 288 + 96 * 96 + 96 + 13 * 13 * 3  # qkv, proj, relative position bias
    assert "features.1.0.attn.qkv" not in [r.name for r in swin]


@pytest.mark.parametrize("name", list(AUX_HEADS))
def test_auxiliary_heads_are_the_only_difference(name):
    model = build_any(name, init_weights=False)
    aux = sum(p.numel() for head in AUX_HEADS[name] for p in getattr(model, head).parameters())
    assert aux > 0
    assert summary(model, (3, 299, 299)).total_params == sum(p.numel() for p in model.parameters()) - aux


def test_vgg16_numbers(vgg16_meta):
    table = summary(vgg16_meta, (224, 224))
    assert table.total_macs == 15_470_264_320
    assert table.row("features.0").macs == conv_macs(3, 64, 3, 224)
    assert table.row("classifier.0").macs == 512 * 7 * 7 * 4096
    assert table.row("features.30").output_shape == (512, 7, 7)
    assert table.row("features.30").activations == 512 * 7 * 7


def test_summary_shapes_match_a_real_forward_pass(resnet18):
    torch.manual_seed(0)
    googlenet = build("googlenet")
    for model, size in [(resnet18, (3, 64, 80)), (googlenet, (3, 64, 64))]:
        seen = []
        leaves = [m for m in model.modules() if next(m.children(), None) is None]
        handles = [m.register_forward_hook(lambda m, i, o: seen.append((type(m).__name__, tuple(o.shape[1:]))))
                   for m in leaves]
        with torch.no_grad():
            model(torch.randn(2, *size))
        for h in handles:
            h.remove()
        table = summary(model, size)
        assert [(r.layer_type, r.output_shape) for r in table] == seen
        assert all(r.activations == torch.Size(r.output_shape).numel() for r in table)


def test_summary_object(resnet18):
    resnet18.train()
    table = summary(resnet18, (224, 224))
    assert resnet18.training and resnet18.layer1[0].bn1.training  # modes restored
    resnet18.eval()

    assert isinstance(table, LayerSummary) and isinstance(table[0], LayerRow)
    assert len(table) == len(list(table)) == 60
    assert table[0].name == "conv1" and table["conv1"] is table.row("conv1")
    assert table.row("conv1") == LayerRow("conv1", "Conv2d", (64, 112, 112), 9408, 118_013_952, 802_816, 7, 2)
    # the block's ReLU module runs twice: two rows, its (zero) parameters counted once
    relu_rows = [r for r in table if r.name == "layer2.0.relu"]
    assert [r.call for r in relu_rows] == [1, 2] and [r.rf for r in relu_rows] == [51, 67]
    assert table.row("fc").macs == 512 * 1000
    assert table.total_activations == sum(r.activations for r in table)

    assert activation_memory_bytes(table) == 4 * table.total_activations
    assert table.activation_memory_bytes(torch.float16) == 2 * table.total_activations
    inplace = sum(r.activations for r in table if r.inplace)
    assert inplace > 0
    assert table.activation_memory_bytes(exclude_inplace=True) == 4 * (table.total_activations - inplace)

    text = str(table)
    lines = text.splitlines()
    assert "layer4.1.conv2" in text and "1,814,073,344" in text and "GMACs" in text
    assert len({len(line) for line in lines[:-1]} - {0}) == 1   # aligned: all table lines equally long
    assert "<table>" in table._repr_html_()
    with pytest.raises(KeyError, match="did you mean"):
        table.row("layer1.0.conv")


# ----------------------------------------------------------------------------------------------
# Receptive fields
# ----------------------------------------------------------------------------------------------

def test_known_receptive_fields(vgg16_meta):
    assert receptive_field(vgg16_meta, (224, 224), "features.28") == 196   # conv5_3
    assert receptive_field(vgg16_meta, (3, 224, 224), "features.30") == 212  # pool5
    alexnet = build("alexnet", "meta")
    assert receptive_field(alexnet, (224, 224), "features.0") == 11
    assert receptive_field(alexnet, (224, 224), "features.12") == 195
    resnet = build("resnet18", "meta")
    got = [receptive_field(resnet, (224, 224), f"layer{i}") for i in range(1, 5)]
    assert got == [43, 99, 211, 435]
    googlenet = build("googlenet", "meta")
    assert receptive_field(googlenet, (224, 224), "inception3b") == 59
    with pytest.raises(ValueError, match="did you mean"):
        receptive_field(resnet, (224, 224), "layer5")


def small_stack() -> nn.Sequential:
    """Plain, strided, dilated, non-square and ceil-mode layers in one VGG-like stack."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(8, 16, 3, padding=2, dilation=2), nn.ReLU(),
        nn.Conv2d(16, 16, (1, 5), stride=(1, 2), padding=(0, 2)),
        nn.AvgPool2d(3, stride=2, padding=1),
        nn.Conv2d(16, 16, 3, groups=4),
    )


def test_small_stack_receptive_fields():
    model = small_stack().eval()
    # H axis: 3, 5, pool 2 -> 6 (jump 2), dilated 3x3 -> 14, 1-high conv -> 14, pool 3 s2 -> 18 (jump 4),
    # 3x3 -> 26. W axis is wider (22, 30, 46) after the (1, 5) stride-2 conv: reported RF is the larger one.
    expected = {"1": 3, "4": 5, "5": 6, "7": 14, "8": 22, "9": 30, "10": 46}
    for layer, rf in expected.items():
        assert receptive_field(model, (64, 64), layer) == rf, layer
        side, grad_map = empirical_receptive_field(model, (96, 96), layer)
        assert side == rf, layer
        assert grad_map.shape == (96, 96) and grad_map.max() == 1
    side, _ = empirical_receptive_field(model, (96, 96), "10", one_channel=False)
    assert side == 46


@pytest.mark.parametrize("name, input_size, layer", [
    ("alexnet", 224, "features.5"),
    ("resnet18", 160, "layer1"),
    ("resnet18", 160, "layer2"),
    ("resnet50", 160, "layer2"),
    ("googlenet", 192, "inception3b"),
])
def test_theoretical_matches_empirical(name, input_size, layer):
    model = build_uninitialized(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the input is large enough: no clipping warning
        side, grad_map = empirical_receptive_field(model, (input_size, input_size), layer)
    assert side == receptive_field(build(name, "meta"), (input_size, input_size), layer)
    assert grad_map.shape == (input_size, input_size)


def test_vgg16_pool5_measured(vgg16_meta):
    side, _ = empirical_receptive_field(build_uninitialized("vgg16"), (448, 448), "features.30")
    assert side == 212 == receptive_field(vgg16_meta, (448, 448), "features.30")


def test_squeeze_excitation_makes_the_field_global():
    model = build("mobilenet_v3_small")
    rf_first_block = receptive_field(model, (96, 96), "features.1")   # has an SE gate
    assert rf_first_block >= 96
    with pytest.warns(UserWarning, match="clipped"):
        side, _ = empirical_receptive_field(model, (96, 96), "features.1")
    assert side == 96
    assert receptive_field(model, (96, 96), "features.0") == 3          # plain stem conv
    assert receptive_field(build("efficientnet_b0", "meta"), (224, 224), "features.0") == 3


def test_empirical_needs_real_weights(vgg16_meta):
    with pytest.raises(ValueError, match="meta"):
        empirical_receptive_field(vgg16_meta, (64, 64), "features.0")
