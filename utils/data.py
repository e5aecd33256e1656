"""The course's one data layer: where datasets live, how they are fetched, checked and decoded.

Lessons never handle URLs, paths or caches; they ask for a dataset by name::

    from utils.data import get_dataset, load_tensors, iter_batches

    train = get_dataset("hymenoptera", "train", transform=preprocess)   # PIL images, like ImageFolder
    fast = load_tensors("hymenoptera", "train", image_size=224)          # decoded once, cached on disk
    for images, labels in iter_batches(fast, batch_size=64, shuffle=True, seed=epoch):
        ...

Datasets (name: splits): ``hymenoptera``: train/val, ``imagenette-160``: train/val,
``brain-mri``: Training/Testing (alias train/test), ``fashion-mnist``: train/test,
``cifar10``: train/test. Where each one's pictures come from (which matters for transfer: most of
Imagenette *is* ImageNet training data, CIFAR-10 is not drawn from ImageNet at all) is in its
spec's ``source``: ``dataset_spec("cifar10").source``.

Where things live:

- raw data: :func:`data_root` = the ``root`` argument, else ``$COURSE_DATA_DIR``, else a per-user
  cache folder (``~/.cache/cnn-course/data`` on Linux). It may be read-only (a shared copy).
- decoded tensors: :func:`cache_dir` = ``$COURSE_CACHE_DIR``, else ``~/.cache/cnn-course``; must be writable.
- downloads come from :data:`BASE_URLS`; ``$COURSE_DATA_MIRROR`` replaces every base URL
  (a classroom mirror, or a local test server).

Command line, to prepare a classroom machine once (prints what is present or missing)::

    python -m utils.data --all                 # every dataset (Brain MRI: only checked, see its message)
    python -m utils.data hymenoptera fashion-mnist
    python -m utils.data --check --all         # only report, download nothing
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import math
import os
import pickle
import struct
import sys
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from .download import (ChecksumError, CorruptImageError, DataError, DatasetMissingError, DownloadError,
                       IncompleteDatasetError, install_archive)
from .download import download as download_file
from .env import pick_device

__all__ = [
    "BASE_URLS", "CIFAR10_CLASSES", "DATASETS", "FASHION_MNIST_CLASSES", "IMAGENETTE_CLASSES", "IMAGENETTE_IMAGENET_INDICES",
    "IMAGENETTE_WNIDS", "ChecksumError", "CorruptImageError", "DataError", "DatasetMissingError", "DatasetSpec",
    "DownloadError", "IdxImageDataset", "ImageFolderDataset", "IncompleteDatasetError", "Remote",
    "TensorImageDataset", "as_float", "cache_dir", "data_root", "dataset_spec", "get_dataset", "iter_batches",
    "load_tensors", "open_image", "prepare", "read_cifar_batch", "read_idx", "resize_center_crop",
    "stratified_subset",
]

APP_NAME = "cnn-course"
CACHE_FORMAT = 1  # bump when the layout of cached tensor files changes

# ----------------------------------------------------------------------------------------------
# Where things live
# ----------------------------------------------------------------------------------------------


def _user_cache_base() -> Path:
    """Per-user cache folder, following each platform's convention (like platformdirs' user_cache_dir)."""
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local"
        return Path(local) / APP_NAME / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / APP_NAME
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / APP_NAME


def data_root(root: str | Path | None = None) -> Path:
    """Folder holding the raw datasets: ``root``, else ``$COURSE_DATA_DIR``, else the user cache's ``data/``.

    Not created here: it may be a read-only shared copy; downloads create it when needed.
    """
    chosen = root or os.environ.get("COURSE_DATA_DIR") or _user_cache_base() / "data"
    return Path(chosen).expanduser()


def cache_dir() -> Path:
    """Writable folder for decoded tensors and features: ``$COURSE_CACHE_DIR``, else ``~/.cache/cnn-course``."""
    path = Path(os.environ.get("COURSE_CACHE_DIR") or _user_cache_base()).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"Cannot create the cache folder {path} ({err}). "
                        "Set COURSE_CACHE_DIR to a folder you can write to.") from err
    if not os.access(path, os.W_OK):
        raise DataError(f"The cache folder {path} is read-only. Set COURSE_CACHE_DIR to a folder you can write to.")
    return path


# ----------------------------------------------------------------------------------------------
# The datasets, as data
# ----------------------------------------------------------------------------------------------

BASE_URLS = {
    "hymenoptera": "https://download.pytorch.org/tutorial/",
    "imagenette-160": "https://s3.amazonaws.com/fast-ai-imageclas/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/",  # the official archive, as torchvision's CIFAR10 fetches it
}
"""Where each dataset's files are downloaded from; ``$COURSE_DATA_MIRROR`` overrides them all."""

