"""Reference numbers stated by Lesson 06 (accuracy vs compute, light models), checked against the libraries.

If torchvision or timm change a model or its metadata, these fail before the lesson's prose goes stale.
Models are built on the meta device (shapes only) or small; the whole file runs in seconds.
"""
import math

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.efficientnet import MBConv as TvMBConv

from utils.arithmetic import conv_macs, conv_params, summary

# name: (eval crop px, top-1 %, metadata "_ops" = GMACs, num_params) of the IMAGENET1K_V1 weights
ZOO = {
    "alexnet": (224, 56.522, 0.714, 61100840),
    "vgg16": (224, 71.592, 15.47, 138357544),
    "vgg19": (224, 72.376, 19.632, 143667240),
    "googlenet": (224, 69.778, 1.498, 6624904),
    "inception_v3": (299, 77.294, 5.713, 27161264),
    "resnet18": (224, 69.758, 1.814, 11689512),
    "resnet34": (224, 73.314, 3.664, 21797672),
    "resnet50": (224, 76.13, 4.089, 25557032),
    "resnet101": (224, 77.374, 7.801, 44549160),
    "resnet152": (224, 78.312, 11.514, 60192808),
    "densenet121": (224, 74.434, 2.834, 7978856),
    "squeezenet1_1": (224, 58.178, 0.349, 1235496),
    "shufflenet_v2_x1_0": (224, 69.362, 0.145, 2278604),
    "mobilenet_v2": (224, 71.878, 0.301, 3504872),
    "mobilenet_v3_small": (224, 67.668, 0.057, 2542856),
    "mobilenet_v3_large": (224, 74.042, 0.217, 5483032),
    "mnasnet1_0": (224, 73.456, 0.314, 4383312),
    "efficientnet_b0": (224, 77.692, 0.386, 5288548),
    "efficientnet_b1": (240, 78.642, 0.687, 7794184),
    "efficientnet_b2": (288, 80.608, 1.088, 9109994),
    "efficientnet_b3": (300, 82.008, 1.827, 12233232),
    "regnet_y_400mf": (224, 74.046, 0.402, 4344144),
    "regnet_y_800mf": (224, 76.42, 0.834, 6432512),
    "convnext_tiny": (224, 82.52, 4.456, 28589128),
}
FRONT = ["mobilenet_v3_small", "shufflenet_v2_x1_0", "mobilenet_v3_large", "efficientnet_b0", "efficientnet_b1",
         "efficientnet_b2", "efficientnet_b3", "convnext_tiny"]


def weights(name, tag="IMAGENET1K_V1"):
    return torchvision.models.get_model_weights(name)[tag]


def meta_model(name, **kwargs):
    with torch.device("meta"):
        return torchvision.models.get_model(name, weights=None, **kwargs).eval()


def brute_front(points):
    keep = [i for i, p in enumerate(points)
            if not any(q[0] <= p[0] and q[1] >= p[1] and q != p for q in points)]
    return sorted(keep, key=lambda i: (points[i][0], i))


@pytest.mark.parametrize("name", list(ZOO))
def test_metadata(name):
    crop, top1, gmacs, params = ZOO[name]
    w = weights(name)
    assert w.transforms().crop_size[0] == crop
    assert w.meta["_metrics"]["ImageNet-1K"]["acc@1"] == pytest.approx(top1)
    assert w.meta["_ops"] == pytest.approx(gmacs)
    assert w.meta["num_params"] == params


def test_file_size_is_four_bytes_per_parameter_except_googlenet():
    ratios = {n: weights(n).meta["_file_size"] * 2**20 / (4 * ZOO[n][3]) for n in ZOO}
    others = [r for n, r in ratios.items() if n != "googlenet"]
    assert 0.999 < min(others) and max(others) < 1.02
    assert ratios["googlenet"] == pytest.approx(1.97, abs=0.01)
    with torch.device("meta"):
        g = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    assert sum(p.numel() for p in g.parameters()) == 13004888


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "efficientnet_b2", "vgg16"])
def test_ops_are_macs_not_flops(name):
    crop, _, gmacs, _ = ZOO[name]
    net = meta_model(name)
    macs = summary(net, (3, crop, crop)).total_macs
    assert macs / 1e9 == pytest.approx(gmacs, abs=5e-4)
    if name in ("resnet18", "mobilenet_v3_small"):
        with torch.device("meta"):
            x = torch.zeros(1, 3, crop, crop)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            net(x)
        assert counter.get_total_flops() == 2 * macs


