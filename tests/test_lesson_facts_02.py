"""Reference numbers stated in Lesson 02 (AlexNet and ZFNet), checked against torch/torchvision.

The lesson computes its figures in the notebook; these tests pin the ones its written-answer model
solutions and its markdown state outright, with networks built here from plain ``nn`` layers (not
from the lesson's exercises), so that a torch/torchvision change that moves them is caught.
"""
import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from utils import arithmetic

META = torch.device("meta")


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def paper_alexnet(groups: int = 2) -> nn.Sequential:
    """Krizhevsky et al. 2012 for a 227 x 227 input, LRN after conv1 and conv2, groups in conv2/4/5."""
    lrn = dict(size=5, alpha=5e-4, beta=0.75, k=2.0)
    features = nn.Sequential(
        nn.Conv2d(3, 96, 11, 4), nn.ReLU(), nn.LocalResponseNorm(**lrn), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2, groups=groups), nn.ReLU(), nn.LocalResponseNorm(**lrn), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, 3, padding=1, groups=groups), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1, groups=groups), nn.ReLU(), nn.MaxPool2d(3, 2))
    classifier = nn.Sequential(nn.Flatten(), nn.Dropout(), nn.Linear(9216, 4096), nn.ReLU(), nn.Dropout(),
                               nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000))
    return nn.Sequential(features, classifier)


def zfnet() -> nn.Sequential:
    """The lesson's ZFNet plan (paddings chosen to reproduce the paper's 110-55-26-13-6 figure)."""
    return nn.Sequential(
        nn.Conv2d(3, 96, 7, 2, 1), nn.MaxPool2d(3, 2, 1), nn.Conv2d(96, 256, 5, 2), nn.MaxPool2d(3, 2, 1),
        nn.Conv2d(256, 384, 3, padding=1), nn.Conv2d(384, 384, 3, padding=1), nn.Conv2d(384, 256, 3, padding=1),
        nn.MaxPool2d(3, 2))


@pytest.fixture(scope="module")
def paper_table():
    with META:
        model = paper_alexnet()
    return arithmetic.summary(model, (3, 227, 227))


def test_conv1_is_55_at_227_and_54_at_224():
    conv1 = nn.Conv2d(3, 96, 11, 4, device=META)
    assert tuple(conv1(torch.empty(1, 3, 227, 227, device=META)).shape) == (1, 96, 55, 55)
    assert conv1(torch.empty(1, 3, 224, 224, device=META)).shape[-1] == 54
    tv_conv1 = torchvision.models.alexnet(weights=None).features[0]
    assert (tv_conv1.out_channels, tv_conv1.kernel_size, tv_conv1.stride, tv_conv1.padding) == (64, (11, 11), (4, 4), (2, 2))


def test_parameter_counts():
    with META:
        two_gpus, one_gpu = paper_alexnet(groups=2), paper_alexnet(groups=1)
        tv = torchvision.models.alexnet(weights=None)
    assert n_params(two_gpus) == 60_965_224
    assert n_params(one_gpu) == 62_378_344      # the often-quoted "62.3M" is AlexNet without groups
    assert n_params(one_gpu) - n_params(two_gpus) == 1_413_120
    assert n_params(tv) == 61_100_840
    assert torchvision.models.AlexNet_Weights.IMAGENET1K_V1.meta["num_params"] == 61_100_840
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in tv.modules())


def test_written_answer_fc6_vs_conv2(paper_table):
    """The model solution to the fc6-vs-conv2 question quotes these four numbers."""
    conv2, fc6 = paper_table["0.4"], paper_table["1.2"]
    assert conv2.params == 307_456 and conv2.output_shape[1:] == (27, 27)
    assert conv2.macs == 307_200 * 27 * 27 == 223_948_800
    assert fc6.params == 37_752_832 and fc6.macs == 37_748_736
    assert nn.Conv2d(96, 256, 5, padding=2, device=META).weight.numel() + 256 == 614_656


def test_fc_layers_hold_almost_all_parameters(paper_table):
    fc = sum(r.params for r in paper_table if r.layer_type == "Linear")
    fc_macs = sum(r.macs for r in paper_table if r.layer_type == "Linear")
    assert round(100 * fc / paper_table.total_params, 1) == 96.2
    assert round(100 * fc_macs / paper_table.total_macs, 1) == 8.1
    assert round(paper_table.total_macs / 1e9, 2) == 0.72


