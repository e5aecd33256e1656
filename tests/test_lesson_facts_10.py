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


def test_worked_noise_numbers():
    assert math.isclose(math.sqrt(0.8 * 0.2 / 400), 0.02)                      # "about 2 points at a = 0.8, n = 400"
    noise = math.sqrt(0.9 * 0.1 / 400 + 0.7 * 0.3 / 400)
    assert round(100 * noise, 1) == 2.7                                        # "noise 2.7 points"
    assert round(math.erf(2 / math.sqrt(2)), 3) == 0.954                       # z = 2: "roughly a 95% test"
