"""How much does caching a frozen backbone's features save? Training a new head for 20 epochs, two ways.

1. The PyTorch tutorial's loop ("ConvNet as fixed feature extractor" in *Transfer Learning for Computer
   Vision*): in every epoch a DataLoader decodes and transforms every JPEG, and the frozen backbone runs on
   every image, in the training phase and in the validation phase. Only the new last layer trains, with
   the tutorial's optimizer: SGD (lr 1e-3, momentum 0.9), StepLR (every 7 epochs, x0.1), batches of 4.
2. Cached features: the same backbone runs once over the same images (same transforms, same DataLoader),
   its pooled features are kept in memory, and the same loop (same optimizer, schedule, batch order and
   initial head) trains on them.

Both use EfficientNet-Lite0 with ImageNet weights on hymenoptera. Two deliberate departures from the
tutorial make both loops compute the same function, so they must reach the same accuracy (checked: within
1 point): training images get the evaluation transform (resize, center crop) instead of random crops and
flips, which a cache could not hold; and the backbone's BatchNorm layers stay in eval mode
(``utils.backbones.freeze``), where the tutorial's ``model.train()`` would let their running statistics
drift (Lesson 08, section 3). Extraction uses the same batch size as training, so the saving comes only
from running the backbone once instead of once per epoch.

Both loops are timed end to end over all epochs: nothing is extrapolated. Loop 2's time includes the
extraction. The last line is ``speedup: N.Nx`` (loop 1's seconds / loop 2's). Usage::

    python benchmarks/bench_feature_cache.py            # all 244 + 153 images at 160 px (several minutes on 2 cores)
    python benchmarks/bench_feature_cache.py --quick    # 30 + 30 images per class at 128 px (a minute or two)
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: spinning threads slow busy machines

import argparse  # noqa: E402
import copy  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, Subset, TensorDataset  # noqa: E402

from utils.backbones import create, freeze, transforms  # noqa: E402
from utils.data import get_dataset, stratified_subset  # noqa: E402

ACCURACY_TOLERANCE = 0.01  # the two loops must agree within 1 point of validation accuracy


def timed(work) -> tuple[float, object]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def split(name: str, size: int, per_class: int | None, seed: int, backbone: str):
    """One hymenoptera split with the backbone's eval transform; a stratified subset when ``per_class``."""
    dataset = get_dataset("hymenoptera", name, transform=transforms(backbone, train=False, image_size=size))
    if per_class is None:
        return dataset
    return Subset(dataset, stratified_subset(dataset.targets, per_class=per_class, seed=seed).tolist())


def tutorial_loaders(train, val, batch_size: int, workers: int, seed: int) -> dict[str, DataLoader]:
    """The tutorial's two loaders; the shuffling generator is seeded so both loops see the same batch order."""
    return {"train": DataLoader(train, batch_size=batch_size, shuffle=True, num_workers=workers,
                                generator=torch.Generator().manual_seed(seed)),
            "val": DataLoader(val, batch_size=batch_size, shuffle=False, num_workers=workers)}


def train_model(model: nn.Module, loaders: dict[str, DataLoader], epochs: int, lr: float) -> list[float]:
    """The tutorial's ``train_model``: each epoch a training phase, then a validation phase.

    Returns the validation accuracy (fraction) after every epoch.
    """
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=7, gamma=0.1)
    val_accs = []
    for _ in range(epochs):
        for phase in ("train", "val"):
            model.train(phase == "train")
            correct = seen = 0
            for inputs, labels in loaders[phase]:
                optimizer.zero_grad()
                with torch.set_grad_enabled(phase == "train"):
                    outputs = model(inputs)
                    loss = F.cross_entropy(outputs, labels)
                    if phase == "train":
                        loss.backward()
                        optimizer.step()
                correct += int((outputs.argmax(dim=1) == labels).sum())
                seen += len(labels)
            if phase == "train":
                scheduler.step()
        val_accs.append(correct / seen)
    return val_accs


@torch.inference_mode()
def extract(model, loader: DataLoader) -> TensorDataset:
    """Run the frozen backbone once: pooled features (the vector the classifier sees) and labels."""
    model.eval()
    features, labels = [], []
    for inputs, targets in loader:
        features.append(model.forward_head(model.forward_features(inputs), pre_logits=True))
        labels.append(targets)
    return TensorDataset(torch.cat(features), torch.cat(labels))