def test_pareto_front_of_the_zoo_and_headline_ratios():
    names = list(ZOO)
    front = [names[i] for i in brute_front([(ZOO[n][2], ZOO[n][1]) for n in names])]
    assert front == FRONT
    assert ZOO["vgg19"][2] / ZOO["efficientnet_b3"][2] == pytest.approx(10.75, abs=0.01)
    assert ZOO["efficientnet_b3"][1] - ZOO["vgg19"][1] == pytest.approx(9.63, abs=0.01)
    assert ZOO["vgg16"][2] / ZOO["efficientnet_b0"][2] == pytest.approx(40.1, abs=0.1)
    assert ZOO["resnet18"][2] / ZOO["mobilenet_v3_small"][2] == pytest.approx(31.8, abs=0.05)
    assert ZOO["resnet18"][1] - ZOO["mobilenet_v3_small"][1] == pytest.approx(2.09, abs=0.01)
    v2 = weights("resnet50", "IMAGENET1K_V2").meta
    assert v2["_metrics"]["ImageNet-1K"]["acc@1"] == pytest.approx(80.858) and v2["_ops"] == ZOO["resnet50"][2]


def test_mac_ratio_at_smoke_size():
    r18 = summary(meta_model("resnet18"), (3, 112, 112)).total_macs
    small = summary(meta_model("mobilenet_v3_small"), (3, 112, 112)).total_macs
    assert r18 / small == pytest.approx(28.6, abs=0.05)


def intensity(cin, cout, k, size, groups=1):
    macs = conv_macs(cin, cout, k, size, groups)
    return macs / (4 * (cin * size * size + conv_params(cin, cout, k, groups, bias=False) + cout * size * size))


def test_arithmetic_intensity_of_dense_and_depthwise_layers():
    assert intensity(144, 144, 3, 56) == pytest.approx(134.26, abs=0.01)
    assert intensity(144, 144, 3, 56, groups=144) == pytest.approx(1.1234, abs=1e-4)
    assert intensity(144, 144, 3, 28) == pytest.approx(88.69, abs=0.01)
    assert intensity(144, 144, 3, 28, groups=144) == pytest.approx(1.12, abs=0.005)


def test_mobilenet_v2_block_3_is_expand_depthwise_project():
    block = meta_model("mobilenet_v2").features[3].conv
    assert (block[0][0].in_channels, block[0][0].out_channels) == (24, 144)
    assert block[1][0].groups == 144 and block[1][0].kernel_size == (3, 3) and block[1][0].stride == (1, 1)
    assert (block[2].in_channels, block[2].out_channels) == (144, 24)
    assert isinstance(block[1][2], nn.ReLU6) and isinstance(block[3], nn.BatchNorm2d)  # linear bottleneck


def test_separable_ratio_on_mobilenet_v1_layers():
    layers = [(32, 64, 112, 1), (64, 128, 56, 1), (128, 128, 56, 1), (128, 256, 28, 1), (256, 256, 28, 1),
              (256, 512, 14, 1), (512, 512, 14, 5), (512, 1024, 7, 1), (1024, 1024, 7, 1)]
    std = sep = 0
    for cin, cout, s, times in layers:
        one_std = conv_macs(cin, cout, 3, s)
        one_sep = conv_macs(cin, cin, 3, s, groups=cin) + conv_macs(cin, cout, 1, s)
        assert one_sep / one_std == pytest.approx(1 / cout + 1 / 9)
        std, sep = std + times * one_std, sep + times * one_sep
    assert sum(t for *_, t in layers) == 13
    assert std / sep == pytest.approx(8.7, abs=0.05)


