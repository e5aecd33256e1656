"""Facts stated by Lesson 10 (choosing a strategy: dataset size × similarity), checked against the libraries.

The lesson's prose names stages, channel counts, class lists and a few worked numbers; if utils, timm
or the datasets' specs change, these fail before the prose goes stale. No notebook runs here, no
weights are loaded (``pretrained=False``); the whole file takes a few seconds.
"""
import math

import pytest
import torch

from utils.backbones import create
from utils.data import DATASETS, IMAGENETTE_IMAGENET_INDICES, stratified_subset


@pytest.fixture(scope="module")
def lite0():
    return create("efficientnet_lite0", pretrained=False)


def test_lite0_stages_named_in_the_lesson(lite0):
    assert lite0.stages == ["stem", *[f"blocks.{i}" for i in range(7)], "conv_head", "classifier"]
    assert lite0.head_stages == ["classifier"]
    # "top" with top_stages=3 trains blocks.5, blocks.6 and conv_head (section 3)
    assert lite0.feature_stages[-3:] == ["blocks.5", "blocks.6", "conv_head"]


def test_lite0_channel_counts_quoted(lite0):
    channels = {info["module"]: info["num_chs"] for info in lite0.feature_info}
    assert [channels[f"blocks.{i}"] for i in range(1, 5)] == [24, 40, 80, 112]  # "24–112 up to blocks.4"
    assert channels["conv_head"] == lite0.num_features == 1280                 # "conv_head's 1280 features"
    assert lite0.get_classifier().in_features == 1280
    total = sum(p.numel() for p in lite0.parameters())
    assert 3e6 < total < 6e6                                                     # "a few million parameters"


def test_probe_trains_only_the_classifier_parameters(lite0):
    # the visible test of configure_strategy expects 1280 * 3 + 3 trainable parameters for 3 classes
    head = torch.nn.Linear(lite0.head_hidden_size, 3)
    assert sum(p.numel() for p in head.parameters()) == 1280 * 3 + 3


def test_datasets_as_described():
    imagenette, brain = DATASETS["imagenette-160"], DATASETS["brain-mri"]
    assert len(imagenette.classes) == 10 and len(IMAGENETTE_IMAGENET_INDICES) == 10  # ten ImageNet classes
    assert [imagenette.class_names[c] for c in imagenette.classes[:4]] == [
        "tench", "English springer", "cassette player", "chain saw"]
    assert brain.classes == ["glioma", "meningioma", "notumor", "pituitary"]
    assert brain.counts["Training"] == 5708                                    # "all 5,708 brain-MRI training images"
    assert brain.split_folder("train") == "Training" and brain.split_folder("test") == "Testing"


def test_stratified_subsets_are_nested():
    labels = torch.arange(400) % 4
    small = set(stratified_subset(labels, per_class=10, seed=3).tolist())
    large = set(stratified_subset(labels, per_class=50, seed=3).tolist())
    assert small < large


def _mcnemar_exact(b, c):
    n = b + c
    return 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2 ** n)


def test_worked_mcnemar_numbers():
    """The p-values the verdict exercise quotes, and scipy's exact binomial test agreeing with the formula."""
    assert _mcnemar_exact(10, 0) == 2 / 1024
    assert round(_mcnemar_exact(6, 4), 2) == 0.75
    assert _mcnemar_exact(8, 1) == 20 / 512 and round(20 / 512, 3) == 0.039
    assert _mcnemar_exact(7, 1) == 18 / 256 and round(18 / 256, 2) == 0.07
    assert round(_mcnemar_exact(13, 4), 3) == 0.049
    chi2_cc = (abs(13 - 4) - 1) ** 2 / 17                                      # continuity-corrected chi-square
    assert round(math.erfc(math.sqrt(chi2_cc / 2)), 3) == 0.052
    scipy_stats = pytest.importorskip("scipy.stats")
    for b, c in [(10, 0), (6, 4), (8, 1), (13, 4), (40, 61), (0, 0)]:
        if b + c:
            assert math.isclose(scipy_stats.binomtest(b, b + c, 0.5).pvalue, _mcnemar_exact(b, c), rel_tol=1e-9)


def test_cifar10_is_not_from_imagenet():
    spec = DATASETS["cifar10"]
    assert spec.counts == {"train": 50000, "test": 10000}
    assert spec.classes[:4] == ["airplane", "automobile", "bird", "cat"]        # the lesson keeps the first four
    assert "not drawn from ImageNet" in spec.source
    assert "ImageNet" in DATASETS["imagenette-160"].source
