"""Small synthetic image data shared by the tests of utils.train and utils.features."""
import torch


def stripe_images(n=128, seed=0):
    """uint8 1 x 16 x 16 noise images; class 1 has a bright horizontal stripe, class 0 a vertical one."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 100, (n, 1, 16, 16), generator=g, dtype=torch.uint8)
    y = torch.arange(n) % 2
    x[y == 1, :, 6:10, :] = 255
    x[y == 0, :, :, 6:10] = 255
    return x, y


def to_float(x):
    return x.float() / 255
