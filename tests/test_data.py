"""Tests of utils.data and utils.download: real offline copies for counts, tiny fakes for everything else.

The real datasets come from ``$COURSE_DATA_DIR`` as set when pytest starts (default
``../shared/data`` beside the repository); tests needing them skip with the reason when absent. Downloads are tested
against a local HTTP server on 127.0.0.1 serving archives built in ``tmp_path``: no test needs the
internet, and no test writes into the user's own data or cache folders.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import os
import pickle
import shutil
import struct
import tarfile
import threading
import zipfile
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from utils import data, download
from utils.data import (ChecksumError, CorruptImageError, DatasetMissingError, DownloadError, ImageFolderDataset,
                        IncompleteDatasetError, Remote, TensorImageDataset, as_float, get_dataset, iter_batches,
                        load_tensors, stratified_subset)

SHARED_DATA = Path(os.environ.get("COURSE_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


# ----------------------------------------------------------------------------------------------
# Fixtures and helpers
# ----------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """A private cache, no mirror, no progress bars, and a data root that holds nothing."""
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "empty-data-root"))
    monkeypatch.setenv("COURSE_QUIET", "1")
    monkeypatch.delenv("COURSE_DATA_MIRROR", raising=False)
    monkeypatch.setattr(download, "TIMEOUT_S", 5.0)


def require_shared(monkeypatch, folder: str) -> Path:
    if not (SHARED_DATA / folder).is_dir():
        pytest.skip(f"offline data copy {SHARED_DATA / folder} not found (set COURSE_DATA_DIR to the course's data folder)")
    monkeypatch.setenv("COURSE_DATA_DIR", str(SHARED_DATA))
    return SHARED_DATA


@pytest.fixture
def hymenoptera(monkeypatch) -> Path:
    return require_shared(monkeypatch, "hymenoptera_data")


def write_image(path: Path, size=(40, 30), color=(200, 30, 30), mode="RGB", fmt="JPEG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color if mode == "RGB" else color[0]).save(path, fmt)
    return path


def make_tree(base: Path, layout: dict[str, dict[str, int]], ext=".jpg") -> Path:
    """``layout``: split -> class -> number of images; images differ in size to exercise resizing."""
    for split, classes in layout.items():
        for c, (cls, count) in enumerate(classes.items()):
            for i in range(count):
                write_image(base / split / cls / f"{cls}_{i}{ext}", size=(40 + 4 * i, 30), color=(40 * c, 90, 10 * i))
    return base


def image_mode(path) -> str:
    with Image.open(path) as image:
        return image.mode


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


TINY_HYMENOPTERA = {"train": {"ants": 2, "bees": 2}, "val": {"ants": 1, "bees": 1}}


def fake_hymenoptera_spec(monkeypatch, checksum: str | None, counts=None) -> None:
    spec = dataclasses.replace(data.DATASETS["hymenoptera"], counts=counts or {"train": 4, "val": 2},
                               remotes=(Remote("hymenoptera_data.zip", checksum),))
    monkeypatch.setitem(data.DATASETS, "hymenoptera", spec)


def build_hymenoptera_zip(serve_dir: Path, layout=TINY_HYMENOPTERA) -> Path:
    """A zip shaped like the official one, including the imageNotFound.gif placeholder."""
    tree = make_tree(serve_dir / "build" / "hymenoptera_data", layout)
    write_image(tree / "train" / "ants" / "imageNotFound.gif", mode="L", color=(128,), fmt="GIF")
    archive = serve_dir / "hymenoptera_data.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(tree.rglob("*")):
            zipped.write(path, path.relative_to(tree.parent))
    shutil.rmtree(serve_dir / "build")
    return archive


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class TruncatingHandler(QuietHandler):
    """Announces the full length, sends half, and hangs up: a connection that drops mid-download."""

    def do_GET(self):
        body = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.close_connection = True


@contextmanager
def http_server(directory: Path, handler=QuietHandler):
    """Serve ``directory`` on 127.0.0.1 from a thread; yields the base URL; always shut down."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


# ----------------------------------------------------------------------------------------------
# Locations and names
# ----------------------------------------------------------------------------------------------


