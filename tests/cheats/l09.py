"""Shortcuts for Lesson 09 (fine-tuning): each must score 0 on the exercise it targets."""
from grader.cheats import Cheat

CHEATS = [
    Cheat("moved_stages", "matches keys by prefix without the dot ('stage1' takes 'stage10.*')", '''
def moved_stages(model, reference, what="params", atol=0.0):
    if what == "params":
        tensors = dict(model.named_parameters())
    else:
        tensors = {k: v for k, v in model.named_buffers() if v.is_floating_point()}
    return [stage for stage in stage_names(model)
            if any((tensors[k].detach().cpu().float() - reference[k].cpu().float()).abs().max() > atol
                   for k in tensors if k.startswith(stage))]
'''),
    Cheat("moved_stages", "counts every buffer, num_batches_tracked included", '''
def moved_stages(model, reference, what="params", atol=0.0):
    tensors = dict(model.named_parameters()) if what == "params" else dict(model.named_buffers())
    return [stage for stage in stage_names(model)
            if any((tensors[k].detach().cpu().float() - reference[k].cpu().float()).abs().max() > atol
                   for k in tensors if k == stage or k.startswith(stage + "."))]
'''),
    Cheat("discriminative_param_groups", "wraps utils.backbones.layerwise_lrs", '''
def discriminative_param_groups(model, head_lr, decay, weight_decay=0.0):
    return [{"name": name, "params": list(model.get_submodule(name).parameters()), "lr": lr,
             "weight_decay": weight_decay}
            for name, lr in layerwise_lrs(model, head_lr, decay).items()]
'''),
    Cheat("discriminative_param_groups", "unfreezes, calls utils.backbones.param_groups, re-freezes", '''
def discriminative_param_groups(model, head_lr, decay, weight_decay=0.0):
    flags = {p: p.requires_grad for p in model.parameters()}
    model.requires_grad_(True)
    groups = param_groups(model, layerwise_lrs(model, head_lr, decay), weight_decay=weight_decay)
    for p, flag in flags.items():
        p.requires_grad_(flag)
    return groups
'''),
    Cheat("discriminative_param_groups", "counts the parameter-free 'pool' stage in the decay", '''
def discriminative_param_groups(model, head_lr, decay, weight_decay=0.0):
    names = stage_names(model)
    groups = []
    for i, name in enumerate(names):
        params = list(model.get_submodule(name).parameters())
        if params:
            groups.append({"name": name, "params": params, "lr": head_lr * decay ** (len(names) - 1 - i),
                           "weight_decay": weight_decay})
    return groups
'''),
    Cheat("freeze_bn_safe", "returns utils.backbones.freeze(model, stages)", '''
def freeze_bn_safe(model, stages):
    return freeze(model, stages)
'''),
    Cheat("freeze_bn_safe", "registers utils.backbones' own keep-eval hook", '''
from utils.backbones import _keep_eval


def freeze_bn_safe(model, stages):
    for name in stages:
        stage = model.get_submodule(name)
        stage.requires_grad_(False)
        for module in stage.modules():
            if isinstance(module, _BatchNorm):
                module.eval()
                module.register_forward_pre_hook(_keep_eval)
    return model
'''),
    Cheat("freeze_bn_safe", "swaps each BatchNorm2d for torchvision.ops.FrozenBatchNorm2d", '''
from torchvision.ops import FrozenBatchNorm2d


def freeze_bn_safe(model, stages):
    for name in stages:
        stage = model.get_submodule(name)
        stage.requires_grad_(False)
        for parent in list(stage.modules()):
            for child_name, child in list(parent.named_children()):
                if isinstance(child, nn.BatchNorm2d):
                    frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
                    frozen.weight.copy_(child.weight.detach())
                    frozen.bias.copy_(child.bias.detach())
                    frozen.running_mean.copy_(child.running_mean)
                    frozen.running_var.copy_(child.running_var)
                    setattr(parent, child_name, frozen)
                elif isinstance(child, _BatchNorm):
                    child.eval()
                    child.register_forward_pre_hook(lambda m, args: setattr(m, "training", False))
    return model
'''),
    Cheat("freeze_bn_safe", "requires_grad only, and redefines moved_stages to hide frozen stages' statistics", '''
def freeze_bn_safe(model, stages):
    for name in stages:
        model.get_submodule(name).requires_grad_(False)
    return model


_moved_stages = moved_stages


def moved_stages(model, reference, what="params", atol=0.0):
    stages = _moved_stages(model, reference, what, atol)
    if what == "buffers":   # statistics of a frozen stage "do not count"
        stages = [s for s in stages if any(p.requires_grad for p in model.get_submodule(s).parameters())]
    return stages
'''),
    Cheat("unfreezing_schedule", "a table of the visible answers", '''
def unfreezing_schedule(stages, epochs, head_epochs=1, stages_per_epoch=1, lowest=None):
    if lowest is not None:
        return [list(stages[-1:])] + [list(stages[stages.index(lowest):])] * (epochs - 1)
    plan, n = [], 1
    for e in range(epochs):
        if e >= head_epochs:
            n += stages_per_epoch
        plan.append(list(stages[-n:]))
    return plan
'''),
    Cheat("gradual_unfreezing", "sets requires_grad only: frozen BatchNorm statistics still move", '''
class GradualUnfreezing:
    def __init__(self, schedule):
        self.schedule = [list(entry) for entry in schedule]
        self.trainable = []

    def on_epoch_begin(self, epoch, model):
        active = self.schedule[min(epoch, len(self.schedule)) - 1]
        for stage in stage_names(model):
            model.get_submodule(stage).requires_grad_(stage in active)
        self.trainable.append(count_trainable(model))
'''),
    Cheat("gradual_unfreezing", "only ever unfreezes (never freezes what is not scheduled)", '''
class GradualUnfreezing:
    def __init__(self, schedule):
        self.schedule = [list(entry) for entry in schedule]
        self.trainable = []
        self.started = False

    def on_epoch_begin(self, epoch, model):
        if not self.started:
            freeze(model, stage_names(model))
            self.started = True
        unfreeze(model, self.schedule[min(epoch, len(self.schedule)) - 1])
        self.trainable.append(count_trainable(model))
'''),
    Cheat("augment_batch", "torchvision.transforms.v2 image by image", '''
from torchvision.transforms import v2


def augment_batch(images, flip_p=0.5, brightness=0.2, contrast=0.2, generator=None):
    jitter = v2.Compose([v2.RandomHorizontalFlip(flip_p), v2.ColorJitter(brightness=brightness, contrast=contrast)])
    return torch.stack([jitter(image) for image in images]).clamp(0, 1)
'''),
    Cheat("augment_batch", "contrast around the batch's mean instead of each image's", '''
def augment_batch(images, flip_p=0.5, brightness=0.2, contrast=0.2, generator=None):
    n = images.shape[0]

    def draw():
        return torch.rand(n, 1, 1, 1, generator=generator, device=images.device, dtype=images.dtype)

    x = torch.where(draw() < flip_p, images.flip(-1), images)
    x = x * (1 - brightness + 2 * brightness * draw())
    mean = x.mean()
    return (mean + (1 - contrast + 2 * contrast * draw()) * (x - mean)).clamp(0, 1)
'''),
    Cheat("augment_batch", "ignores the generator: the global RNG", '''
def augment_batch(images, flip_p=0.5, brightness=0.2, contrast=0.2, generator=None):
    n = images.shape[0]

    def draw():
        return torch.rand(n, 1, 1, 1, device=images.device, dtype=images.dtype)

    x = torch.where(draw() < flip_p, images.flip(-1), images)
    x = x * (1 - brightness + 2 * brightness * draw())
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (mean + (1 - contrast + 2 * contrast * draw()) * (x - mean)).clamp(0, 1)
'''),
]