def test_squeeze_excitation_share_in_efficientnet_b0():
    b0 = meta_model("efficientnet_b0")
    se = [m for m in b0.modules() if isinstance(m, torchvision.ops.SqueezeExcitation)]
    assert len(se) == 16
    for block in (m for m in b0.modules() if isinstance(m, TvMBConv)):
        first = block.block[0][0]
        squeeze = next(m for m in block.modules() if isinstance(m, torchvision.ops.SqueezeExcitation))
        assert squeeze.fc1.out_channels == max(1, first.in_channels // 4)  # a quarter of the block's input
    se_params = sum(p.numel() for m in se for p in m.parameters())
    assert se_params == 636540 and 100 * se_params / ZOO["efficientnet_b0"][3] == pytest.approx(12.0, abs=0.05)
    s = summary(b0, (3, 224, 224))
    se_macs = sum(r.macs for r in s if r.name.endswith((".fc1", ".fc2")))
    assert se_macs == 627200 and 100 * se_macs / s.total_macs == pytest.approx(0.16, abs=0.005)
    assert 2 * 96 * 4 + 4 + 96 == sum(p.numel() for p in torchvision.ops.SqueezeExcitation(96, 4).parameters())


def test_efficientnet_lite0_has_no_se_relu6_and_these_blocks():
    from utils.backbones import efficientnet_lite0_timm

    net = efficientnet_lite0_timm(pretrained=False)
    blocks = [b for stage in net.blocks for b in stage]
    assert len(blocks) == 16
    assert all(isinstance(b.se, nn.Identity) for b in blocks)
    acts = {type(m).__name__ for m in net.modules() if isinstance(m, (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish))}
    assert acts == {"ReLU6"}
    params = [sum(p.numel() for p in b.parameters()) for b in blocks]
    assert params == [896, 5136, 8832, 13472, 26240, 32080, 83200, 83200, 106304, 170240, 170240,
                      224160, 476160, 476160, 476160, 605440]
    strides = [b.conv_dw.stride[0] for b in blocks]
    assert [i for i, s in enumerate(strides) if s == 2] == [1, 3, 5, 11]
    assert type(blocks[1].conv_dw).__name__ == "Conv2dSame"        # TF "SAME" padding on stride 2
    assert blocks[0].bn1.eps == 1e-3


def test_compound_scaling_and_released_efficientnets():
    base = 1.2 * 1.1**2 * 1.15**2
    assert base == pytest.approx(1.92, abs=0.005)
    assert [round(base**phi, 2) for phi in range(4)] == [1.0, 1.92, 3.69, 7.08]
    coefficients = {"efficientnet_b0": (1.0, 1.0), "efficientnet_b1": (1.0, 1.1),
                    "efficientnet_b2": (1.1, 1.2), "efficientnet_b3": (1.2, 1.4)}
    b0_counts = None
    rows = {}
    for name, (wm, dm) in coefficients.items():
        net = meta_model(name)
        counts = [sum(isinstance(m, TvMBConv) for m in stage.modules()) for stage in net.features[1:8]]
        b0_counts = b0_counts or counts
        assert counts == [math.ceil(dm * n) for n in b0_counts]
        assert net.classifier[1].in_features == round(1280 * wm)
        res = ZOO[name][0]
        rows[name] = (sum(counts), round(dm * wm**2 * (res / 224) ** 2, 2),
                      round(sum(counts) / 16 * wm**2 * (res / 224) ** 2, 2), round(ZOO[name][2] / ZOO["efficientnet_b0"][2], 2))
    assert b0_counts == [1, 2, 2, 3, 3, 4, 1]
    assert rows == {"efficientnet_b0": (16, 1.0, 1.0, 1.0), "efficientnet_b1": (23, 1.26, 1.65, 1.78),
                    "efficientnet_b2": (23, 2.4, 2.88, 2.82), "efficientnet_b3": (26, 3.62, 4.2, 4.73)}


def test_tf_same_padding_stride_2_is_asymmetric():
    """issue 12: TF "SAME" for k=5 stride 2 on an even map pads 1 top/left and 2 bottom/right; k=3 pads 0 and 1."""
    from timm.layers.padding import get_same_padding
    for n in (8, 112, 224):
        total5, total3 = get_same_padding(n, 5, 2, 1), get_same_padding(n, 3, 2, 1)
        assert (total5 // 2, total5 - total5 // 2) == (1, 2)
        assert (total3 // 2, total3 - total3 // 2) == (0, 1)


def test_mbconv_blocks_drawn_in_the_lesson():
    """The three blocks of the MBConv diagram: where the shortcut is, and the expand/depthwise/SE/project widths."""
    from utils.backbones import efficientnet_lite0_timm

    b0 = meta_model("efficientnet_b0")
    keep, down = b0.features[2][1], b0.features[3][0]
    assert keep.use_res_connect and not down.use_res_connect
    convs = [m for m in keep.block.modules() if isinstance(m, nn.Conv2d)]
    # expand 24 -> 144, depthwise 3x3 on 144, SE 144 -> 6 -> 144, project 144 -> 24
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.groups) for c in convs] == [
        (24, 144, 1, 1), (144, 144, 3, 144), (144, 6, 1, 1), (6, 144, 1, 1), (144, 24, 1, 1)]
    dw = [m for m in down.block.modules() if isinstance(m, nn.Conv2d) and m.groups > 1][0]
    assert (dw.kernel_size[0], dw.stride[0]) == (5, 2)
    assert down.block[0][0].in_channels == 24 and down.block[-1][0].out_channels == 40
    lite_block = efficientnet_lite0_timm(pretrained=False).blocks[1][1]
    assert lite_block.has_skip and isinstance(lite_block.se, nn.Identity)
    assert (lite_block.conv_pw.in_channels, lite_block.conv_pw.out_channels) == (24, 144)


def test_cpu_autocast_bfloat16_runs_the_lesson_models():
    """The precision section runs both models under CPU bfloat16 autocast; outputs stay close to float32."""
    torch.manual_seed(0)
    for name in ("resnet18", "mobilenet_v3_small"):
        net = torchvision.models.get_model(name, weights=None).eval()
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            ref = net(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = net(x)
        assert low.dtype == torch.bfloat16
        assert ((low.float() - ref).abs().max() / ref.std()).item() < 0.5