def test_data_root_and_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "from-env"))
    assert data.data_root() == tmp_path / "from-env"
    assert data.data_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("COURSE_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if os.name == "posix" and os.uname().sysname == "Linux":
        assert data.data_root() == tmp_path / "xdg" / "cnn-course" / "data"
    assert data.cache_dir() == tmp_path / "cache" and data.cache_dir().is_dir()


def test_wrong_name_or_split_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'hymenoptera'.*'imagenette-160'.*'brain-mri'.*'fashion-mnist'"):
        get_dataset("imagenet", "train")
    with pytest.raises(ValueError, match="'train', 'val'"):
        get_dataset("hymenoptera", "test")
    with pytest.raises(ValueError, match="'Training', 'Testing'.*aliases: 'test', 'train'"):
        get_dataset("brain-mri", "val")


# ----------------------------------------------------------------------------------------------
# The real datasets (offline copies)
# ----------------------------------------------------------------------------------------------


def test_hymenoptera_counts_classes_and_placeholder(hymenoptera, capsys):
    train, val = get_dataset("hymenoptera", "train"), get_dataset("hymenoptera", "val")
    assert (len(train), len(val)) == (244, 153)
    assert train.classes == ["ants", "bees"] and train.class_names == ["ants", "bees"]
    assert [Path(p).name for p in train.skipped] == ["imageNotFound.gif"] and val.skipped == []
    assert not any(p.endswith(".gif") for p, _ in train.samples)
    assert train.targets.count(0) == 123 and train.targets.count(1) == 121
    image, label = train[0]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and label == 0
    get_dataset("hymenoptera", "train")
    assert capsys.readouterr().out.count("imageNotFound.gif") <= 1  # reported once per process


def test_imagenette_counts_names_and_imagenet_indices(monkeypatch):
    require_shared(monkeypatch, "imagenette2-160")
    train, val = get_dataset("imagenette-160", "train"), get_dataset("imagenette-160", "val")
    assert (len(train), len(val)) == (9469, 3925)
    assert train.classes == list(data.IMAGENETTE_WNIDS)
    assert train.class_names == ["tench", "English springer", "cassette player", "chain saw", "church",
                                 "French horn", "garbage truck", "gas pump", "golf ball", "parachute"]
    assert train.imagenet_indices == [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]


def test_imagenette_indices_match_torchvision_imagenet_categories():
    from torchvision.models import ResNet18_Weights
    categories = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]  # metadata only, no download
    for wnid, name, index in data.IMAGENETTE_CLASSES:
        assert categories[index] == name, (wnid, name, index, categories[index])


def test_brain_mri_counts_aliases_and_rgb(monkeypatch):
    root = require_shared(monkeypatch, "brain_mri")
    train, test = get_dataset("brain-mri", "train"), get_dataset("brain-mri", "Testing")
    assert (len(train), len(test)) == (5708, 1311)
    assert len(get_dataset("brain-mri", "Training")) == 5708 and test.split == "Testing"
    assert test.class_names == ["glioma", "meningioma", "no tumor", "pituitary"]
    assert [Path(p).name for p in test.skipped] == ["Te-me_0011-checkpoint.jpg"]  # a duplicate in .ipynb_checkpoints
    gray = next(i for i, (p, _) in enumerate(test.samples) if image_mode(p) == "L")
    image, _ = test[gray]
    assert image.mode == "RGB" and np.asarray(image).shape[2] == 3
    assert str(root) in test.samples[gray][0]


