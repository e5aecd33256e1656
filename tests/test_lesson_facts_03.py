"""Reference numbers stated in Lesson 03 (VGG), checked against torch/torchvision.

If one of these fails after a library upgrade, the lesson's prose (rendered from computed values) is still
right, but its recap, written-answer model solutions and this file need a look.
"""
import pytest
import torch
import torchvision
from torch import nn

from utils import arithmetic

VGG16_PARAMS = 138_357_544
CFG_C = [64, 64, "M", 128, 128, "M", 256, 256, (256, 1), "M", 512, 512, (512, 1), "M", 512, 512, (512, 1), "M"]


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def meta_vgg(name: str) -> nn.Module:
    with torch.device("meta"):
        return torchvision.models.get_model(name, weights=None)


def vgg_from_table(table) -> nn.Module:
    """VGG with torchvision's head from a table that may hold (channels, kernel) tuples (config C)."""
    layers, c_in = [], 3
    for v in table:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        c, k = v if isinstance(v, tuple) else (v, 3)
        layers += [nn.Conv2d(c_in, c, k, padding=k // 2), nn.ReLU(inplace=True)]
        c_in = c
    with torch.device("meta"):
        model = torchvision.models.VGG(nn.Sequential(*layers), init_weights=False)
    return model


@pytest.fixture(scope="module")
def vgg16_summary():
    return arithmetic.summary(meta_vgg("vgg16"), (3, 224, 224))


def test_parameter_counts():
    assert n_params(meta_vgg("vgg16")) == VGG16_PARAMS
    assert n_params(meta_vgg("vgg19")) == 143_667_240
    assert n_params(meta_vgg("vgg11")) == 132_863_336
    with torch.device("meta"):
        assert n_params(vgg_from_table(CFG_C)) == 133_638_952


def test_fc6_share_and_mac_split(vgg16_summary):
    fc6 = vgg16_summary.row("classifier.0")
    assert fc6.params == 102_764_544
    assert round(100 * fc6.params / VGG16_PARAMS, 1) == 74.3
    fc_macs = sum(r.macs for r in vgg16_summary if r.layer_type == "Linear")
    assert round(100 * fc_macs / vgg16_summary.total_macs, 2) == 0.80
    conv1_2 = vgg16_summary.row("features.2")
    assert conv1_2.macs == 1_849_688_064
    assert round(100 * conv1_2.macs / vgg16_summary.total_macs, 1) == 12.0


def test_receptive_fields(vgg16_summary):
    assert vgg16_summary.row("features.28").rf == 196      # conv5_3
    assert vgg16_summary.row("features.30").rf == 212      # pool5
    assert arithmetic.receptive_field(meta_vgg("vgg16"), (224, 224), "features.30") == 212


def test_macs_equal_torchvision_ops():
    """torchvision's `_ops` ("GFLOPS" in its docs) are GMACs."""
    for name in ["vgg11", "vgg13", "vgg16", "vgg19"]:
        ops = torchvision.models.get_model_weights(name).IMAGENET1K_V1.meta["_ops"]
        macs = arithmetic.summary(meta_vgg(name), (3, 224, 224)).total_macs
        assert round(macs / 1e9, 3) == pytest.approx(ops, abs=1e-3), name
    assert arithmetic.summary(meta_vgg("vgg16"), (3, 224, 224)).total_macs == 15_470_264_320


def test_activation_counts(vgg16_summary):
    by_type = {}
    for r in vgg16_summary:
        by_type[r.layer_type] = by_type.get(r.layer_type, 0) + r.activations
    walkthrough = 3 * 224 * 224 + by_type["Conv2d"] + by_type["MaxPool2d"] + by_type["Linear"]
    assert walkthrough == 15_237_608                        # ~61 MB in fp32, not "24M ~ 93 MB"
    assert walkthrough + by_type["ReLU"] == 28_793_320      # separate ReLU outputs: ~115 MB
    assert by_type["Conv2d"] + by_type["MaxPool2d"] == 15_077_888
    block1 = sum(vgg16_summary.row(f"features.{i}").activations for i in (0, 2, 4))
    assert round(100 * block1 / 15_077_888) == 48


def test_autograd_saves_about_73_mb():
    with torch.device("meta"):
        model = torchvision.models.vgg16(weights=None)
    model = model.to_empty(device="cpu").train()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in weights:
            storages[ptr] = max(storages.get(ptr, 0), t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(torch.randn(1, 3, 224, 224))
    assert 72e6 < sum(storages.values()) < 75e6           # 73,355,264 bytes with torch 2.x


def test_weights_metadata():
    expected = {  # name: (acc@1, acc@5, _ops)
        "vgg11": (69.02, 88.628, 7.609), "vgg16": (71.592, 90.382, 15.47), "vgg19": (72.376, 90.876, 19.632),
        "vgg16_bn": (73.36, 91.516, 15.47), "vgg19_bn": (74.218, 91.842, 19.632),
    }
    for name, (top1, top5, ops) in expected.items():
        meta = torchvision.models.get_model_weights(name).IMAGENET1K_V1.meta
        assert meta["_metrics"]["ImageNet-1K"]["acc@1"] == pytest.approx(top1)
        assert meta["_metrics"]["ImageNet-1K"]["acc@5"] == pytest.approx(top5)
        assert meta["_ops"] == pytest.approx(ops)
        assert meta["_file_size"] == pytest.approx(4 * meta["num_params"] / 2**20, abs=0.2)


def test_three_3x3_versus_7x7():
    c = 512
    stack = 3 * arithmetic.conv_params(c, c, 3)
    single = arithmetic.conv_params(c, c, 7)
    assert round(100 * (1 - stack / single)) == 45
    assert round(27 / 49, 3) == 0.551


# ------------------------------------------------------------------------------------------ issue 12 additions
def test_most_expensive_layer_is_a_six_way_tie(vgg16_summary):
    convs = [r for r in vgg16_summary if r.layer_type == "Conv2d"]
    top = max(r.macs for r in convs)
    names = [f"conv{b}_{i}" for b, n in zip(range(1, 6), (2, 2, 3, 3, 3)) for i in range(1, n + 1)]
    tied = [name for name, r in zip(names, convs) if r.macs == top]
    assert tied == ["conv1_2", "conv2_2", "conv3_2", "conv3_3", "conv4_2", "conv4_3"]
    assert round(top / 1e9, 2) == 1.85


def test_file_size_is_close_to_but_not_params_times_4():
    gaps = []
    for name in ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]:
        meta = torchvision.models.get_model_weights(name).IMAGENET1K_V1.meta
        gaps.append(abs(meta["_file_size"] / (4 * meta["num_params"] / 2**20) - 1))
    assert 0 < max(gaps) < 1e-4


def _dense(model):
    layers, first = [model.features], True
    for module in model.classifier:
        if not isinstance(module, nn.Linear):
            layers.append(module)
            continue
        k = 7 if first else 1
        c = module.in_features // (k * k)
        conv = nn.Conv2d(c, module.out_features, k, device=module.weight.device)
        conv.weight = nn.Parameter(module.weight.detach().reshape(module.out_features, c, k, k))
        conv.bias = nn.Parameter(module.bias.detach())
        layers.append(conv)
        first = False
    return nn.Sequential(*layers)


def test_fc_layers_as_convolutions_give_a_class_map():
    model = torchvision.models.VGG(torchvision.models.vgg.make_layers([4, "M", 4, "M", 4, "M", 4, "M", 512, "M"]),
                                   num_classes=7, init_weights=False).eval()
    dense = _dense(model).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(dense(x).flatten(1), model(x), atol=1e-4, rtol=1e-4)
        big = torch.randn(1, 3, 288, 288)
        out, f = dense(big), model.features(big)
        assert out.shape == (1, 7, 3, 3)
        torch.testing.assert_close(out[:, :, 2, 1], model.classifier(f[:, :, 2:9, 1:8].flatten(1)), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("size, grid, dense_gmacs, ratio", [(256, 2, 20.5, 3.0), (384, 6, 49.6, 11.2)])
def test_dense_evaluation_cost(size, grid, dense_gmacs, ratio):
    with torch.device("meta"):
        dense = _dense(torchvision.models.vgg16(weights=None))
        crop = arithmetic.summary(torchvision.models.vgg16(weights=None), (3, 224, 224)).total_macs
    cost = arithmetic.summary(dense, (3, size, size)).total_macs
    assert (size // 32 - 6) == grid
    assert round(cost / 1e9, 1) == dense_gmacs
    assert round(grid * grid * crop / cost, 1) == ratio
