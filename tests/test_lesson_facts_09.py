"""Facts that Lesson 09 (fine-tuning) states in its prose, checked against the libraries.

If timm, torch or the course's utils change behaviour, these fail before the lesson's prose goes stale.
One EfficientNet-Lite0 is built (a few seconds); everything else uses tiny modules.
"""
import math

import pytest
import torch
from torch import nn
from torchvision import transforms as T
from torchvision.transforms import v2

from utils.backbones import create, freeze, layerwise_lrs, param_groups, unfreeze
from utils.data import DATASETS, IMAGENETTE_IMAGENET_INDICES
from utils.train import ONECYCLE_DEFAULT_WARMUP, make_scheduler

LITE0_STAGE_PARAMS = {  # with a 2-way head, as the lesson's trainable_report prints
    "stem": 928, "blocks.0": 896, "blocks.1": 13_968, "blocks.2": 39_712, "blocks.3": 198_480,
    "blocks.4": 446_784, "blocks.5": 1_652_640, "blocks.6": 605_440, "conv_head": 412_160, "classifier": 2_562,
}


@pytest.fixture(scope="module")
def pretrained():
    """(Lite0 with a new 2-way head, its original ImageNet classifier)."""
    model = create("efficientnet_lite0")
    imagenet_head = model.get_classifier()
    model.reset_classifier(2)
    return model, imagenet_head


@pytest.fixture(scope="module")
def lite0(pretrained):
    return pretrained[0]


def test_hymenoptera_sizes_and_one_image_share():
    counts = DATASETS["hymenoptera"].counts
    assert counts == {"train": 244, "val": 153}
    assert f"{100 / counts['val']:.2f}" == "0.65"


def test_lite0_stages_and_parameter_counts(lite0):
    assert lite0.stages == list(LITE0_STAGE_PARAMS)
    for stage, count in LITE0_STAGE_PARAMS.items():
        assert sum(p.numel() for p in lite0.get_submodule(stage).parameters()) == count, stage
    assert sum(p.numel() for p in lite0.parameters()) == 3_373_570
    # the "upper stages + head" strategy trains most of the parameters
    upper = sum(LITE0_STAGE_PARAMS[s] for s in ["blocks.5", "blocks.6", "conv_head", "classifier"])
    assert upper == 2_672_802 and upper / 3_373_570 > 0.75


def test_lite0_batchnorm_layers(lite0):
    bns = [m for m in lite0.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == 49
    assert all(m.momentum == 0.1 and m.eps == 1e-3 for m in bns)


def test_imagenet_classifier_and_imagenette_indices(pretrained):
    head = pretrained[1]
    assert isinstance(head, nn.Linear) and (head.in_features, head.out_features) == (1280, 1000)
    assert IMAGENETTE_IMAGENET_INDICES["n01440764"] == 0          # tench
    assert len(set(IMAGENETTE_IMAGENET_INDICES.values())) == 10


def test_layerwise_rates_of_the_lesson(lite0):
    rates = layerwise_lrs(lite0, 2e-3, 0.7)
    assert list(rates) == lite0.stages
    assert math.isclose(rates["classifier"], 2e-3) and math.isclose(rates["stem"], 2e-3 * 0.7 ** 9)
    assert round(2e-3 / rates["stem"]) == 25


def test_param_groups_leave_frozen_parameters_out():
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    freeze(net, ["0"])
    groups = param_groups(net, {"0": 1e-3, "1": 1e-2})
    assert [g["name"] for g in groups] == ["1"]


def _lrs(schedule, total, warmup, peaks):
    params = [nn.Parameter(torch.zeros(1)) for _ in peaks]
    opt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, peaks)])
    sched = make_scheduler(opt, schedule, total, warmup)
    rows = []
    for _ in range(total):
        rows.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return torch.tensor(rows, dtype=torch.float64)


def test_schedules_as_described():
    peak = 2e-3
    onecycle = _lrs("onecycle", 70, 0, [peak])[:, 0]
    assert math.isclose(onecycle[0].item(), peak / 25, rel_tol=1e-6)
    assert ONECYCLE_DEFAULT_WARMUP == 0.25
    assert abs(int(onecycle.argmax()) - 0.25 * 70) <= 1.5
    assert onecycle[-1] < peak / 1000
    cosine = _lrs("cosine", 70, 7, [peak, peak / 25])
    assert cosine[0, 0] < peak / 5 and math.isclose(cosine[7, 0].item(), peak, rel_tol=1e-9)
    assert cosine[-1, 0] < peak / 100
    assert torch.allclose(cosine[:, 0] / cosine[:, 1], torch.full((70,), 25.0, dtype=torch.float64))
    constant = _lrs("constant", 70, 0, [peak])[:, 0]
    assert torch.all(constant == peak)


