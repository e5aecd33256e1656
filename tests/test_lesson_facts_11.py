"""Facts Lesson 11 (pretraining without labels) relies on, checked against torch and the course's data layer.

The lesson computes its numbers in cells; these tests fail first if a library changes behaviour under it:
how torch.rot90 turns an image, what a stride-2 transposed convolution does to a side, how BatchNorm
statistics react to freezing, the sizes of the lesson's networks, and Fashion-MNIST's split sizes.
Everything is small; the file runs in a few seconds.
"""
import pytest
import torch
from torch import nn

from utils.data import FASHION_MNIST_CLASSES, DatasetMissingError, get_dataset, stratified_subset


def conv_bn_relu(c_in, c_out, stride=1):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def reference_encoder(code_dim=64, width=32, image_size=28):
    """The lesson's Encoder, layer for layer (Exercise 1)."""
    side = image_size // 4
    return nn.Sequential(conv_bn_relu(1, width), conv_bn_relu(width, width, 2), conv_bn_relu(width, 2 * width),
                         conv_bn_relu(2 * width, 2 * width, 2), nn.Flatten(), nn.Linear(2 * width * side * side, code_dim))


def reference_decoder(code_dim=64, width=32, image_size=28):
    """The lesson's Decoder, layer for layer (Exercise 2)."""
    side = image_size // 4
    return nn.Sequential(nn.Linear(code_dim, 2 * width * side * side), nn.ReLU(), nn.Unflatten(1, (2 * width, side, side)),
                         nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.ConvTranspose2d(width, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, 1, 3, padding=1), nn.Sigmoid())


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def test_network_sizes_stated_in_the_tests():
    assert n_params(reference_encoder(64, 32)) == 265_952
    assert n_params(reference_decoder(64, 32)) == 253_409
    assert n_params(reference_encoder(64, 16)) == 116_880      # smoke mode's width
    assert n_params(reference_decoder(64, 16)) == 114_417
    x = torch.rand(2, 1, 28, 28)
    code = reference_encoder()(x)
    assert code.shape == (2, 64)
    assert reference_decoder()(code).shape == (2, 1, 28, 28)
    assert round(28 * 28 / 64, 1) == 12.2                      # the bottleneck's reduction, printed by the lesson


def test_transposed_convolution_k4_s2_p1_doubles_the_side():
    for n in (3, 7, 14, 20):
        up = nn.ConvTranspose2d(1, 1, kernel_size=4, stride=2, padding=1)
        assert up(torch.zeros(1, 1, n, n)).shape[-1] == 2 * n == (n - 1) * 2 - 2 * 1 + 4


def test_rot90_turns_counter_clockwise():
    image = torch.tensor([[1, 2], [3, 4]])
    assert torch.rot90(image, 1, dims=(-2, -1)).tolist() == [[2, 4], [1, 3]]
    assert torch.rot90(image, 2, dims=(-2, -1)).tolist() == [[4, 3], [2, 1]]
    assert torch.equal(torch.rot90(image, 2, dims=(-2, -1)), image.flip(-1).flip(-2))
    assert torch.equal(torch.rot90(image, 4, dims=(-2, -1)), image)
    assert torch.rot90(torch.zeros(1, 1, 3, 4), 1, dims=(-2, -1)).shape == (1, 1, 4, 3)  # why rotate_batch wants squares


def test_frozen_batchnorm_still_updates_statistics_in_train_mode():
    bn = nn.BatchNorm2d(3).requires_grad_(False)
    bn.train()
    bn(torch.randn(4, 3, 5, 5) + 2.0)
    assert not torch.equal(bn.running_mean, torch.zeros(3)), "requires_grad=False does not freeze running statistics"
    frozen = nn.BatchNorm2d(3).requires_grad_(False).eval()
    frozen(torch.randn(4, 3, 5, 5) + 2.0)
    assert torch.equal(frozen.running_mean, torch.zeros(3)), "eval() does"


def test_stratified_subsets_are_nested_and_balanced():
    labels = torch.arange(10).repeat(30)
    small = stratified_subset(labels, per_class=2, seed=0)
    big = stratified_subset(labels, per_class=5, seed=0)
    assert set(small.tolist()) <= set(big.tolist())
    assert torch.bincount(labels[big]).tolist() == [5] * 10


def test_fashion_mnist_splits():
    try:
        train, test = get_dataset("fashion-mnist", "train", download=False), get_dataset("fashion-mnist", "test", download=False)
    except DatasetMissingError:
        pytest.skip("Fashion-MNIST is not installed here")
    assert len(FASHION_MNIST_CLASSES) == 10
    assert len(train) == 60_000 and len(test) == 10_000
    assert torch.bincount(torch.as_tensor(train.targets)).tolist() == [6000] * 10   # UNLABELED_PER_CLASS = 6000
    assert torch.bincount(torch.as_tensor(test.targets)).tolist() == [1000] * 10    # TEST_PER_CLASS = 1000


def test_equal_steps_whatever_the_label_count():
    """The lesson fills every fine-tuning epoch to exactly FT_EPOCH_SIZE images (whole copies of the labelled set
    plus a sample of it), so 10, 50 and 200 labels per class take the same number of steps; repeating the set
    ceil(FT_EPOCH_SIZE / n) times, as an earlier version did, gave 16, 19 and 31 steps per epoch."""
    for epoch_size, batch in ((2048, 128), (512, 64)):
        for per_class in (10, 50, 200):
            n = 10 * per_class
            copies, extra = divmod(epoch_size, n)
            assert copies * n + extra == epoch_size
            assert (copies * n + extra) // batch == epoch_size // batch
    old = [(-(-2048 // (10 * k))) * 10 * k // 128 for k in (10, 50, 200)]
    assert old == [16, 19, 31]
