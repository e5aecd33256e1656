"""Behaviour of utils.features on CPU: frozen-backbone features, their disk cache, layer selection."""
import os

import pytest
import torch
from torch import nn

from utils import features as features_module
from utils.features import extract_features, feature_cache_path

from synthetic import stripe_images, to_float

CPU = "cpu"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny ops spend more time synchronising threads than computing, badly so on a busy 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class CountingBackbone(nn.Module):
    """A timm-like backbone: forward_features gives N x 4 x 4 x 4 maps; counts its calls and modes."""

    num_features = 4

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.stages = nn.ModuleList([nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, stride=2, padding=1)])
        self.calls, self.modes = 0, []

    def forward_features(self, x):
        self.calls += 1
        self.modes.append(self.training)
        x = self.bn(self.stem(x))
        for stage in self.stages:
            x = stage(x).relu()
        return x


def test_extract_features_pools_caches_and_skips_the_backbone(tmp_path):
    x, y = stripe_images(n=40)
    backbone = CountingBackbone().train()
    kwargs = dict(batch_transform=to_float, device=CPU, batch_size=16, cache_dir=tmp_path)
    features, labels = extract_features(backbone, (x, y), cache_key=("counting", "stripes", "train", "float"), **kwargs)
    assert features.shape == (40, 4) and features.dtype == torch.float32 and torch.equal(labels, y)
    assert backbone.calls == 3 and backbone.modes == [False] * 3 and backbone.training
    files = list((tmp_path / "features").iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt" and "counting-stripes-train-float" in files[0].name

    again, labels_again = extract_features(backbone, (x, y), cache_key=("counting", "stripes", "train", "float"),
                                           **kwargs)
    assert backbone.calls == 3  # read from disk
    assert torch.equal(again, features) and torch.equal(labels_again, labels)

    extract_features(backbone, (x[:20], y[:20]), cache_key=("counting", "stripes", "train", "float"), **kwargs)
    assert backbone.calls == 5  # a subset of another size never reads the full set's file
    maps, _ = extract_features(backbone, (x, y), pool=False, **kwargs)
    assert maps.shape == (40, 4, 4, 4)
    assert torch.allclose(maps.mean(dim=(2, 3)), features, atol=1e-6)


class NamedStageBackbone(CountingBackbone):
    """Like utils.backbones.Backbone: ``stages`` lists the stages' module *names*."""

    stage_names = ["stem", "blocks.0", "blocks.1"]

    def __init__(self):
        super().__init__()
        self.blocks = self.stages
        del self.stages
        self.stages = list(self.stage_names)

    def forward_features(self, x):
        self.calls += 1
        x = self.bn(self.stem(x))
        for block in self.blocks:
            x = block(x).relu()
        return x


def test_extract_features_from_one_stage_and_without_cache():
    x, y = stripe_images(n=8)
    backbone = CountingBackbone()
    first_stage, _ = extract_features(backbone, (x, y), batch_transform=to_float, device=CPU, layer=0)
    assert first_stage.shape == (8, 4)
    full, _ = extract_features(backbone, (x, y), batch_transform=to_float, device=CPU)
    assert not torch.allclose(first_stage, full)
    by_module, _ = extract_features(backbone, (x, y), batch_transform=to_float, device=CPU, layer=backbone.stages[0])
    assert torch.equal(by_module, first_stage)
    # the hook sees the conv output (before the ReLU that forward_features applies)
    expected = backbone.stages[0](backbone.bn.eval()(backbone.stem(to_float(x)))).mean(dim=(2, 3))
    assert torch.allclose(first_stage, expected.detach(), atol=1e-6)

    named = NamedStageBackbone()
    by_index, _ = extract_features(named, (x, y), batch_transform=to_float, device=CPU, layer=1)  # "blocks.0"
    by_name, _ = extract_features(named, (x, y), batch_transform=to_float, device=CPU, layer="blocks.0")
    assert torch.equal(by_index, by_name) and torch.allclose(by_index, first_stage)
    stem_maps, _ = extract_features(named, (x, y), batch_transform=to_float, device=CPU, layer="stem", pool=False)
    assert stem_maps.shape == (8, 4, 8, 8)


def test_feature_cache_write_is_atomic(tmp_path, monkeypatch):
    x, y = stripe_images(n=8)
    original_save = torch.save

    def crash_half_way(obj, handle, *args, **kwargs):
        if isinstance(handle, (str, os.PathLike)):
            with open(handle, "wb") as file:
                file.write(b"partial")
        else:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_half_way)
    with pytest.raises(OSError):
        extract_features(CountingBackbone(), (x, y), batch_transform=to_float, cache_key="crash", device=CPU,
                         cache_dir=tmp_path)
    assert list((tmp_path / "features").iterdir()) == []  # neither a partial file nor a temporary one
    monkeypatch.setattr(torch, "save", original_save)
    backbone = CountingBackbone()
    extract_features(backbone, (x, y), batch_transform=to_float, cache_key="crash", device=CPU, cache_dir=tmp_path)
    extract_features(backbone, (x, y), batch_transform=to_float, cache_key="crash", device=CPU, cache_dir=tmp_path)
    assert backbone.calls == 1


def test_cache_path_is_under_the_course_cache_and_keyed_by_what_changes_features(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    key = ("resnet18", "hymenoptera", "val", "eval224")
    path = feature_cache_path(key, num_samples=153)
    assert path.parent == tmp_path / "features"  # utils.data.cache_dir() decides, from COURSE_CACHE_DIR
    assert path.name.startswith("resnet18-hymenoptera-val-eval224-") and path.suffix == ".pt"
    others = {feature_cache_path(key, num_samples=20), feature_cache_path(key, num_samples=153, pool=False),
              feature_cache_path(key, num_samples=153, layer=2), feature_cache_path(key[:3], num_samples=153)}
    assert path not in others and len(others) == 4
    assert feature_cache_path(key, num_samples=153, cache_dir=tmp_path / "x").parent == tmp_path / "x" / "features"
    assert features_module.__all__ == ["extract_features", "feature_cache_path"]