def test_requires_grad_false_does_not_freeze_batchnorm_statistics():
    bn = nn.BatchNorm2d(3)
    bn.requires_grad_(False)
    bn.train()
    bn(torch.randn(4, 3, 5, 5))
    assert not torch.equal(bn.running_mean, torch.zeros(3))


def test_model_train_undoes_bn_eval_but_not_the_library_freeze():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    net[1].eval()
    net.train()
    assert net[1].training                 # eval() once is not enough
    freeze(net, ["1"])
    net.train()
    before = net[1].running_mean.clone()
    net(torch.randn(2, 3, 6, 6))
    assert torch.equal(net[1].running_mean, before)
    unfreeze(net, ["1"])
    net(torch.randn(2, 3, 6, 6))
    assert not torch.equal(net[1].running_mean, before)


@pytest.mark.parametrize("make", [lambda ps: torch.optim.AdamW(ps, lr=0.1, weight_decay=0.5),
                                  lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.5)])
def test_optimizers_skip_parameters_without_gradient(make):
    a, b = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3))
    opt = make([a, b])
    (a * 2).sum().backward()
    assert b.grad is None
    opt.step()
    assert torch.equal(b.detach(), torch.ones(3)) and not torch.equal(a.detach(), torch.ones(3))


@pytest.mark.parametrize("flip", [T.RandomHorizontalFlip(0.5), v2.RandomHorizontalFlip(0.5)])
def test_torchvision_transforms_draw_one_flip_per_batch(flip):
    torch.manual_seed(0)
    batch = torch.rand(16, 3, 4, 5)
    outcomes = set()
    for _ in range(20):
        out = flip(batch)
        flipped = [torch.equal(o, x.flip(-1)) for o, x in zip(out, batch)]
        assert len(set(flipped)) == 1      # all images flipped, or none
        outcomes.add(flipped[0])
    assert outcomes == {True, False}


def test_where_the_forgetting_pictures_come_from():
    """Section 6: Imagenette (train and val) is ImageNet training pictures; CIFAR-10 is never-seen; the ants and
    bees are themselves described as an ImageNet subset (printed in section 0)."""
    assert "ImageNet's training set" in DATASETS["imagenette-160"].source
    assert "train and val" in DATASETS["imagenette-160"].source
    assert "never seen" in DATASETS["cifar10"].source and "not drawn from ImageNet" in DATASETS["cifar10"].source
    assert "subset of ImageNet" in DATASETS["hymenoptera"].source


def test_the_old_head_reads_the_pooled_features(pretrained):
    """The probe and the old head read extract_features' pooled vector: the same as forward_head(pre_logits)."""
    from utils.backbones import batch_transform
    from utils.features import extract_features
    model, imagenet_head = pretrained
    model.eval()
    images = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    tf = batch_transform(model, train=False, image_size=64)
    pooled, _ = extract_features(model, (images, torch.zeros(3, dtype=torch.long)), batch_transform=tf, device="cpu")
    with torch.no_grad():
        pre_logits = model.forward_head(model.forward_features(tf(images)), pre_logits=True)
    assert pooled.shape == (3, 1280)
    assert torch.allclose(pooled, pre_logits, atol=1e-5)
    assert imagenet_head(pooled).shape == (3, 1000)


def test_adamw_first_step_moves_every_weight_by_the_learning_rate():
    """Section 6's model answer: AdamW's step is about lr per weight whatever the gradient's size."""
    w = nn.Parameter(torch.randn(50))
    before = w.detach().clone()
    opt = torch.optim.AdamW([w], lr=1e-2, weight_decay=0.0)
    (w * torch.logspace(-3, 3, 50)).sum().backward()
    opt.step()
    assert torch.allclose((w.detach() - before).abs(), torch.full((50,), 1e-2), rtol=1e-3)


def test_lr_grid_holdout_split_and_probe_head():
    """Section 1's held-out split is stratified and disjoint from what the sweep trains on; fit_head with
    batch_size=None is a full-batch logistic regression (one step per epoch)."""
    from utils.data import stratified_subset
    from utils.train import fit_head
    labels = torch.tensor([0] * 123 + [1] * 121)
    held = stratified_subset(labels, fraction=0.33, seed=0)
    assert labels[held].bincount().tolist() == [41, 40]
    torch.manual_seed(0)
    x = torch.randn(40, 5)
    y = (x[:, 0] > 0).long()
    head, history = fit_head(x, y, epochs=30, lr=1e-1, batch_size=None, seed=0, device="cpu")
    assert isinstance(head, nn.Linear) and len(history.batch_losses) == 30
    assert history[-1]["train_acc"] > 0.9