def run(args: argparse.Namespace) -> int:
    """Time both loops, print the table and the speedup line; 1 if the accuracies disagree."""
    train = split("train", args.image_size, args.per_class, args.seed, args.backbone)
    val = split("val", args.image_size, args.per_class, args.seed, args.backbone)

    torch.manual_seed(args.seed)
    model = create(args.backbone)
    freeze(model)                      # requires_grad=False below the head, BatchNorm held in eval mode
    model.reset_classifier(2)
    initial_head = copy.deepcopy(model.get_classifier().state_dict())

    # warm the OS file cache and the allocator, so disk speed and first-call costs are not measured
    extract(model, DataLoader(Subset(val, range(min(8, len(val)))), batch_size=args.batch_size))

    loaders = tutorial_loaders(train, val, args.batch_size, args.workers, args.seed)
    tutorial_seconds, tutorial_accs = timed(lambda: train_model(model, loaders, args.epochs, args.lr))

    plain = {phase: DataLoader(data, batch_size=args.batch_size, num_workers=args.workers)
             for phase, data in (("train", train), ("val", val))}
    extract_seconds, cached = timed(lambda: {phase: extract(model, loader) for phase, loader in plain.items()})
    head = nn.Linear(model.head_hidden_size, 2)
    head.load_state_dict(initial_head)
    feature_loaders = tutorial_loaders(cached["train"], cached["val"], args.batch_size, 0, args.seed)
    head_seconds, cached_accs = timed(lambda: train_model(head, feature_loaders, args.epochs, args.lr))
    cached_seconds = extract_seconds + head_seconds

    n_train, n_val = len(train), len(val)
    print(f"hymenoptera, {args.backbone}, {args.image_size} px, {n_train} train + {n_val} val images, "
          f"{args.epochs} epochs, batch {args.batch_size}, {os.cpu_count()} CPU cores, "
          f"torch threads {torch.get_num_threads()}, DataLoader workers {args.workers}")
    rows = [
        ("tutorial loop: backbone on every image, every epoch", tutorial_seconds, args.epochs, tutorial_accs[-1]),
        ("cached: extract features once (train + val)", extract_seconds, None, None),
        (f"cached: {args.epochs} epochs on the features", head_seconds, args.epochs, None),
        ("cached: total", cached_seconds, args.epochs, cached_accs[-1]),
    ]
    width = max(len(name) for name, *_ in rows)
    print(f"{'method':<{width}}  {'seconds':>9}  {'s/epoch':>9}  {'val acc':>8}")
    for name, seconds, epochs, acc in rows:
        per_epoch = f"{seconds / epochs:9.3f}" if epochs else " " * 9
        accuracy = f"{100 * acc:7.2f}%" if acc is not None else " " * 8
        print(f"{name:<{width}}  {seconds:9.2f}  {per_epoch}  {accuracy}")
    gap = abs(tutorial_accs[-1] - cached_accs[-1])
    agree = gap <= ACCURACY_TOLERANCE
    print(f"accuracy difference: {100 * gap:.2f} points ({'ok' if agree else 'FAILED'}: limit "
          f"{100 * ACCURACY_TOLERANCE:.0f} point; one validation image = {100 / n_val:.2f} points)")
    print(f"speedup: {tutorial_seconds / cached_seconds:.1f}x")
    return 0 if agree else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a stratified subset (--per-class 30) at 128 px: a minute or two on 2 idle CPU cores")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=None,
                        help="pixels of the center crop (default 160; 128 with --quick)")
    parser.add_argument("--per-class", type=int, default=None,
                        help="images per class in each split (default: all; 30 with --quick)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4, help="the tutorial's 4")
    parser.add_argument("--lr", type=float, default=1e-3, help="the tutorial's SGD learning rate")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (the tutorial uses 4)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.image_size is None:
        args.image_size = 128 if args.quick else 160
    if args.per_class is None and args.quick:
        args.per_class = 30
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("COURSE_QUIET", "1")
    sys.exit(run(args))


if __name__ == "__main__":
    main()