def test_fashion_mnist_from_idx_files(monkeypatch):
    if not (SYSTEM_FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed (apt-get install -y dataset-fashion-mnist)")
    train, test = get_dataset("fashion-mnist", "train"), get_dataset("fashion-mnist", "test")
    assert (len(train), len(test)) == (60000, 10000)
    assert test.class_names[0] == "T-shirt/top" and test.class_names[9] == "Ankle boot" and len(test.classes) == 10
    image, label = test[0]
    assert image.mode == "L" and image.size == (28, 28) and label == 9  # the first test item is an ankle boot
    assert np.bincount(test.targets).tolist() == [1000] * 10
    rgb = load_tensors("fashion-mnist", "test", per_class=3)
    assert rgb.images.shape == (30, 3, 28, 28) and torch.equal(rgb.images[:, 0], rgb.images[:, 2])
    gray = load_tensors("fashion-mnist", "test", image_size=32, channels=1, per_class=3)
    assert gray.images.shape == (30, 1, 32, 32) and torch.equal(gray.labels, rgb.labels)


def test_cifar10_from_the_offline_folder(monkeypatch, capsys):
    root = require_shared(monkeypatch, "cifar10")
    train, test = get_dataset("cifar10", "train"), get_dataset("cifar10", "test")
    assert (len(train), len(test)) == (50000, 10000)
    assert train.classes == test.classes == list(data.CIFAR10_CLASSES) == train.class_names
    assert train.class_names[0] == "airplane" and train.class_names[9] == "truck"
    assert np.bincount(train.targets).tolist() == [5000] * 10 and np.bincount(test.targets).tolist() == [1000] * 10
    assert train.imagenet_indices is None and train.skipped == []
    image, label = test[1234]
    assert image.mode == "RGB" and image.size == (32, 32) and label == test.targets[1234]
    manifest = {line.split(maxsplit=1)[1].strip() for line in (root / "cifar10.sha256").read_text().splitlines()}
    used = {os.path.relpath(path, root) for ds in (train, test) for path, _ in ds.samples}
    assert used == manifest  # every file of the copy, and nothing else
    tensors = load_tensors("cifar10", "test", per_class=2)
    assert tensors.images.shape == (20, 3, 32, 32) and tensors.images.dtype == torch.uint8
    assert tensors.labels.tolist() == [c for c in range(10) for _ in range(2)]
    assert "not drawn from ImageNet" in data.dataset_spec("cifar10").source
    assert data.main(["--check", "cifar10"]) == 0
    assert "cifar10         present    (train 50000, test 10000)" in capsys.readouterr().out


def test_every_dataset_says_where_its_pictures_come_from():
    assert "cifar10" in data.DATASETS  # so `python -m utils.data --all` prepares it
    for spec in data.DATASETS.values():
        assert spec.source, spec.name
    assert "ImageNet's training set" in data.dataset_spec("imagenette-160").source
    cifar = data.dataset_spec("cifar10")
    assert data.remote_url("cifar10", cifar.remotes[0].filename) == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert cifar.remotes[0].checksum == "md5:c58f30108f718f92721af3b95e74349a"  # torchvision's CIFAR10.tgz_md5


def test_prepare_and_cli_report_present_and_missing(hymenoptera, tmp_path, capsys):
    assert data.main(["--check", "hymenoptera"]) == 0
    assert "hymenoptera     present    (train 244, val 153)" in capsys.readouterr().out
    assert data.main(["--check", "--root", str(tmp_path / "nothing"), "brain-mri"]) == 1
    out = capsys.readouterr().out
    assert "brain-mri       missing" in out and "Masoud Nickparvar" in out


# ----------------------------------------------------------------------------------------------
# Missing, partial and damaged data
# ----------------------------------------------------------------------------------------------


def test_brain_mri_missing_explains_kaggle_and_layout(tmp_path):
    with pytest.raises(DatasetMissingError) as err:
        get_dataset("brain-mri", "Training", root=tmp_path)
    message = str(err.value)
    assert "Brain Tumor MRI Dataset" in message and "Masoud Nickparvar" in message
    assert f"{tmp_path / 'brain_mri'}/" in message and "Training/{glioma,meningioma,notumor,pituitary}" in message


def test_partial_folder_is_an_error_with_the_fix(tmp_path):
    make_tree(tmp_path / "hymenoptera_data", {"train": {"ants": 3, "bees": 2}})
    with pytest.raises(IncompleteDatasetError, match="holds 5 usable images, but hymenoptera/train has 244") as err:
        get_dataset("hymenoptera", "train", root=tmp_path)  # present, so no download is tried
    assert "python -m utils.data hymenoptera" in str(err.value)
    with pytest.raises(IncompleteDatasetError, match="has no val/ folder"):
        get_dataset("hymenoptera", "val", root=tmp_path)


def test_missing_class_is_an_error(tmp_path):
    make_tree(tmp_path / "hymenoptera_data", {"train": {"ants": 3}})
    with pytest.raises(IncompleteDatasetError, match=r"missing: \['bees'\]"):
        get_dataset("hymenoptera", "train", root=tmp_path)


def test_empty_class_folder_names_the_folder(tmp_path):
    split = make_tree(tmp_path, {"train": {"ants": 2}}) / "train"
    (split / "bees").mkdir()
    with pytest.raises(IncompleteDatasetError, match=str(split / "bees")):
        ImageFolderDataset(split)


def test_corrupt_and_truncated_images_name_the_file(tmp_path):
    split = make_tree(tmp_path, {"train": {"ants": 1, "bees": 1}}) / "train"
    whole = (split / "ants" / "ants_0.jpg").read_bytes()
    truncated = split / "ants" / "truncated.jpg"
    truncated.write_bytes(whole[: len(whole) // 2])
    not_an_image = split / "bees" / "notes.jpg"
    not_an_image.write_text("not a jpeg")
    dataset = ImageFolderDataset(split)
    assert len(dataset) == 4
    for bad in (truncated, not_an_image):
        index = [p for p, _ in dataset.samples].index(str(bad))
        with pytest.raises(CorruptImageError, match="Fix:") as err:
            dataset[index]
        assert str(bad) in str(err.value)


def test_hidden_and_non_image_files_are_reported_not_used(tmp_path):
    split = make_tree(tmp_path, {"train": {"ants": 1}}) / "train"
    (split / "ants" / ".DS_Store").write_bytes(b"x")
    (split / "ants" / "README.txt").write_text("x")
    write_image(split / "ants" / ".ipynb_checkpoints" / "ants_0-checkpoint.jpg")
    dataset = ImageFolderDataset(split)
    assert len(dataset) == 1 and len(dataset.skipped) == 3


def test_load_tensors_reports_a_corrupt_image(tmp_path, monkeypatch):
    make_tree(tmp_path / "hymenoptera_data", TINY_HYMENOPTERA)
    bad = tmp_path / "hymenoptera_data" / "val" / "bees" / "bees_0.jpg"
    bad.write_bytes(bad.read_bytes()[:100])
    fake_hymenoptera_spec(monkeypatch, checksum=None)
    with pytest.raises(CorruptImageError, match="bees_0.jpg"):
        load_tensors("hymenoptera", "val", image_size=16, root=tmp_path)
    assert not list((tmp_path / "cache").rglob("*.pt"))  # nothing half-made was cached


# ----------------------------------------------------------------------------------------------
# Downloads, against a local server
# ----------------------------------------------------------------------------------------------


def test_download_extracts_verifies_and_installs_atomically(tmp_path, monkeypatch):
    serve = tmp_path / "serve"
    archive = build_hymenoptera_zip(serve)
    fake_hymenoptera_spec(monkeypatch, f"sha256:{sha256_of(archive)}")
    root = tmp_path / "data"
    with http_server(serve) as url:
        monkeypatch.setitem(data.BASE_URLS, "hymenoptera", url)
        train = get_dataset("hymenoptera", "train", root=root)
    assert len(train) == 4 and [Path(p).name for p in train.skipped] == ["imageNotFound.gif"]
    assert len(get_dataset("hymenoptera", "val", root=root)) == 2  # server gone: no second download
    assert leftovers(root) == ["hymenoptera_data"]
    assert (root / "hymenoptera_data" / download.COMPLETE_MARKER).is_file()


def test_mirror_environment_variable_overrides_base_urls(tmp_path, monkeypatch):
    serve = tmp_path / "serve"
    fake_hymenoptera_spec(monkeypatch, f"sha256:{sha256_of(build_hymenoptera_zip(serve))}")
    monkeypatch.setitem(data.BASE_URLS, "hymenoptera", "http://127.0.0.1:9/never-used/")
    with http_server(serve) as url:
        monkeypatch.setenv("COURSE_DATA_MIRROR", url)
        assert data.prepare(["hymenoptera"], root=tmp_path / "data") == {"hymenoptera": "downloaded"}


def test_checksum_mismatch_names_file_expected_and_got(tmp_path, monkeypatch):
    serve = tmp_path / "serve"
    archive = build_hymenoptera_zip(serve)
    fake_hymenoptera_spec(monkeypatch, "sha256:" + "0" * 64)
    root = tmp_path / "data"
    with http_server(serve) as url, pytest.raises(ChecksumError) as err:
        monkeypatch.setitem(data.BASE_URLS, "hymenoptera", url)
        get_dataset("hymenoptera", "train", root=root)
    message = str(err.value)
    assert "hymenoptera_data.zip" in message and "0" * 64 in message and sha256_of(archive) in message
    assert "again" in message
    assert leftovers(root) == []


def test_offline_gives_one_clear_error(tmp_path, monkeypatch):
    fake_hymenoptera_spec(monkeypatch, None)
    with http_server(tmp_path) as url:
        pass  # the server is shut down again: its port now refuses connections
    monkeypatch.setitem(data.BASE_URLS, "hymenoptera", url)
    root = tmp_path / "data"
    with pytest.raises(DownloadError) as err:
        get_dataset("hymenoptera", "train", root=root)
    message = str(err.value)
    assert message.startswith("No network") and "COURSE_DATA_DIR" in message
    assert f"{root / 'hymenoptera_data'}/" in message and "train/{ants,bees}/*.jpg" in message
    assert not root.exists()  # not even an empty data folder is left behind


def test_interrupted_download_leaves_nothing_complete_looking(tmp_path, monkeypatch):
    serve = tmp_path / "serve"
    fake_hymenoptera_spec(monkeypatch, f"sha256:{sha256_of(build_hymenoptera_zip(serve))}")
    root = tmp_path / "data"
    with http_server(serve, TruncatingHandler) as url, pytest.raises(DownloadError, match="connection dropped"):
        monkeypatch.setitem(data.BASE_URLS, "hymenoptera", url)
        get_dataset("hymenoptera", "train", root=root)
    assert leftovers(root) == []


def test_archive_with_wrong_layout_is_not_installed(tmp_path, monkeypatch):
    serve = tmp_path / "serve"
    archive = build_hymenoptera_zip(serve, {"train": {"ants": 2, "bees": 1}, "val": {"ants": 1, "bees": 1}})
    fake_hymenoptera_spec(monkeypatch, f"sha256:{sha256_of(archive)}")
    root = tmp_path / "data"
    with http_server(serve) as url, pytest.raises(IncompleteDatasetError, match="holds 3 usable images"):
        monkeypatch.setitem(data.BASE_URLS, "hymenoptera", url)
        get_dataset("hymenoptera", "train", root=root)
    assert leftovers(root) == []


def test_download_tgz_without_published_checksum(tmp_path, monkeypatch):
    serve = tmp_path / "serve"
    layout = {split: {wnid: 1 for wnid in data.IMAGENETTE_WNIDS} for split in ("train", "val")}
    tree = make_tree(tmp_path / "build" / "imagenette2-160", layout, ext=".JPEG")
    serve.mkdir()
    with tarfile.open(serve / "imagenette2-160.tgz", "w:gz") as tarred:
        tarred.add(tree, arcname="imagenette2-160")
    spec = dataclasses.replace(data.DATASETS["imagenette-160"], counts={"train": 10, "val": 10})
    monkeypatch.setitem(data.DATASETS, "imagenette-160", spec)
    with http_server(serve) as url:
        monkeypatch.setitem(data.BASE_URLS, "imagenette-160", url)
        val = get_dataset("imagenette-160", "val", root=tmp_path / "data")
    assert len(val) == 10 and val.class_names[-1] == "parachute"


def build_cifar10_archive(serve: Path, per_batch: int = 10, batches: dict | None = None) -> tuple[Path, dict]:
    """A small ``cifar-10-python.tar.gz`` laid out as the official one (pickled dicts of arrays); returns the arrays."""
    folder = serve / "build" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(10)
    arrays = {}
    for name in (*data.CIFAR10_BATCHES["train"], *data.CIFAR10_BATCHES["test"]):
        images = rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8)
        labels = [int(v) % 10 for v in rng.permutation(per_batch)]  # every class in every batch
        arrays[name] = (images, labels)
        batch = (batches or {}).get(name, {"batch_label": name, "labels": labels, "data": images})
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(data.CIFAR10_CLASSES)}, protocol=2))
    archive = serve / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tarred:
        tarred.add(folder, arcname=folder.name)
    shutil.rmtree(serve / "build")
    return archive, arrays


