"""Facts stated by Lesson 12 (few-shot, zero-shot, domain shift, detection heads), checked against the libraries.

The detector is rebuilt here the way the lesson builds it (EfficientNet-Lite0 stages + torchvision's FPN,
RPN and RoI heads), without pretrained weights: parameter counts do not depend on the values.
"""
import statistics
from collections import OrderedDict

import pytest
import torch
import torchvision
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from utils.backbones import create, imagenet_classes
from utils.data import IMAGENETTE_CLASSES, dataset_spec

FPN_STAGES = ("blocks.2", "blocks.4", "blocks.6")


class StagesWithFPN(nn.Module):
    def __init__(self, backbone, stages=FPN_STAGES, out_channels=256):
        super().__init__()
        info = {row["module"]: row for row in backbone.feature_info}
        backbone.conv_head = nn.Identity()
        backbone.reset_classifier(0)
        self.body, self.stages = backbone, list(stages)
        self.fpn = FeaturePyramidNetwork([info[s]["num_chs"] for s in stages], out_channels,
                                         extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x):
        maps = self.body.forward_stages(x, self.stages)
        return self.fpn(OrderedDict((str(i), m) for i, m in enumerate(maps.values())))


def count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def lite0():
    return create("efficientnet_lite0", pretrained=False)


@pytest.fixture(scope="module")
def detector():
    backbone = create("efficientnet_lite0", pretrained=False)
    levels = len(FPN_STAGES) + 1
    return FasterRCNN(StagesWithFPN(backbone), num_classes=91,
                      rpn_anchor_generator=AnchorGenerator(tuple((32 * 2 ** i,) for i in range(levels)),
                                                           ((0.5, 1.0, 2.0),) * levels),
                      box_roi_pool=MultiScaleRoIAlign(["0", "1", "2"], 7, 2), min_size=128, max_size=128,
                      image_mean=[0.5] * 3, image_std=[0.5] * 3).eval()


def test_imagenette_classes_are_imagenet_rows():
    names = imagenet_classes()
    assert [names[i] for _, _, i in IMAGENETTE_CLASSES] == [
        "tench", "English springer", "cassette player", "chain saw", "church", "French horn",
        "garbage truck", "gas pump", "golf ball", "parachute"]


def test_brain_mri_classes_have_no_imagenet_row():
    names = {n.lower() for n in imagenet_classes()}
    assert not [c for c in dataset_spec("brain-mri").class_names.values() if c.lower() in names]


def test_z_for_95_percent():
    assert round(statistics.NormalDist().inv_cdf(0.975), 2) == 1.96


def test_fpn_stages_of_lite0(lite0):
    info = {row["module"]: (row["num_chs"], row["reduction"]) for row in lite0.feature_info}
    assert [info[s] for s in FPN_STAGES] == [(40, 8), (112, 16), (320, 32)]
    assert (lite0.conv_head.conv.in_channels, lite0.conv_head.conv.out_channels) == (320, 1280)
    assert lite0.num_features == 1280


def test_bn_affine_and_head_are_under_two_percent(lite0):
    net = create("efficientnet_lite0", pretrained=False, num_classes=10)
    affine = sum(p.numel() for m in net.modules() if isinstance(m, _BatchNorm) for p in m.parameters(recurse=False))
    tuned = affine + count(net.get_classifier())
    assert 0.01 < tuned / count(net) < 0.02


def test_detector_parts(detector):
    rpn = 256 * 256 * 9 + 256 + 256 * 3 + 3 + 256 * 12 + 12
    assert count(detector.rpn) == rpn
    fpn = sum(c * 256 + 256 for c in (40, 112, 320)) + 3 * (256 * 256 * 9 + 256)
    assert count(detector.backbone.fpn) == fpn
    box_head = detector.roi_heads.box_head
    assert box_head.fc6.in_features == 256 * 7 * 7 == 12544 and box_head.fc6.out_features == 1024
    assert count(box_head) == 12544 * 1024 + 1024 + 1024 * 1024 + 1024
    assert count(detector.roi_heads.box_predictor) == 1024 * 91 + 91 + 1024 * 91 * 4 + 91 * 4
    body = count(detector.backbone.body)
    assert body == count(create("efficientnet_lite0", pretrained=False)) - (320 * 1280 + 2 * 1280) - (1280 * 1000 + 1000)
    assert body < 0.2 * count(detector)          # "the pretrained backbone is only ~15% of the detector"
    assert count(detector.roi_heads) > 0.7 * count(detector)


def test_detector_forward_in_eval(detector):
    with torch.no_grad():
        batch, _ = detector.transform([torch.rand(3, 128, 128)])
        features = detector.backbone(batch.tensors)
    assert list(features) == ["0", "1", "2", "pool"]
    assert [tuple(f.shape[-2:]) for f in features.values()] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    assert detector.rpn.anchor_generator.num_anchors_per_location() == [3, 3, 3, 3]


def test_resnet50_backbone_size():
    with torch.device("meta"):
        net = torchvision.models.resnet50(weights=None)
    assert round((count(net) - count(net.fc)) / 1e6, 1) == 23.5


def test_fc6_share_of_resnet50_fpn_faster_rcnn():
    with torch.device("meta"):
        net = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    fc6 = count(net.roi_heads.box_head.fc6)
    assert fc6 == 12544 * 1024 + 1024
    assert 0.30 < fc6 / count(net) < 0.32          # "31% of the detector" on ResNet-50 + FPN


def test_class_sorted_batches_leave_out_between_class_variance():
    """The lesson's toy channel: batch variances of class-sorted batches miss the variance between class means."""
    labels = torch.arange(10).repeat_interleave(64)
    x = (labels == 0).float() * 3 + 0.5 * torch.randn(640, generator=torch.Generator().manual_seed(0))
    shuffled = x[torch.randperm(640, generator=torch.Generator().manual_seed(0))]
    sorted_mean = torch.stack([b.var() for b in x.split(64)]).mean()
    shuffled_mean = torch.stack([b.var() for b in shuffled.split(64)]).mean()
    assert sorted_mean < 0.4 * x.var() and abs(shuffled_mean / x.var() - 1) < 0.1


def test_cifar10_is_not_imagenet_and_imagenette_is():
    assert "not drawn from ImageNet" in dataset_spec("cifar10").source
    assert "training set" in dataset_spec("imagenette-160").source


def test_torchvision_detectors_freeze_bn_affine_too():
    """The lesson's detection section: fasterrcnn_resnet50_fpn on pretrained weights builds its ResNet with
    FrozenBatchNorm2d, which fixes the statistics and gamma, beta (buffers, not parameters)."""
    import inspect

    from torchvision.models.detection import faster_rcnn
    from torchvision.ops.misc import FrozenBatchNorm2d
    assert "FrozenBatchNorm2d if is_trained else nn.BatchNorm2d" in inspect.getsource(faster_rcnn.fasterrcnn_resnet50_fpn)
    with torch.device("meta"):
        net = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    frozen = [m for m in net.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert frozen and not any(isinstance(m, _BatchNorm) for m in net.modules())
    assert all(not list(m.parameters(recurse=False)) and {"weight", "bias"} <= dict(m.named_buffers()).keys()
               for m in frozen)
