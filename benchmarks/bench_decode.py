"""How much does decoding once save? One epoch of JPEG decoding vs. one epoch over decoded tensors.

Pipelines, both ending in normalised float batches of ``image_size`` x ``image_size`` images:

1. ``get_dataset`` + torchvision transforms (Resize, CenterCrop, ToTensor, Normalize) + DataLoader:
   every epoch decodes and resizes every JPEG again (timed with 0 and with N worker processes);
2. ``load_tensors`` (decode once, cached on disk) then, per epoch, ``iter_batches`` + ``as_float``.

The speedup is the faster pipeline-1 epoch divided by the pipeline-2 epoch; decoding and caching
are reported too, since they are paid once. torch runs one intra-op thread unless ``--threads``
says otherwise (see its help); DataLoader workers are separate processes either way. A fresh temporary cache folder is used unless
``--keep-cache``. Usage::

    python benchmarks/bench_decode.py [--dataset hymenoptera] [--split train] [--image-size 224]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
from torchvision import transforms

from utils.data import as_float, get_dataset, iter_batches, load_tensors

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet statistics


def timed(work) -> tuple[float, object]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def epoch_folder(dataset, batch_size: int, workers: int) -> int:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         generator=torch.Generator().manual_seed(0))
    return sum(images.shape[0] for images, _ in loader)


def epoch_tensors(dataset, batch_size: int, seed: int) -> int:
    seen = 0
    for images, _ in iter_batches(dataset, batch_size, shuffle=True, seed=seed):
        seen += as_float(images, MEAN, STD).shape[0]
    return seen


def epoch_tensor_dataloader(dataset, batch_size: int) -> int:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    return sum(as_float(images, MEAN, STD).shape[0] for images, _ in loader)


def run(args: argparse.Namespace) -> None:
    """Time every pipeline on one split and print the table and the speedup line."""
    size = args.image_size
    preprocess = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor(),
                                     transforms.Normalize(MEAN, STD)])
    folder = get_dataset(args.dataset, args.split, transform=preprocess)
    count = len(folder)
    rows = []

    epoch_folder(folder, args.batch_size, 0)  # warm the OS file cache, so disk speed is not measured
    folder_times = {}
    for workers in sorted({0, args.workers}):
        seconds, seen = timed(lambda: epoch_folder(folder, args.batch_size, workers))
        assert seen == count
        folder_times[workers] = seconds
        rows.append((f"ImageFolder-style + transforms + DataLoader(workers={workers}), 1 epoch", seconds))

    seconds, tensors = timed(lambda: load_tensors(args.dataset, args.split, image_size=size))
    rows.append(("load_tensors, first call (decode + write cache), once", seconds))
    seconds, tensors = timed(lambda: load_tensors(args.dataset, args.split, image_size=size))
    assert tensors.from_cache and len(tensors) == count
    rows.append(("load_tensors, second call (read cache), once", seconds))

    seconds, seen = timed(lambda: epoch_tensor_dataloader(tensors, args.batch_size))
    assert seen == count
    rows.append(("TensorImageDataset + DataLoader(workers=0), 1 epoch", seconds))
    epoch_tensors(tensors, args.batch_size, seed=0)  # warm-up
    tensor_epochs = [timed(lambda: epoch_tensors(tensors, args.batch_size, seed=r))[0] for r in range(args.repeats)]
    tensor_epoch = statistics.median(tensor_epochs)
    rows.append((f"TensorImageDataset + iter_batches + as_float, 1 epoch (median of {args.repeats})", tensor_epoch))

    print(f"{args.dataset}/{args.split}: {count} images, {size}x{size}, batch {args.batch_size}, "
          f"{os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}")
    width = max(len(name) for name, _ in rows)
    print(f"{'pipeline':<{width}}  {'seconds':>8}  {'images/s':>9}")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:8.3f}  {count / seconds:9.0f}")
    best_folder = min(folder_times.values())
    print(f"speedup: {best_folder / tensor_epoch:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="hymenoptera")
    parser.add_argument("--split", default="train")
    parser.add_argument("--image-size", type=int, default=224, help="pixels (shorter-side resize, center crop)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="DataLoader worker processes for the second folder run")
    parser.add_argument("--repeats", type=int, default=5, help="tensor epochs to time (median reported)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (0: torch's choice). 1 by default: on a busy machine, "
                             "OpenMP threads spin-waiting for busy cores make elementwise ops 10x slower or worse")
    parser.add_argument("--keep-cache", action="store_true", help="use the normal cache folder, not a temporary one")
    args = parser.parse_args()
    os.environ.setdefault("COURSE_QUIET", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.keep_cache:
        run(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-decode-cache-") as cache:
        os.environ["COURSE_CACHE_DIR"] = cache
        run(args)


if __name__ == "__main__":
    main()