def fake_cifar10_spec(monkeypatch, archive: Path | None, counts=None) -> None:
    checksum = "md5:" + hashlib.md5(archive.read_bytes()).hexdigest() if archive else None
    spec = dataclasses.replace(data.DATASETS["cifar10"], counts=counts or {"train": 50, "test": 10},
                               remotes=(Remote("cifar-10-python.tar.gz", checksum),))
    monkeypatch.setitem(data.DATASETS, "cifar10", spec)


def test_download_cifar10_unpacks_the_python_archive_into_the_folder_layout(tmp_path, monkeypatch):
    serve = tmp_path / "serve"
    archive, arrays = build_cifar10_archive(serve)
    fake_cifar10_spec(monkeypatch, archive)
    root = tmp_path / "data"
    with http_server(serve) as url:
        monkeypatch.setitem(data.BASE_URLS, "cifar10", url)
        test = get_dataset("cifar10", "test", root=root)
    train = get_dataset("cifar10", "train", root=root)  # server gone: installed once, both splits
    assert (len(train), len(test)) == (50, 10) and test.classes == list(data.CIFAR10_CLASSES)
    assert leftovers(root) == ["cifar10"] and (root / "cifar10" / download.COMPLETE_MARKER).is_file()
    images, labels = arrays["test_batch"]
    first = labels.index(labels[0])
    path = root / "cifar10" / "test" / data.CIFAR10_CLASSES[labels[0]] / "0000.png"
    assert test.samples[test.targets.index(labels[0])][0] == str(path)
    expected = images[first].reshape(3, 32, 32).transpose(1, 2, 0)
    assert np.array_equal(np.asarray(data.open_image(path)), expected)  # PNG: the official pixels exactly
    train_labels = [label for name in data.CIFAR10_BATCHES["train"] for label in arrays[name][1]]
    assert np.bincount(train.targets, minlength=10).tolist() == np.bincount(train_labels, minlength=10).tolist()


