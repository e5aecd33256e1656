"""Shortcuts for Lesson 07 (pretrained models): each must score 0 on the exercise it targets."""
from grader.cheats import Cheat

CHEATS = [
    Cheat("count_parameters", "delegates the trainable count to utils.backbones.count_trainable", '''
from utils.backbones import count_trainable


def count_parameters(module, trainable_only=False):
    if trainable_only:
        return count_trainable(module)
    return sum(p.numel() for p in module.parameters())
'''),
    Cheat("count_parameters", "reads both counts off utils.backbones.trainable_report", '''
def count_parameters(module, trainable_only=False):
    report = backbones.trainable_report(module)
    return report.trainable if trainable_only else report.total
'''),
    Cheat("attach_head", "returns a modified copy instead of the backbone it was given", '''
def attach_head(backbone, num_classes, freeze_backbone=True):
    model = copy.deepcopy(backbone)
    model.reset_classifier(num_classes)
    if freeze_backbone:
        backbones.freeze(model)
    return model
'''),
    Cheat("attach_head", "always freezes, whatever freeze_backbone says", '''
def attach_head(backbone, num_classes, freeze_backbone=True):
    backbone.reset_classifier(num_classes)
    backbones.freeze(backbone)
    return backbone
'''),
    Cheat("attach_head", "requires_grad_(False) and one bn.eval(): train() puts BN back in train mode", '''
def attach_head(backbone, num_classes, freeze_backbone=True):
    head = backbone.reset_classifier(num_classes)
    if freeze_backbone:
        backbone.requires_grad_(False)
        head.requires_grad_(True)
        for module in backbone.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
    return backbone
'''),
    Cheat("imagenet_indices", "list.index: the first match, duplicates never detected", '''
def imagenet_indices(class_names, imagenet_names):
    names = list(imagenet_names)
    missing = [n for n in class_names if n not in names]
    if missing:
        raise ValueError(f"not ImageNet classes: {missing}")
    return [names.index(n) for n in class_names]
'''),
    Cheat("imagenet_indices", "looks the answers up in utils.data.IMAGENETTE_CLASSES", '''
def imagenet_indices(class_names, imagenet_names):
    known = {name: index for _, name, index in data.IMAGENETTE_CLASSES}
    missing = [n for n in class_names if n not in known]
    if missing:
        raise ValueError(f"unknown classes: {missing}")
    return [known[n] for n in class_names]
'''),
    Cheat("imagenet_indices", "ignores the list it is given and searches utils.backbones.imagenet_classes()", '''
def imagenet_indices(class_names, imagenet_names):
    names = backbones.imagenet_classes()
    for n in class_names:
        if names.count(n) != 1:
            raise ValueError(f"{n!r} occurs {names.count(n)} times")
    return [names.index(n) for n in class_names]
'''),
    Cheat("restricted_predict", "hard-codes the visible toy answers", '''
def restricted_predict(logits, class_indices):
    return torch.tensor([1, 1] if list(class_indices) == [2, 3] else [1, 0])
'''),
    Cheat("restricted_predict", "returns ImageNet indices instead of positions", '''
def restricted_predict(logits, class_indices):
    columns = torch.as_tensor(list(class_indices))
    return columns[logits[:, columns].argmax(dim=1)]
'''),
    Cheat("pyramid_stages", "a table of EfficientNet-Lite0's answers", '''
def pyramid_stages(feature_info, reductions=(8, 16, 32)):
    table = {2: "stem", 4: "blocks.1", 8: "blocks.2", 16: "blocks.4", 32: "blocks.6"}
    return [table[r] for r in reductions]
'''),
    Cheat("backbone_with_fpn", "subclasses torchvision's detection BackboneWithFPN", '''
from torchvision.models.detection.backbone_utils import BackboneWithFPN as _DetectionBackbone


class BackboneWithFPN(_DetectionBackbone):
    """torchvision's detection backbone + FPN, fed by forward_stages instead of IntermediateLayerGetter."""

    def __init__(self, backbone, stages, out_channels=64):
        nn.Module.__init__(self)
        self.backbone = backbone
        self.stages = list(stages)
        channels = {row["module"]: row["num_chs"] for row in backbone.feature_info}
        self.fpn = FeaturePyramidNetwork([channels[name] for name in self.stages], out_channels)
        self.out_channels = out_channels

    def forward(self, x):
        return self.fpn(self.backbone.forward_stages(x, self.stages))
'''),
    Cheat("backbone_with_fpn", "its own neck named FeaturePyramidNetwork, without the top-down pathway", '''
from collections import OrderedDict as _OrderedDict
import torchvision.ops


class FeaturePyramidNetwork(torchvision.ops.FeaturePyramidNetwork):
    """Lateral 1x1 and smoothing 3x3 convolutions per level; the top-down sum left out."""

    def forward(self, x):
        return _OrderedDict((name, self.get_result_from_layer_blocks(self.get_result_from_inner_blocks(fmap, i), i))
                            for i, (name, fmap) in enumerate(x.items()))


class BackboneWithFPN(nn.Module):
    def __init__(self, backbone, stages, out_channels=64):
        super().__init__()
        self.backbone = backbone
        self.stages = list(stages)
        channels = {row["module"]: row["num_chs"] for row in backbone.feature_info}
        self.fpn = FeaturePyramidNetwork([channels[name] for name in self.stages], out_channels)

    def forward(self, x):
        return self.fpn(self.backbone.forward_stages(x, self.stages))
'''),
    Cheat("backbone_with_fpn", "runs the backbone once per pyramid level", '''
class BackboneWithFPN(nn.Module):
    def __init__(self, backbone, stages, out_channels=64):
        super().__init__()
        self.backbone = backbone
        self.stages = list(stages)
        channels = {row["module"]: row["num_chs"] for row in backbone.feature_info}
        self.fpn = FeaturePyramidNetwork([channels[name] for name in self.stages], out_channels)

    def forward(self, x):
        maps = OrderedDict((name, self.backbone.forward_stages(x, [name])[name]) for name in self.stages)
        return self.fpn(maps)
'''),
    Cheat("cosine_nearest_neighbours", "exclude_self by dropping the first column of top-(k+1)", '''
def cosine_nearest_neighbours(queries, keys, k=5, exclude_self=False):
    similarity = F.normalize(queries.float(), dim=1) @ F.normalize(keys.float(), dim=1).T
    sims, idx = similarity.topk(k + 1 if exclude_self else k, dim=1)
    return (sims[:, 1:], idx[:, 1:]) if exclude_self else (sims, idx)
'''),
    Cheat("cosine_nearest_neighbours", "normalises the queries only", '''
def cosine_nearest_neighbours(queries, keys, k=5, exclude_self=False):
    similarity = F.normalize(queries.float(), dim=1) @ keys.float().T
    if exclude_self:
        similarity.fill_diagonal_(float("-inf"))
    return similarity.topk(k, dim=1)
'''),
]
