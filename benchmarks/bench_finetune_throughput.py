"""Fine-tuning throughput: ``utils.train.fit`` on decoded tensors vs the tutorial-style loop.

Both sides fine-tune every layer of the same backbone (EfficientNet-Lite0, ImageNet weights) on the
same hymenoptera training images, with the same batch size, optimizer and augmentation family
(random resized crop + horizontal flip):

1. The PyTorch tutorial's way: a ``DataLoader`` over the JPEG folder decodes and augments every image
   with PIL in every epoch (``--workers`` processes), float32, the default memory layout.
2. The course's way: ``utils.data.load_tensors`` decodes once into a uint8 tensor (on the GPU when
   there is one); ``utils.train.fit`` crops, flips and normalises whole batches on the device, with
   mixed precision and channels_last on CUDA (off on the CPU, where they do not help).

One untimed warm-up epoch each (cuDNN autotuning, caches, worker start-up), then ``--epochs`` timed
epochs. Reported: training images per second, and last, ``speedup: N.Nx`` (2's images/s over 1's).
The issue's target, on a GPU: at least 3x. On a CPU the network's arithmetic dominates both loops,
so expect a much smaller gain there. Usage::

    python benchmarks/bench_finetune_throughput.py            # 224 px, all 244 images, 3 epochs
    python benchmarks/bench_finetune_throughput.py --quick    # 96 px, 16 images per class, 1 epoch (CPU check)
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: spinning threads slow busy machines

import argparse  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader, Subset  # noqa: E402

from utils.backbones import batch_transform, create, transforms  # noqa: E402
from utils.data import get_dataset, load_tensors, stratified_subset  # noqa: E402
from utils.env import pick_device  # noqa: E402
from utils.train import fit  # noqa: E402


def new_model(backbone: str, device: torch.device) -> torch.nn.Module:
    model = create(backbone)
    model.reset_classifier(2)
    return model.to(device)


def tutorial_epoch(model, loader, optimizer, device) -> int:
    """One epoch of the tutorial's training phase; returns the number of images seen."""
    model.train()
    seen = 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        seen += len(y)
    return seen


def tutorial_throughput(args, device) -> float:
    dataset = get_dataset("hymenoptera", "train", transform=transforms(args.backbone, train=True, image_size=args.size))
    if args.per_class:
        dataset = Subset(dataset, stratified_subset(dataset.targets, per_class=args.per_class, seed=0).tolist())
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                        pin_memory=device.type == "cuda", persistent_workers=args.workers > 0)
    model = new_model(args.backbone, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    tutorial_epoch(model, loader, optimizer, device)  # warm-up
    _sync(device)
    start, seen = time.perf_counter(), 0
    for _ in range(args.epochs):
        seen += tutorial_epoch(model, loader, optimizer, device)
    _sync(device)
    return seen / (time.perf_counter() - start)


def course_throughput(args, device) -> float:
    data = load_tensors("hymenoptera", "train", image_size=args.size + args.size // 7, per_class=args.per_class,
                        device=device)
    model = new_model(args.backbone, device)
    augment = batch_transform(args.backbone, train=True, image_size=args.size)
    options = dict(batch_size=args.batch_size, batch_transform=augment, optimizer="sgd", lr=1e-3,
                   schedule="constant", checkpoint=None, progress=False, device=device)
    fit(model, data, epochs=1, **options)  # warm-up
    _sync(device)
    start = time.perf_counter()
    fit(model, data, epochs=args.epochs, **options)
    _sync(device)
    return len(data) * args.epochs / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="96 px, 16 images per class, 1 epoch")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=224, help="training crop, pixels")
    parser.add_argument("--per-class", type=int, default=None, help="stratified subset (default: all images)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs, after one warm-up epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="the tutorial's 4")
    args = parser.parse_args()
    if args.quick:
        args.size, args.per_class, args.epochs = 96, 16, 1
    device = pick_device("auto")
    torch.backends.cudnn.benchmark = device.type == "cuda"
    print(f"device: {device}; {args.backbone}, {args.size} px, batch {args.batch_size}, "
          f"{args.epochs} timed epoch(s), {args.per_class or 'all'} images per class")
    tutorial = tutorial_throughput(args, device)
    course = course_throughput(args, device)
    print(f"{'loop':<46}{'images/s':>10}")
    print(f"{'tutorial: JPEG DataLoader, fp32':<46}{tutorial:>10.1f}")
    print(f"{'utils.train.fit: decoded tensors' + (', AMP, channels_last' if device.type == 'cuda' else ''):<46}"
          f"{course:>10.1f}")
    print(f"speedup: {course / tutorial:.1f}x")


if __name__ == "__main__":
    main()