def test_cifar10_archive_that_is_damaged_or_unsafe_is_not_installed(tmp_path, monkeypatch):
    class Shell:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    for batch, message in [({"data": np.zeros((5, 3072), np.uint8)}, "KeyError"), (Shell(), "arrays only")]:
        serve = tmp_path / message.replace(" ", "-")
        archive, _ = build_cifar10_archive(serve, batches={"data_batch_3": batch})
        fake_cifar10_spec(monkeypatch, archive)
        root = tmp_path / "data"
        with http_server(serve) as url, pytest.raises(IncompleteDatasetError, match=message) as err:
            monkeypatch.setitem(data.BASE_URLS, "cifar10", url)
            get_dataset("cifar10", "train", root=root)
        assert "data_batch_3" in str(err.value) and leftovers(root) == []


def test_cifar10_offline_names_the_archive_and_the_layout(tmp_path, monkeypatch):
    with http_server(tmp_path) as url:
        pass  # shut down again: its port refuses connections, as with no network
    monkeypatch.setitem(data.BASE_URLS, "cifar10", url)
    root = tmp_path / "data"
    with pytest.raises(DownloadError) as err:
        get_dataset("cifar10", "test", root=root)
    message = str(err.value)
    assert message.startswith("No network") and "cifar-10-python.tar.gz" in message and "COURSE_DATA_DIR" in message
    assert f"{root / 'cifar10'}/" in message and "test/<class>/NNNN.jpg" in message and "airplane" in message
    assert not root.exists()
    with pytest.raises(DatasetMissingError, match="python -m utils.data cifar10"):
        get_dataset("cifar10", "test", root=root, download=False)


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_download_fashion_mnist_idx_files(tmp_path, monkeypatch):
    serve = tmp_path / "serve"
    serve.mkdir()
    rng = np.random.default_rng(0)
    counts = {"train": 20, "test": 10}
    remotes = []
    for split, (images_stem, labels_stem) in data.FASHION_MNIST_FILES.items():
        n = counts[split]
        for stem, array in ((images_stem, rng.integers(0, 256, (n, 28, 28))), (labels_stem, np.arange(n) % 10)):
            payload = gzip.compress(idx_bytes(array))
            (serve / f"{stem}.gz").write_bytes(payload)
            remotes.append(Remote(f"{stem}.gz", "md5:" + hashlib.md5(payload).hexdigest()))
    spec = dataclasses.replace(data.DATASETS["fashion-mnist"], counts=counts, remotes=tuple(remotes))
    monkeypatch.setitem(data.DATASETS, "fashion-mnist", spec)
    monkeypatch.setattr(data, "SYSTEM_FASHION_MNIST_DIRS", [])
    root = tmp_path / "data"
    with http_server(serve) as url:
        monkeypatch.setitem(data.BASE_URLS, "fashion-mnist", url)
        test = get_dataset("fashion-mnist", "test", root=root)
    assert len(test) == 10 and test.targets == list(range(10))
    assert sorted(leftovers(root / "fashion-mnist")) == sorted(r.filename for r in remotes)
    image, _ = test[3]
    expected = data.read_idx(serve / "t10k-images-idx3-ubyte.gz")[3]
    assert image.mode == "L" and np.array_equal(np.asarray(image), expected)
    (root / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.arange(7))))
    data._read_idx_cached.cache_clear()
    with pytest.raises(data.DataError, match="do not match"):
        get_dataset("fashion-mnist", "test", root=root)