def test_zfnet_map_sizes_and_receptive_fields():
    net = zfnet()
    x, sides = torch.empty(1, 3, 224, 224, device=META), []
    for layer in net.to(META):
        x = layer(x)
        sides.append(x.shape[-1])
    assert [sides[0], sides[1], sides[2], sides[3], sides[7]] == [110, 55, 26, 13, 6]   # conv1 pool1 conv2 pool2 pool5
    assert arithmetic.receptive_field(net, (3, 224, 224), "0") == 7
    with META:
        alex = paper_alexnet()
    assert arithmetic.receptive_field(alex, (3, 227, 227), "0.0") == 11
    assert arithmetic.receptive_field(alex, (3, 227, 227), "0.3") == 19
    assert arithmetic.receptive_field(alex, (3, 227, 227), "0.14") == 195


def test_local_response_norm_divides_alpha_by_size():
    """nn.LocalResponseNorm computes k + alpha/n * sum: the paper's alpha=1e-4 needs alpha=5e-4 here."""
    a = torch.relu(torch.randn(1, 8, 3, 3, generator=torch.Generator().manual_seed(0)) * 30)
    padded = nn.functional.pad(a.pow(2), (0, 0, 0, 0, 2, 2))
    window = sum(padded[:, j:j + 8] for j in range(5))
    paper = a / (2.0 + 1e-4 * window).pow(0.75)
    torch.testing.assert_close(nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)(a), paper)
    assert not torch.allclose(nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(a), paper)


def test_sgd_weight_decay_enters_before_momentum():
    """PyTorch's SGD: v <- mu v + (g + lambda w); w <- w - lr v, as the lesson's recipe section states."""
    w = nn.Parameter(torch.tensor([1.0]))
    opt = torch.optim.SGD([w], lr=0.01, momentum=0.9, weight_decay=5e-4)
    v, expected = 0.0, 1.0
    for g in (0.5, -0.2, 0.3):
        w.grad = torch.tensor([g])
        v = 0.9 * v + (g + 5e-4 * expected)
        expected -= 0.01 * v
        opt.step()
    assert w.item() == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------------------------------ issue 12 additions
def test_sgd_paper_form_differs_from_torch_at_a_learning_rate_drop():
    """Paper: v <- 0.9 v - lr g, w <- w + v. torch: v <- 0.9 v + g, w <- w - lr v. Same until lr changes."""
    lrs = [0.01] * 40 + [0.001] * 80
    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w], lr=lrs[0], momentum=0.9)
    torch_steps, paper_steps, v = [], [], 0.0
    for lr in lrs:
        opt.param_groups[0]["lr"] = lr
        before = w.item()
        w.grad = torch.ones(1)
        opt.step()
        torch_steps.append(abs(w.item() - before))
        v = 0.9 * v - lr
        paper_steps.append(abs(v))
    assert np.allclose(paper_steps[:40], torch_steps[:40], rtol=1e-4)
    assert round(torch_steps[40] / torch_steps[39], 2) == 0.10
    assert round(paper_steps[40] / paper_steps[39], 2) == 0.91
    assert next(i - 40 for i in range(40, 120) if paper_steps[i] < 1.1 * torch_steps[i]) == 42


def _apparent_period(period, kernel, stride, length=1024):
    x = torch.arange(length, dtype=torch.float64)
    taps = torch.arange(kernel, dtype=torch.float64)
    response = nn.functional.conv1d(torch.cos(2 * np.pi * x / period)[None, None],
                                    torch.cos(2 * np.pi * taps / period)[None, None], stride=stride)[0, 0]
    spectrum = torch.fft.rfft(response - response.mean()).abs()
    return stride * len(response) / spectrum.argmax().item()


@pytest.mark.parametrize("kernel, stride, aliased", [(11, 4, [3, 5, 6]), (7, 2, [3])])
def test_stride_decides_which_periods_alias(kernel, stride, aliased):
    """Nyquist: sampling every s px represents periods > 2s only; period 3 aliases at stride 2 too."""
    got = [p for p in (3, 5, 6, 10) if abs(_apparent_period(p, kernel, stride) - p) > 0.25]
    assert got == aliased == [p for p in (3, 5, 6, 10) if p <= 2 * stride]


def test_zfnet_pools_before_normalising_same_sizes():
    """conv -> pool -> LRN (ZFNet's order) keeps the 110-55-26-13 sizes: LRN keeps the size either way."""
    net = nn.Sequential(nn.Conv2d(3, 96, 7, 2, 1), nn.ReLU(), nn.MaxPool2d(3, 2, 1), nn.LocalResponseNorm(5),
                        nn.Conv2d(96, 256, 5, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1), nn.LocalResponseNorm(5))
    x, sides = torch.empty(1, 3, 224, 224, device=META), []
    for layer in net.to(META):
        x = layer(x)
        sides.append(x.shape[-1])
    assert sides == [110, 110, 55, 55, 26, 26, 13, 13]
