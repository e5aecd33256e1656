"""Reference facts stated by Lesson 08 (feature extraction), checked against the libraries.

If torchvision, timm or the course's backbones change, these fail before the lesson's prose goes stale.
Backbones are built without pretrained weights (shapes, counts and BatchNorm behaviour do not depend on
them), inputs are tiny, and the whole file runs in a few seconds.
"""
import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from utils.backbones import count_trainable, create, freeze
from utils.data import DATASETS
from utils.features import extract_features


def batchnorms(model):
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@pytest.fixture(scope="module")
def lite0():
    return create("efficientnet_lite0", pretrained=False).eval()


def test_resnet18_fc_swap_counts():
    """The tutorial's idiom: 11,689,512 parameters with the ImageNet head, 1,026 trainable after the swap."""
    with torch.device("meta"):
        net = torchvision.models.resnet18(weights=None)
    assert sum(p.numel() for p in net.parameters()) == 11_689_512
    assert net.fc.in_features == 512
    for p in net.parameters():
        p.requires_grad = False
    net.fc = nn.Linear(512, 2)
    assert sum(p.numel() for p in net.parameters()) == 11_177_538
    assert count_trainable(net) == 1026 == 512 * 2 + 2


def test_lite0_head_swap_counts(lite0):
    """EfficientNet-Lite0: 1280 features; with a 2-way head 3,373,570 parameters, 2,562 trainable."""
    model = copy.deepcopy(lite0)
    assert model.num_features == model.head_hidden_size == 1280
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
    for p in model.parameters():
        p.requires_grad = False
    model.reset_classifier(2)
    assert sum(p.numel() for p in model.parameters()) == 3_373_570
    assert count_trainable(model) == 2562


def test_lite0_batchnorm_inventory(lite0):
    """49 BatchNorm layers, 147 buffers, 42,016 running-statistics values, momentum 0.1 everywhere."""
    layers = batchnorms(lite0)
    assert len(layers) == 49
    assert sum(len(list(m.buffers(recurse=False))) for m in layers) == 147
    assert sum(m.running_mean.numel() + m.running_var.numel() for m in layers) == 42_016
    assert {m.momentum for m in layers} == {0.1}


def test_lite0_stages_channels_and_reductions(lite0):
    info = [(i["module"], i["num_chs"], i["reduction"]) for i in lite0.feature_info]
    assert info == [("stem", 32, 2), ("blocks.0", 16, 2), ("blocks.1", 24, 4), ("blocks.2", 40, 8),
                    ("blocks.3", 80, 16), ("blocks.4", 112, 16), ("blocks.5", 192, 32), ("blocks.6", 320, 32),
                    ("conv_head", 1280, 32)]


def test_hymenoptera_sizes_and_one_image():
    counts = DATASETS["hymenoptera"].counts
    assert counts == {"train": 244, "val": 153}
    assert f"{100 / counts['val']:.2f}" == "0.65"


def test_requires_grad_false_does_not_freeze_batchnorm_stats(lite0):
    """In train() mode a forward pass rewrites every BN's running statistics, gradients or not."""
    model = copy.deepcopy(lite0)
    for p in model.parameters():
        p.requires_grad = False
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64))
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) == 147
    assert all(k.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked") for k in changed)


def test_freeze_keeps_batchnorm_stats_through_train(lite0):
    model = copy.deepcopy(lite0)
    freeze(model)
    model.reset_classifier(2)
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("classifier.")}
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items() if k in before)
    assert count_trainable(model) == 2562


def test_stage_features_equal_cached_features(lite0):
    """Pooled conv_head output (forward_stages) = pooled forward_features = extract_features' vectors."""
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        staged = lite0.forward_stages(x, ["conv_head"])["conv_head"].mean(dim=(2, 3))
        direct = lite0.forward_features(x).mean(dim=(2, 3))
    cached, labels = extract_features(lite0, (x, torch.zeros(3, dtype=torch.long)), device="cpu")
    assert torch.allclose(staged, direct) and torch.allclose(cached, direct, atol=1e-5)
    assert cached.shape == (3, 1280) and labels.tolist() == [0, 0, 0]


def test_sklearn_logistic_regression_matches_mean_ce_plus_half_lambda_norm():
    """LogisticRegression(C=1/(lambda n)) solves min mean CE + lambda/2 ||W||^2 (bias free), 3+ classes."""
    sklearn = pytest.importorskip("sklearn.linear_model")
    torch.manual_seed(0)
    n, d, k, wd = 60, 6, 3, 0.02
    x = torch.randn(n, d)
    y = torch.arange(n) % k
    x[:, :k] += 1.5 * F.one_hot(y, k)
    head = nn.Linear(d, k)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    opt = torch.optim.LBFGS(head.parameters(), lr=1, max_iter=300, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(head(x), y) + 0.5 * wd * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    reference = sklearn.LogisticRegression(C=1 / (wd * n), tol=1e-10, max_iter=10_000).fit(x.numpy(), y.numpy())
    theirs = torch.as_tensor(reference.predict_proba(x.numpy())).float()
    assert (head(x).softmax(dim=1).detach() - theirs).abs().max() < 2e-3