# ----------------------------------------------------------------------------------------------
# Decoded tensors
# ----------------------------------------------------------------------------------------------


def test_load_tensors_decodes_once_then_reads_the_cache(hymenoptera, monkeypatch):
    first = load_tensors("hymenoptera", "val", image_size=24)
    assert not first.from_cache and first.images.shape == (153, 3, 24, 24) and first.images.dtype == torch.uint8
    assert first.labels.dtype == torch.int64 and first.labels.bincount().tolist() == [70, 83]
    assert first.cache_path.parent == Path(os.environ["COURSE_CACHE_DIR"]) / "tensors"

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(data, "_decode_folder", no_decoding)
    second = load_tensors("hymenoptera", "val", image_size=24)
    assert second.from_cache and torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    subset = load_tensors("hymenoptera", "val", image_size=24, per_class=5, seed=1)
    rows = stratified_subset(first.labels, per_class=5, seed=1)
    assert torch.equal(subset.images, first.images[rows]) and subset.class_names == ["ants", "bees"]


def test_subset_decoded_alone_equals_subset_of_full_split(hymenoptera):
    alone = load_tensors("hymenoptera", "val", image_size=16, fraction=0.1, seed=3)
    assert not alone.from_cache and "subset" in alone.cache_path.name and len(alone) == 15  # 7 ants + 8 bees
    full = load_tensors("hymenoptera", "val", image_size=16)
    again = load_tensors("hymenoptera", "val", image_size=16, fraction=0.1, seed=3)
    assert again.from_cache and torch.equal(alone.images, again.images)
    assert torch.equal(alone.images, full.images[stratified_subset(full.labels, fraction=0.1, seed=3)])