# Imagenette's 10 classes: (wnid, readable name, index among ImageNet-1k's 1000 classes).
IMAGENETTE_CLASSES = (
    ("n01440764", "tench", 0),
    ("n02102040", "English springer", 217),
    ("n02979186", "cassette player", 482),
    ("n03000684", "chain saw", 491),
    ("n03028079", "church", 497),
    ("n03394916", "French horn", 566),
    ("n03417042", "garbage truck", 569),
    ("n03425413", "gas pump", 571),
    ("n03445777", "golf ball", 574),
    ("n03888257", "parachute", 701),
)
IMAGENETTE_WNIDS = tuple(wnid for wnid, _, _ in IMAGENETTE_CLASSES)
IMAGENETTE_IMAGENET_INDICES = {wnid: index for wnid, _, index in IMAGENETTE_CLASSES}

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FASHION_MNIST_FILES = {  # split -> (images, labels), as named by the dataset's authors
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# CIFAR-10's classes, in the order of its label numbers (also alphabetical, so folder order = label).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}

DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # package dataset-fashion-mnist
SYSTEM_FASHION_MNIST_DIRS = [DEBIAN_FASHION_MNIST_DIR]  # read-only fallbacks, searched after the data root

# Files that are in the published archives but are not samples of the dataset.
PLACEHOLDER_FILES = {"imageNotFound.gif": "placeholder image shipped in the hymenoptera zip"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class Remote:
    """One downloadable file; ``checksum`` is ``"sha256:<hex>"``, ``"md5:<hex>"`` or ``None`` (layout check only)."""

    filename: str
    checksum: str | None


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the loader knows about one dataset; tests swap specs to point at tiny fakes."""

    name: str
    folder: str                          # under the data root
    splits: dict[str, str]               # accepted split name -> split folder
    counts: dict[str, int]               # split folder -> number of usable images
    class_names: dict[str, str]          # class folder -> readable name
    file_glob: str = "*.jpg"             # for the layout shown in error messages
    kind: str = "folder"                 # "folder": split/class/image files; "idx": Fashion-MNIST's idx files
    remotes: tuple[Remote, ...] = ()     # empty: no public download link
    how_to_get: str = ""                 # manual instructions when there is no download link
    imagenet_indices: dict[str, int] = field(default_factory=dict)  # class folder -> ImageNet-1k index
    unpack: str | None = None            # "cifar-python": the archive holds pickled batches, written out as files
    source: str = ""                     # where the pictures come from (for transfer: did the backbone see them?)

    @property
    def classes(self) -> list[str]:
        return sorted(self.class_names) if self.kind == "folder" else list(self.class_names)

    def split_folder(self, split: str) -> str:
        """Resolve a split name or alias; a wrong one is a ValueError listing the valid ones."""
        if split not in self.splits:
            valid = ", ".join(repr(s) for s in dict.fromkeys(self.splits.values()))
            aliases = sorted(set(self.splits) - set(self.splits.values()))
            also = f" (aliases: {', '.join(repr(a) for a in aliases)})" if aliases else ""
            raise ValueError(f"unknown split {split!r} for dataset {self.name!r}: choose one of {valid}{also}")
        return self.splits[split]


BRAIN_MRI_HOW_TO_GET = (
    'Brain MRI has no direct download link: it is the Kaggle dataset "Brain Tumor MRI Dataset" by '
    "Masoud Nickparvar (kaggle.com/datasets/masoudnickparvar/brain-tumor-mri-dataset, CC0; a free "
    "Kaggle account is needed). Download and unzip it so that its Training/ and Testing/ folders "
    "end up inside the folder shown below."
)

DATASETS: dict[str, DatasetSpec] = {
    "hymenoptera": DatasetSpec(
        name="hymenoptera", folder="hymenoptera_data",
        splits={"train": "train", "val": "val"},
        counts={"train": 244, "val": 153},
        class_names={"ants": "ants", "bees": "bees"},
        remotes=(Remote("hymenoptera_data.zip",
                        "sha256:fbc41b31d544714d18dd1230b1e2b455e1557766e13e67f9f5a7a23af7c02209"),),
        source="the PyTorch transfer-learning tutorial's ants and bees, described by its authors as a small "
               "subset of ImageNet: an ImageNet backbone has probably seen these pictures",
    ),
    "imagenette-160": DatasetSpec(
        name="imagenette-160", folder="imagenette2-160",
        splits={"train": "train", "val": "val"},
        counts={"train": 9469, "val": 3925},
        class_names={wnid: name for wnid, name, _ in IMAGENETTE_CLASSES},
        file_glob="*.JPEG",
        remotes=(Remote("imagenette2-160.tgz", None),),  # no published checksum: the layout is checked
        imagenet_indices=dict(IMAGENETTE_IMAGENET_INDICES),
        source="10 ImageNet classes; almost all images (train and val; all but the ILSVRC2012_val_* files) are "
               "from ImageNet's training set: the pretraining data itself, not new pictures",
    ),
    "brain-mri": DatasetSpec(
        name="brain-mri", folder="brain_mri",
        splits={"Training": "Training", "Testing": "Testing", "train": "Training", "test": "Testing"},
        counts={"Training": 5708, "Testing": 1311},
        class_names={"glioma": "glioma", "meningioma": "meningioma", "notumor": "no tumor",
                     "pituitary": "pituitary"},
        how_to_get=BRAIN_MRI_HOW_TO_GET,
        source="brain MRI slices (Kaggle 'Brain Tumor MRI Dataset', CC0): a domain unlike ImageNet's photos",
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist", folder="fashion-mnist", kind="idx",
        splits={"train": "train", "test": "test"},
        counts={"train": 60000, "test": 10000},
        class_names={name: name for name in FASHION_MNIST_CLASSES},
        remotes=(  # md5s as published by the authors (and used by torchvision.datasets.FashionMNIST)
            Remote("train-images-idx3-ubyte.gz", "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            Remote("train-labels-idx1-ubyte.gz", "md5:25c81989df183df01b3e8a0aad5dffbe"),
            Remote("t10k-images-idx3-ubyte.gz", "md5:bef4ecab320f06d8554ea6380940ec79"),
            Remote("t10k-labels-idx1-ubyte.gz", "md5:bb300cfdad3c16e7a12a480ee83cd310"),
        ),
        source="Zalando's 28 x 28 grayscale product photos: not from ImageNet",
    ),
    "cifar10": DatasetSpec(
        name="cifar10", folder="cifar10",
        splits={"train": "train", "test": "test"},
        counts={"train": 50000, "test": 10000},
        class_names={name: name for name in CIFAR10_CLASSES},
        file_glob="NNNN.jpg (or .png)",
        # the md5 published with the archive, which torchvision.datasets.CIFAR10 checks too
        remotes=(Remote("cifar-10-python.tar.gz", "md5:c58f30108f718f92721af3b95e74349a"),),
        unpack="cifar-python",
        source="32 x 32 photos of 10 everyday classes from the 80 Million Tiny Images collection, not drawn "
               "from ImageNet: similar pictures that an ImageNet backbone has never seen",
    ),
}


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of a dataset; a wrong name is a ValueError listing the valid ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(repr(n) for n in DATASETS)}")
    return DATASETS[name]


def remote_url(name: str, filename: str) -> str:
    """Download URL of one file: ``$COURSE_DATA_MIRROR`` if set, else the dataset's entry in :data:`BASE_URLS`."""
    base = os.environ.get("COURSE_DATA_MIRROR") or BASE_URLS[name]
    return base.rstrip("/") + "/" + filename


def expected_layout(spec: DatasetSpec, root: Path) -> str:
    """The folder layout a dataset must have under ``root``, for error messages."""
    if spec.kind == "idx":
        files = [stem for pair in FASHION_MNIST_FILES.values() for stem in pair]
        note = ("  (the four original files, gunzipped or not; on Debian/Ubuntu, "
                f"`apt-get install dataset-fashion-mnist` puts them in {DEBIAN_FASHION_MNIST_DIR})")
        return "\n".join([*(f"  {root / spec.folder / stem}.gz" for stem in files), note])
    classes = spec.classes
    listed = "{" + ",".join(classes) + "}" if len(", ".join(classes)) < 60 else "<class>"
    lines = [f"  {root / spec.folder}/"]
    for split in dict.fromkeys(spec.splits.values()):
        lines.append(f"      {split}/{listed}/{spec.file_glob}   ({spec.counts[split]} images)")
    if listed == "<class>":
        lines.append(f"  with <class> one of: {', '.join(classes)}")
    return "\n".join(lines)


def _repair_hint(spec: DatasetSpec, root: Path) -> str:
    if spec.remotes:
        return (f"delete {root / spec.folder} and run `python -m utils.data {spec.name}` to download it again "
                "(or copy a complete version there)")
    return f"replace {root / spec.folder} with a complete copy. {spec.how_to_get}"


# ----------------------------------------------------------------------------------------------
# Reading images
# ----------------------------------------------------------------------------------------------


def open_image(path: str | Path, mode: str = "RGB", draft_size: int | None = None) -> Image.Image:
    """Decode an image file fully into ``mode`` ("RGB" or "L"), or raise :class:`CorruptImageError`.

    ``draft_size`` lets JPEG decoding skip resolution that a later resize to that size would discard
    (DCT scaling: 2-8x faster for big photos; the result stays at least ``draft_size`` on each side).
    """
    try:
        with Image.open(path) as image:
            if draft_size:
                image.draft(mode, (draft_size, draft_size))
            return image.convert(mode)  # converting forces the full decode: truncation shows up here
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise CorruptImageError(
            f"Cannot decode the image {path} ({type(err).__name__}: {err}).\n"
            "The file is damaged or is not an image, e.g. after an interrupted copy or download. "
            "Fix: replace the file, or delete the dataset folder and run `python -m utils.data --all` to fetch it again."
        ) from err


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` (bilinear, antialiased) and cut the central ``size`` x ``size`` square.

    Same geometry as torchvision's ``Resize(size)`` followed by ``CenterCrop(size)``.
    """
    width, height = image.size
    short, long = min(width, height), max(width, height)
    new_long = int(size * long / short)
    new_size = (size, new_long) if width <= height else (new_long, size)
    if new_size != image.size:
        image = image.resize(new_size, Image.BILINEAR)
    left = int(round((new_size[0] - size) / 2.0))
    top = int(round((new_size[1] - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def _skip_reason(name: str) -> str | None:
    if name in PLACEHOLDER_FILES:
        return PLACEHOLDER_FILES[name]
    if name.startswith("."):
        return "hidden file"
    if not name.lower().endswith(IMAGE_EXTENSIONS):
        return "not an image file"
    return None


def scan_image_folder(split_dir: Path) -> tuple[list[str], list[tuple[str, int]], list[tuple[str, str]]]:
    """List ``split_dir/<class>/**/<image>``: sorted classes, (path, class index) samples, (path, why) skipped.

    Hidden folders (``.ipynb_checkpoints`` copies), hidden files, non-images and known placeholders are
    skipped and listed in the third result, so that nothing disappears without a trace.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DatasetMissingError(f"The folder {split_dir} does not exist.")
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise IncompleteDatasetError(f"The folder {split_dir} has no class folders (expected {split_dir}/<class>/<images>).")
    samples: list[tuple[str, int]] = []
    skipped: list[tuple[str, str]] = []
    for index, cls in enumerate(classes):
        found = 0
        for folder, subfolders, files in os.walk(split_dir / cls):
            subfolders.sort()
            hidden_folder = any(part.startswith(".") for part in Path(folder).relative_to(split_dir).parts)
            for name in sorted(files):
                path = os.path.join(folder, name)
                reason = "copy in a hidden folder" if hidden_folder else _skip_reason(name)
                if reason:
                    skipped.append((path, reason))
                else:
                    samples.append((path, index))
                    found += 1
        if found == 0:
            raise IncompleteDatasetError(
                f"The class folder {split_dir / cls} holds no images. An interrupted copy or extraction? "
                "Restore its images, or delete the empty folder if that class should not exist."
            )
    return classes, samples, skipped


class ImageFolderDataset(torch.utils.data.Dataset):
    """Images in ``split_dir/<class>/<file>``, like torchvision's ImageFolder, but strict and explicit.

    ``__getitem__(i)`` returns ``(transform(PIL RGB image), class index)``; grayscale files come back
    as 3-channel RGB. Attributes as in ImageFolder (``classes``, ``class_to_idx``, ``samples``,
    ``targets``), plus ``class_names`` (readable), ``skipped`` (paths not used, see
    :func:`scan_image_folder`) and ``imagenet_indices`` (ImageNet-1k index per class, or ``None``).
    """

    def __init__(self, split_dir: str | Path, transform: Callable | None = None,
                 class_names: dict[str, str] | None = None, imagenet_indices: dict[str, int] | None = None):
        self.root = Path(split_dir)
        self.classes, self.samples, skipped = scan_image_folder(self.root)
        self.skipped = [path for path, _ in skipped]
        self.skip_reasons = dict(skipped)
        self.class_to_idx = {cls: i for i, cls in enumerate(self.classes)}
        self.targets = [target for _, target in self.samples]
        self.class_names = [(class_names or {}).get(cls, cls) for cls in self.classes]
        self.imagenet_indices = [imagenet_indices[c] for c in self.classes] if imagenet_indices else None
        self.transform = transform

    @property
    def imgs(self) -> list[tuple[str, int]]:
        """Alias of ``samples``, as in torchvision."""
        return self.samples

    def __len__(self) -> int:
        return len(self.samples)

    def load_image(self, index: int, mode: str = "RGB", draft_size: int | None = None) -> Image.Image:
        return open_image(self.samples[index][0], mode, draft_size)

    def __getitem__(self, index: int):
        image = self.load_image(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.samples[index][1]

    def fingerprint(self) -> str:
        """Hash of the relative paths and sizes of the samples: tells a cache whether the files changed."""
        digest = hashlib.sha1()
        for path, target in self.samples:
            digest.update(f"{os.path.relpath(path, self.root)}\t{os.path.getsize(path)}\t{target}\n".encode())
        return digest.hexdigest()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({len(self)} images, {len(self.classes)} classes "
                f"{self.class_names}, root={str(self.root)!r}, skipped={len(self.skipped)})")


# ----------------------------------------------------------------------------------------------
# Fashion-MNIST: the original idx files
# ----------------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _read_idx_cached(path: str, mtime_ns: int, size: int) -> np.ndarray:
    raw_path = Path(path)
    try:
        if raw_path.suffix == ".gz":
            with gzip.open(raw_path, "rb") as file:
                data = file.read()
        else:
            data = raw_path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise IncompleteDatasetError(f"Cannot read {raw_path} ({err}): the file is damaged or truncated. "
                                     "Delete it and run `python -m utils.data fashion-mnist`.") from err
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
        raise IncompleteDatasetError(f"{raw_path} is not an idx file of unsigned bytes. "
                                     "Delete it and run `python -m utils.data fashion-mnist`.")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = memoryview(data)[4 + 4 * ndim:]
    if len(body) != math.prod(shape):
        raise IncompleteDatasetError(f"{raw_path} is truncated: {len(body)} bytes of data for shape {shape}. "
                                     "Delete it and run `python -m utils.data fashion-mnist`.")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (the MNIST format: big-endian header, then raw bytes), gzipped or not.

    Returns a read-only uint8 array: N x H x W for images, N for labels. Cached per process.
    """
    stat = os.stat(path)
    return _read_idx_cached(str(path), stat.st_mtime_ns, stat.st_size)


def _idx_search_dirs(root: Path, spec: DatasetSpec) -> list[Path]:
    return [root / spec.folder, root / "FashionMNIST" / "raw", *SYSTEM_FASHION_MNIST_DIRS]


def find_idx_file(stem: str, root: Path, spec: DatasetSpec) -> Path | None:
    """First of ``ROOT/fashion-mnist``, ``ROOT/FashionMNIST/raw``, the system folder holding ``stem[.gz]``."""
    for folder in _idx_search_dirs(root, spec):
        for candidate in (folder / f"{stem}.gz", folder / stem):
            if candidate.is_file():
                return candidate
    return None


class IdxImageDataset(torch.utils.data.Dataset):
    """Fashion-MNIST from its idx files: ``__getitem__(i)`` returns ``(transform(PIL "L" image), label)``.

    Images stay 1-channel ("L", 28 x 28): Fashion-MNIST is grayscale. For ImageNet models either add
    ``transforms.Grayscale(3)`` to ``transform`` or use ``load_tensors(..., channels=3)``.
    ``samples`` holds ``("<images file>[i]", label)`` pairs, since the images are not separate files.
    """

    def __init__(self, images_path: Path, labels_path: Path, classes: Sequence[str],
                 transform: Callable | None = None):
        self.images_path, self.labels_path = Path(images_path), Path(labels_path)
        self.root = self.images_path.parent
        self.images = read_idx(self.images_path)
        self.labels = read_idx(self.labels_path)
        if self.images.ndim != 3 or self.labels.ndim != 1 or len(self.images) != len(self.labels):
            raise IncompleteDatasetError(
                f"{self.images_path} ({self.images.shape}) and {self.labels_path} ({self.labels.shape}) "
                "do not match. Delete both and run `python -m utils.data fashion-mnist`.")
        self.classes = list(classes)
        self.class_names = list(classes)
        self.class_to_idx = {cls: i for i, cls in enumerate(self.classes)}
        self.targets = self.labels.astype(np.int64).tolist()
        self.skipped: list[str] = []
        self.imagenet_indices = None
        self.transform = transform

    @property
    def samples(self) -> list[tuple[str, int]]:
        return [(f"{self.images_path}[{i}]", t) for i, t in enumerate(self.targets)]

    def __len__(self) -> int:
        return len(self.targets)

    def load_image(self, index: int, mode: str = "L", draft_size: int | None = None) -> Image.Image:
        return Image.fromarray(self.images[index], mode="L").convert(mode)

    def __getitem__(self, index: int):
        image = self.load_image(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]

    def fingerprint(self) -> str:
        digest = hashlib.sha1(self.labels.tobytes())
        digest.update(self.images.tobytes())
        return digest.hexdigest()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images 28x28 'L', {len(self.classes)} classes, file={self.images_path})"


# ----------------------------------------------------------------------------------------------
# CIFAR-10: the official python batches, written out as image files
# ----------------------------------------------------------------------------------------------
#
# The folder ``cifar10/{train,test}/<class>/NNNN.<ext>`` is the dataset's one layout on disk, so one
# reader (ImageFolderDataset) serves the offline copy and a download alike. A download unpacks the
# official ``cifar-10-python.tar.gz`` (pickled uint8 arrays) into PNG files, which keep its pixels
# exactly; the shared offline copy stores JPEG files, whose pixels differ slightly from the arrays.


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays only: loading a pickle may otherwise run any code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.numeric", "_frombuffer"),
               ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode")}  # bytes in a protocol-2 pickle

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"a CIFAR batch should hold arrays only, not {module}.{name}")
        return super().find_class(module, name)


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, list[int]]:
    """One pickled batch of the official python CIFAR-10: uint8 images N x 32 x 32 x 3 (RGB) and labels."""
    try:
        with open(path, "rb") as file:
            batch = _ArrayUnpickler(file, encoding="latin1").load()
        images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        labels = [int(label) for label in batch["labels"]]
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as err:
        raise IncompleteDatasetError(
            f"Cannot read the CIFAR-10 batch {path} ({type(err).__name__}: {err}): the archive is damaged. "
            "Run `python -m utils.data cifar10` again.") from err
    if len(labels) != len(images) or not all(0 <= label < len(CIFAR10_CLASSES) for label in labels):
        raise IncompleteDatasetError(f"The CIFAR-10 batch {path} has {len(images)} images but labels "
                                     f"{sorted(set(labels))[:12]}...: the archive is damaged.")
    return images, labels


def write_cifar10_folder(batches_dir: Path, out: Path) -> None:
    """Write the official ``cifar-10-batches-py/`` as ``out/{train,test}/<class>/NNNN.png``.

    Files are numbered per class in the batches' order (data_batch_1 to 5, then test_batch). PNG is
    lossless, so a decoded file equals the official array.
    """
    batches_dir = Path(batches_dir)
    meta = batches_dir / "batches.meta"
    if meta.is_file():
        with open(meta, "rb") as file:
            names = _ArrayUnpickler(file, encoding="latin1").load().get("label_names")
        if tuple(names) != CIFAR10_CLASSES:
            raise IncompleteDatasetError(f"{meta} names the classes {names}, not CIFAR-10's {list(CIFAR10_CLASSES)}.")
    for split, batch_names in CIFAR10_BATCHES.items():
        counters = [0] * len(CIFAR10_CLASSES)
        for cls in CIFAR10_CLASSES:
            (out / split / cls).mkdir(parents=True, exist_ok=True)
        for batch_name in batch_names:
            images, labels = read_cifar_batch(batches_dir / batch_name)
            for image, label in zip(_progress(images, len(images), f"unpack cifar10/{batch_name}"), labels):
                Image.fromarray(image).save(out / split / CIFAR10_CLASSES[label] / f"{counters[label]:04d}.png")
                counters[label] += 1


# Archives whose files are not laid out as the dataset folder: spec.unpack -> (top folder, writer).
UNPACKERS: dict[str, tuple[str, Callable[[Path, Path], None]]] = {
    "cifar-python": ("cifar-10-batches-py", write_cifar10_folder),
}


# ----------------------------------------------------------------------------------------------
# Finding, downloading and checking a dataset
# ----------------------------------------------------------------------------------------------


def _check_split(spec: DatasetSpec, split: str, dataset, root: Path) -> None:
    """Raise :class:`IncompleteDatasetError` unless the split has the expected classes and image count."""
    where = getattr(dataset, "root", root / spec.folder)
    if dataset.classes != spec.classes:
        missing = sorted(set(spec.classes) - set(dataset.classes))
        extra = sorted(set(dataset.classes) - set(spec.classes))
        raise IncompleteDatasetError(
            f"{where} does not have the classes of {spec.name} (missing: {missing}, unexpected: {extra}).\n"
            f"Fix: {_repair_hint(spec, root)}. Expected layout:\n{expected_layout(spec, root)}")
    if len(dataset) != spec.counts[split]:
        raise IncompleteDatasetError(
            f"{where} holds {len(dataset)} usable images, but {spec.name}/{split} has {spec.counts[split]}: "
            "the folder looks incomplete (an interrupted copy or extraction?).\n"
            f"Fix: {_repair_hint(spec, root)}. Expected layout:\n{expected_layout(spec, root)}")


def _validate_extracted(spec: DatasetSpec) -> Callable[[Path], None]:
    def validate(folder: Path) -> None:
        for split in dict.fromkeys(spec.splits.values()):
            dataset = ImageFolderDataset(folder / split, class_names=spec.class_names)
            _check_split(spec, split, dataset, folder.parent)
    return validate


def _missing_message(spec: DatasetSpec, root: Path, what: str) -> str:
    how = spec.how_to_get + "\n" if spec.how_to_get else ""
    return (f"{what}\n{how}Expected layout:\n{expected_layout(spec, root)}\n"
            "(or set the environment variable COURSE_DATA_DIR to a folder that holds it)")


def _ensure_folder_dataset(spec: DatasetSpec, root: Path, download: bool) -> Path:
    folder = root / spec.folder
    if folder.is_dir():
        return folder
    if not spec.remotes:
        raise DatasetMissingError(_missing_message(spec, root, f"{spec.name} is not in {root}."))
    if not download:
        raise DatasetMissingError(_missing_message(
            spec, root, f"{spec.name} is not in {root}; run `python -m utils.data {spec.name}` to download it."))
    (remote,) = spec.remotes
    archive_folder, convert = UNPACKERS[spec.unpack] if spec.unpack else (None, None)
    print(f"{spec.name}: downloading {remote.filename} into {root}")
    return install_archive(remote_url(spec.name, remote.filename), remote.checksum, root, spec.folder,
                           validate=_validate_extracted(spec), manual_help=expected_layout(spec, root),
                           archive_folder=archive_folder, convert=convert)


def _ensure_idx_files(spec: DatasetSpec, root: Path, download: bool) -> None:
    missing = [r for r in spec.remotes if find_idx_file(r.filename.removesuffix(".gz"), root, spec) is None]
    if not missing:
        return
    if not download:
        raise DatasetMissingError(_missing_message(
            spec, root, f"{spec.name} is not in {root}; run `python -m utils.data {spec.name}` to download it."))
    for remote in missing:
        download_file(remote_url(spec.name, remote.filename), root / spec.folder / remote.filename,
                      remote.checksum, manual_help=expected_layout(spec, root))


_REPORTED_SKIPS: set[tuple[str, str, str]] = set()


def _report_skipped_once(spec: DatasetSpec, split: str, dataset) -> None:
    """Say once per process which files were left out, so nothing is dropped silently."""
    key = (spec.name, split, str(getattr(dataset, "root", "")))
    if not dataset.skipped or key in _REPORTED_SKIPS:
        return
    _REPORTED_SKIPS.add(key)
    listed = "; ".join(f"{os.path.relpath(p, dataset.root)} ({dataset.skip_reasons[p]})" for p in dataset.skipped[:5])
    more = f"; and {len(dataset.skipped) - 5} more" if len(dataset.skipped) > 5 else ""
    print(f"note: {spec.name}/{split}: skipped {len(dataset.skipped)} file(s) that are not samples: {listed}{more}")


def get_dataset(name: str, split: str, root: str | Path | None = None, transform: Callable | None = None,
                download: bool = True):
    """An ImageFolder-like dataset of PIL images (downloaded first if missing, online, and allowed).

    Returns an :class:`ImageFolderDataset` (RGB images) or, for ``fashion-mnist``, an
    :class:`IdxImageDataset` ("L" images). The split's class list and image count are checked, so a
    partial copy fails loudly instead of training on less data.
    """
    spec = dataset_spec(name)
    split = spec.split_folder(split)
    base = data_root(root)
    if spec.kind == "idx":
        _ensure_idx_files(spec, base, download)
        images_stem, labels_stem = FASHION_MNIST_FILES[split]
        dataset = IdxImageDataset(find_idx_file(images_stem, base, spec), find_idx_file(labels_stem, base, spec),
                                  spec.classes, transform)
    else:
        folder = _ensure_folder_dataset(spec, base, download)
        if not (folder / split).is_dir():
            raise IncompleteDatasetError(
                f"{folder} has no {split}/ folder. Fix: {_repair_hint(spec, base)}. "
                f"Expected layout:\n{expected_layout(spec, base)}")
        dataset = ImageFolderDataset(folder / split, transform, spec.class_names, spec.imagenet_indices or None)
    _check_split(spec, split, dataset, base)
    _report_skipped_once(spec, split, dataset)
    dataset.name, dataset.split = spec.name, split
    return dataset


def prepare(names: Sequence[str] | None = None, root: str | Path | None = None, download: bool = True) -> dict[str, str]:
    """Make the datasets ready on this machine (all of them by default) and print a status table.

    Returns ``{name: "present" | "downloaded" | "missing" | "incomplete"}``; for the last two the
    reason and the fix are printed (Brain MRI must be fetched by hand from Kaggle).
    """
    base = data_root(root)
    status: dict[str, str] = {}
    print(f"data folder: {base}")
    for name in names or list(DATASETS):
        spec = dataset_spec(name)
        was_there = _is_present(spec, base)
        try:
            sizes = {s: len(get_dataset(name, s, root=base, download=download))
                     for s in dict.fromkeys(spec.splits.values())}
        except DataError as err:
            gone = isinstance(err, (DatasetMissingError, DownloadError, ChecksumError))
            status[name] = "missing" if gone else "incomplete"
            print(f"  {name:<15} {status[name]}\n" + "\n".join(f"      {line}" for line in str(err).splitlines()))
            continue
        status[name] = "present" if was_there else "downloaded"
        counts = ", ".join(f"{split} {n}" for split, n in sizes.items())
        print(f"  {name:<15} {status[name]:<10} ({counts})")
    return status


def _is_present(spec: DatasetSpec, root: Path) -> bool:
    if spec.kind == "idx":
        return all(find_idx_file(r.filename.removesuffix(".gz"), root, spec) for r in spec.remotes)
    return (root / spec.folder).is_dir()


# ----------------------------------------------------------------------------------------------
# Decoded tensors
# ----------------------------------------------------------------------------------------------


class TensorImageDataset(torch.utils.data.Dataset):
    """Decoded images in memory: ``images`` uint8 N x C x H x W, ``labels`` int64 N (on any device).

    ``__getitem__(i)`` returns ``(images[i], labels[i])`` (optionally ``transform(images[i])``), so a
    DataLoader works; :func:`iter_batches` is faster still, since it slices whole batches at once.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str],
                 class_names: Sequence[str] | None = None, imagenet_indices: Sequence[int] | None = None,
                 transform: Callable | None = None):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be a uint8 N x C x H x W tensor, got {images.dtype} {tuple(images.shape)}")
        if labels.dim() != 1 or len(labels) != len(images):
            raise ValueError(f"labels must be 1-D with {len(images)} entries, got shape {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.long()
        self.classes = list(classes)
        self.class_names = list(class_names) if class_names is not None else list(classes)
        self.imagenet_indices = list(imagenet_indices) if imagenet_indices is not None else None
        self.transform = transform
        self.from_cache = False       # set by load_tensors: True when read from the disk cache
        self.cache_path: Path | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index]

    @property
    def device(self) -> torch.device:
        return self.images.device

    def _like(self, images: torch.Tensor, labels: torch.Tensor) -> "TensorImageDataset":
        return TensorImageDataset(images, labels, self.classes, self.class_names, self.imagenet_indices, self.transform)

    def to(self, device: str | torch.device) -> "TensorImageDataset":
        """A copy on ``device`` (like ``Tensor.to``: the original stays where it was)."""
        return self._like(self.images.to(device), self.labels.to(device))

    def subset(self, indices) -> "TensorImageDataset":
        """A new dataset holding the rows ``indices`` (e.g. from :func:`stratified_subset`)."""
        indices = torch.as_tensor(indices, dtype=torch.long, device=self.images.device)
        return self._like(self.images.index_select(0, indices), self.labels.index_select(0, indices))

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        return (f"TensorImageDataset({n} images {c}x{h}x{w} uint8, {len(self.classes)} classes, "
                f"device={self.device})")


def stratified_subset(labels, per_class: int | None = None, fraction: float | None = None,
                      seed: int = 0) -> torch.Tensor:
    """Sorted indices of a seeded, stratified subset: ``per_class`` items of each class, or ``fraction`` of each.

    Deterministic for a given seed, and nested: with the same seed, ``per_class=5`` is contained in
    ``per_class=10``. A class with too few examples is an error, not a silently smaller subset.
    """
    if (per_class is None) == (fraction is None):
        raise ValueError("pass exactly one of per_class (items per class) or fraction (share of each class)")
    if per_class is not None and (not isinstance(per_class, int) or per_class < 1):
        raise ValueError(f"per_class must be a positive int, got {per_class!r}")
    if fraction is not None and not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels).long().cpu().flatten()
    generator = torch.Generator().manual_seed(int(seed))
    chosen = []
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        take = per_class if per_class is not None else math.floor(fraction * len(members) + 0.5)
        if take > len(members) or take == 0:
            asked = f"per_class={per_class}" if per_class is not None else f"fraction={fraction} ({take} items)"
            raise ValueError(f"class {cls} has {len(members)} examples, too few for {asked}")
        order = torch.randperm(len(members), generator=generator)
        chosen.append(members[order[:take]])
    return torch.cat(chosen).sort().values


def iter_batches(dataset, batch_size: int, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(images, labels)`` batches of a :class:`TensorImageDataset` (or an ``(images, labels)`` pair).

    Whole batches are sliced out of the tensors on their device: no per-item Python work, no workers.
    With ``shuffle`` the order is a permutation seeded by ``seed``; pass ``seed=epoch`` for a new
    order each epoch. Batches are uint8 like the dataset: see :func:`as_float`.
    """
    images, labels = (dataset.images, dataset.labels) if hasattr(dataset, "images") else dataset
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    count = len(labels)
    order = None
    if shuffle:
        order = torch.randperm(count, generator=torch.Generator().manual_seed(int(seed))).to(images.device)
    for start in range(0, count, batch_size):
        stop = min(start + batch_size, count)
        if drop_last and stop - start < batch_size:
            break
        if order is None:
            yield images[start:stop], labels[start:stop]
        else:
            rows = order[start:stop]
            yield images.index_select(0, rows), labels.index_select(0, rows)


def as_float(images: torch.Tensor, mean: Sequence[float] | None = None,
             std: Sequence[float] | None = None) -> torch.Tensor:
    """uint8 N x C x H x W -> float32 in [0, 1], then ``(x - mean) / std`` per channel when given.

    Computed as one multiply-add, ``x * (1 / (255 std)) - mean / std``, to touch the batch only twice.
    """
    batch = images.float()
    if mean is None or std is None:
        return batch.mul_(1.0 / 255.0)
    shape = (1, -1, 1, 1)
    mean_t = torch.as_tensor(mean, dtype=torch.float64).view(shape)
    std_t = torch.as_tensor(std, dtype=torch.float64).view(shape)
    scale = (1.0 / (255.0 * std_t)).to(batch.device, torch.float32)
    shift = (-mean_t / std_t).to(batch.device, torch.float32)
    return batch.mul_(scale).add_(shift)


def _decode_workers() -> int:
    """Threads for decoding: Pillow releases the GIL while decoding and resizing."""
    return max(1, min(8, os.cpu_count() or 1))


def _progress(iterable, total: int, desc: str):
    quiet = os.environ.get("COURSE_QUIET", "").strip().lower() in {"1", "true", "yes", "on"}
    return tqdm(iterable, total=total, desc=desc, unit="img", file=sys.stdout, mininterval=0.5,
                leave=False, disable=quiet)


def _decode_folder(dataset: ImageFolderDataset, rows: list[int], image_size: int | None,
                   channels: int, desc: str) -> torch.Tensor:
    """Decode ``rows`` of ``dataset`` into one uint8 N x C x H x W tensor, with a few threads."""
    mode = "RGB" if channels == 3 else "L"

    def decode(row: int) -> np.ndarray:
        image = dataset.load_image(row, mode, draft_size=image_size)
        if image_size is not None:
            image = resize_center_crop(image, image_size)
        return np.asarray(image)

    images = None
    pool = ThreadPoolExecutor(max_workers=_decode_workers())
    try:
        for k, array in enumerate(_progress(pool.map(decode, rows), len(rows), desc)):
            array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)  # C x H x W
            if images is None:
                images = np.empty((len(rows), *array.shape), dtype=np.uint8)
            elif array.shape != images.shape[1:]:
                raise ValueError(
                    f"images differ in size ({images.shape[2:]} vs {array.shape[1:]} for "
                    f"{dataset.samples[rows[k]][0]}): pass image_size=... to resize them all")
            images[k] = array
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return torch.from_numpy(images)


def _decode_idx(dataset: IdxImageDataset, rows: list[int], image_size: int | None, channels: int) -> torch.Tensor:
    images = torch.from_numpy(np.array(dataset.images[rows])).unsqueeze(1)  # N x 1 x 28 x 28
    if image_size is not None and image_size != images.shape[-1]:
        resized = [F.interpolate(chunk.float(), size=(image_size, image_size), mode="bilinear",
                                 antialias=True, align_corners=False).round_().clamp_(0, 255).to(torch.uint8)
                   for chunk in images.split(4096)]
        images = torch.cat(resized)
    return images.expand(-1, channels, -1, -1).contiguous()


def _tensor_cache_path(name: str, split: str, image_size: int | None, channels: int,
                       subset_key: str | None = None) -> Path:
    size = f"{image_size}px" if image_size is not None else "native"
    suffix = f"_subset-{subset_key}" if subset_key else ""
    return cache_dir() / "tensors" / f"{name}_{split}_{size}_{channels}ch{suffix}.pt"


def _load_cached(path: Path, fingerprint: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged cache file is not fatal: decode again
        print(f"note: the cache file {path} is unreadable ({type(err).__name__}); decoding again")
        return None
    if payload.get("format") != CACHE_FORMAT or payload.get("fingerprint") != fingerprint:
        return None  # the raw files changed since: decode again
    return payload


def _save_atomic(payload: dict, path: Path) -> None:
    """torch.save into a temporary file, then rename: a crash never leaves a half-written cache file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp_name)
        os.chmod(tmp_name, 0o644)  # mkstemp makes it private; a shared cache should be readable
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def load_tensors(name: str, split: str, image_size: int | None = None, root: str | Path | None = None,
                 per_class: int | None = None, fraction: float | None = None, seed: int = 0,
                 device: str | torch.device | None = None, channels: int = 3,
                 download: bool = True) -> TensorImageDataset:
    """Decode a split once into a :class:`TensorImageDataset`, cached in :func:`cache_dir`.

    ``image_size``: resize the shorter side, then center-crop to ``image_size`` x ``image_size``
    pixels; ``None`` keeps the files' size (all must be equal). ``channels``: 3 (RGB) or 1 (gray).
    ``per_class`` / ``fraction`` / ``seed``: a :func:`stratified_subset`. ``device``: where the
    tensors end up (``"auto"`` picks the accelerator); ``None`` leaves them on the CPU.

    The cache file is keyed by (name, split, image_size, channels) and remembers a fingerprint of
    the raw files, so it is rebuilt if they change. A subset asked for before the full split was
    ever decoded is decoded and cached on its own (extra key: the subset), which keeps smoke runs
    fast; the indices are the same either way.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"image_size must be a positive int (pixels) or None, got {image_size!r}")
    spec = dataset_spec(name)
    split = spec.split_folder(split)
    source = get_dataset(name, split, root=root, download=download)
    rows = None
    if per_class is not None or fraction is not None:
        rows = stratified_subset(source.targets, per_class, fraction, seed)
    fingerprint = source.fingerprint()

    path = _tensor_cache_path(spec.name, split, image_size, channels)
    payload = _load_cached(path, fingerprint)
    if payload is None and rows is not None:
        path = _tensor_cache_path(spec.name, split, image_size, channels, f"{per_class}-{fraction}-{seed}")
        payload = _load_cached(path, fingerprint)
        decode_rows = rows.tolist()
        rows = None  # the cached file holds the subset itself
    else:
        decode_rows = list(range(len(source)))
    from_cache = payload is not None
    if payload is None:
        desc = f"decode {spec.name}/{split}"
        if spec.kind == "idx":
            images = _decode_idx(source, decode_rows, image_size, channels)
        else:
            images = _decode_folder(source, decode_rows, image_size, channels, desc)
        labels = torch.as_tensor([source.targets[i] for i in decode_rows], dtype=torch.long)
        payload = {"format": CACHE_FORMAT, "fingerprint": fingerprint, "images": images, "labels": labels}
        _save_atomic(payload, path)

    images, labels = payload["images"], payload["labels"]
    if rows is not None:
        images, labels = images[rows], labels[rows]
    dataset = TensorImageDataset(images, labels, source.classes, source.class_names, source.imagenet_indices)
    if device is not None:
        dataset = dataset.to(pick_device(device) if str(device) == "auto" else device)
    dataset.from_cache, dataset.cache_path = from_cache, path
    return dataset


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.data",
                                     description="Download and check the course's datasets.")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"datasets: {', '.join(DATASETS)}")
    parser.add_argument("--all", action="store_true", help="every dataset")
    parser.add_argument("--root", help="data folder (default: $COURSE_DATA_DIR, else the user cache)")
    parser.add_argument("--check", action="store_true", help="only report what is present; download nothing")
    args = parser.parse_args(argv)
    if not args.names and not args.all:
        parser.print_help()
        return 2
    try:
        names = list(DATASETS) if args.all else [dataset_spec(n).name for n in args.names]
    except ValueError as err:
        parser.error(str(err))
    status = prepare(names, root=args.root, download=not args.check)
    return 0 if all(s in {"present", "downloaded"} for s in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