def test_load_tensors_matches_the_pil_pipeline(hymenoptera):
    tensors = load_tensors("hymenoptera", "val", image_size=20, channels=1, per_class=2)
    dataset = get_dataset("hymenoptera", "val")
    row = stratified_subset(dataset.targets, per_class=2)[0].item()
    image = data.resize_center_crop(dataset.load_image(row, "L", draft_size=20), 20)
    assert tensors.images.shape == (4, 1, 20, 20)
    assert np.array_equal(tensors.images[0, 0].numpy(), np.asarray(image))


def test_unequal_sizes_need_an_image_size(hymenoptera):
    with pytest.raises(ValueError, match="pass image_size"):
        load_tensors("hymenoptera", "val")


def test_tensor_dataset_works_with_dataloader_to_and_subset():
    images = torch.arange(6 * 3 * 2 * 2, dtype=torch.uint8).view(6, 3, 2, 2)
    dataset = TensorImageDataset(images, torch.tensor([0, 1, 0, 1, 0, 1]), ["a", "b"], ["A", "B"])
    batches = list(torch.utils.data.DataLoader(dataset, batch_size=4))
    assert batches[0][0].shape == (4, 3, 2, 2) and batches[1][1].tolist() == [0, 1]
    small = dataset.subset([5, 0])
    assert torch.equal(small.images, images[[5, 0]]) and small.labels.tolist() == [1, 0] and small.class_names == ["A", "B"]
    moved = dataset.to("cpu")
    assert moved is not dataset and moved.device.type == "cpu"
    with pytest.raises(ValueError, match="uint8"):
        TensorImageDataset(images.float(), dataset.labels, ["a", "b"])


def test_iter_batches_covers_everything_once_and_repeats_with_the_seed():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 2, 2).contiguous()
    dataset = TensorImageDataset(images, torch.arange(10) % 2, ["even", "odd"])
    plain = list(iter_batches(dataset, batch_size=4))
    assert [len(y) for _, y in plain] == [4, 4, 2] and torch.equal(plain[0][0], images[:4])
    shuffled = [x[:, 0, 0, 0] for x, _ in iter_batches(dataset, 4, shuffle=True, seed=7)]
    assert sorted(torch.cat(shuffled).tolist()) == list(range(10)) and torch.cat(shuffled).tolist() != list(range(10))
    again = [x[:, 0, 0, 0] for x, _ in iter_batches(dataset, 4, shuffle=True, seed=7)]
    other = [x[:, 0, 0, 0] for x, _ in iter_batches(dataset, 4, shuffle=True, seed=8)]
    assert torch.equal(torch.cat(again), torch.cat(shuffled)) and not torch.equal(torch.cat(other), torch.cat(shuffled))
    for x, y in iter_batches((dataset.images, dataset.labels), 4, shuffle=True, seed=1):
        assert torch.equal(x[:, 0, 0, 0].long() % 2, y)  # images and labels stay paired
    assert [len(y) for _, y in iter_batches(dataset, 4, drop_last=True)] == [4, 4]


def test_as_float_scales_and_normalizes():
    images = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    assert torch.equal(as_float(images), torch.ones(1, 3, 2, 2))
    normalized = as_float(images, mean=[0.5, 0.5, 0.5], std=[0.5, 0.25, 0.5])
    assert torch.allclose(normalized[0, :, 0, 0], torch.tensor([1.0, 2.0, 1.0])) and images.dtype == torch.uint8
    batch = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    reference = (batch.float() / 255 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)  # what ToTensor+Normalize give
    assert torch.allclose(as_float(batch, mean.tolist(), std.tolist()), reference, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Stratified subsets
# ----------------------------------------------------------------------------------------------


def test_stratified_subset_properties():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    rows = stratified_subset(labels, per_class=10, seed=0)
    assert rows.dtype == torch.long and len(rows) == 30 and len(set(rows.tolist())) == 30
    assert torch.equal(rows, rows.sort().values) and labels[rows].bincount().tolist() == [10, 10, 10]
    assert torch.equal(rows, stratified_subset(labels.tolist(), per_class=10, seed=0))  # lists work, same result
    assert not torch.equal(rows, stratified_subset(labels, per_class=10, seed=1))
    assert set(stratified_subset(labels, per_class=5, seed=0).tolist()) <= set(rows.tolist())  # nested
    assert labels[stratified_subset(labels, fraction=0.1)].bincount().tolist() == [5, 3, 2]
    assert len(stratified_subset(labels, fraction=1.0)) == 100


def test_stratified_subset_errors():
    labels = np.array([0] * 5 + [1] * 2)
    with pytest.raises(ValueError, match="class 1 has 2 examples, too few for per_class=3"):
        stratified_subset(labels, per_class=3)
    with pytest.raises(ValueError, match="class 1 has 2 examples"):
        stratified_subset(labels, fraction=0.2)
    with pytest.raises(ValueError, match="exactly one"):
        stratified_subset(labels)
    with pytest.raises(ValueError, match="exactly one"):
        stratified_subset(labels, per_class=1, fraction=0.5)
    with pytest.raises(ValueError, match="fraction"):
        stratified_subset(labels, fraction=1.5)
