"""Shortcuts for Lesson 12 (few-shot, domain shift, detection): each must score 0 on the exercise it targets."""
from grader.cheats import Cheat

CHEATS = [
    Cheat("sample_episode", "draws each class's items with utils.data.stratified_subset", '''
from utils.data import stratified_subset


def sample_episode(labels, n_way, k_shot, n_query, generator=None):
    labels = torch.as_tensor(labels).cpu()
    classes = torch.unique(labels)
    if len(classes) < n_way:
        raise ValueError("too few classes")
    chosen = classes[torch.randperm(len(classes), generator=generator)[:n_way]]
    seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator))
    support, query = [], []
    for cls in chosen:
        members = torch.nonzero(labels == cls).flatten()
        if len(members) < k_shot + n_query:
            raise ValueError("too few items")
        picked = members[stratified_subset(torch.zeros(len(members), dtype=torch.long), per_class=k_shot + n_query,
                                           seed=seed)]
        picked = picked[torch.randperm(len(picked), generator=generator)]
        support.append(picked[:k_shot])
        query.append(picked[k_shot:])
    episode = torch.arange(n_way)
    return torch.cat(support), episode.repeat_interleave(k_shot), torch.cat(query), episode.repeat_interleave(n_query)
'''),
    Cheat("sample_episode", "random classes, but always the first items of each class", '''
def sample_episode(labels, n_way, k_shot, n_query, generator=None):
    labels = torch.as_tensor(labels).cpu()
    classes = torch.unique(labels)
    if len(classes) < n_way:
        raise ValueError("too few classes")
    chosen = classes[torch.randperm(len(classes), generator=generator)[:n_way]]
    support, query = [], []
    for cls in chosen:
        members = torch.nonzero(labels == cls).flatten()
        if len(members) < k_shot + n_query:
            raise ValueError("too few items")
        support.append(members[:k_shot])
        query.append(members[k_shot:k_shot + n_query])
    episode = torch.arange(n_way)
    return torch.cat(support), episode.repeat_interleave(k_shot), torch.cat(query), episode.repeat_interleave(n_query)
'''),
    Cheat("prototypes", "assumes the support is sorted by class with equal counts", '''
def prototypes(support_features, support_labels, n_way):
    return support_features.view(n_way, -1, support_features.shape[1]).mean(dim=1)
'''),
    Cheat("prototypes", "divides every class sum by the average class size", '''
def prototypes(support_features, support_labels, n_way):
    sums = torch.zeros(n_way, support_features.shape[1]).index_add_(0, support_labels.long(), support_features)
    return sums / (len(support_labels) / n_way)
'''),
    Cheat("classify_by_prototype", "normalises the prototypes only", '''
def classify_by_prototype(query_features, protos):
    similarities = query_features @ F.normalize(protos, dim=1).T
    return similarities.argmax(dim=1), similarities
'''),
    Cheat("mean_ci", "z fixed at 1.96 whatever the confidence", '''
def mean_ci(values, confidence=0.95):
    values = [float(v) for v in values]
    return statistics.fmean(values), 1.96 * statistics.stdev(values) / math.sqrt(len(values))
'''),
    Cheat("mean_ci", "the population standard deviation (divisor n)", '''
def mean_ci(values, confidence=0.95):
    values = [float(v) for v in values]
    z = statistics.NormalDist().inv_cdf((1 + confidence) / 2)
    return statistics.fmean(values), z * statistics.pstdev(values) / math.sqrt(len(values))
'''),
    Cheat("gaussian_noise", "delegates to torchvision's gaussian_noise, seeded from the generator", '''
import torchvision.transforms.v2.functional as F2


def gaussian_noise(images, sigma, generator=None):
    if generator is not None:
        torch.manual_seed(generator.initial_seed())
    x = F2.gaussian_noise(images.float() / 255, sigma=sigma)
    return (x * 255).round().to(torch.uint8)
'''),
    Cheat("gaussian_noise", "one noise value per image and channel", '''
def gaussian_noise(images, sigma, generator=None):
    noise = torch.randn(images.shape[:2] + (1, 1), generator=generator).to(images.device)
    return ((images.float() / 255 + sigma * noise).clamp(0, 1) * 255).round().to(torch.uint8)
'''),
    Cheat("gaussian_noise", "noise drawn on a 2x coarser grid and upsampled", '''
def gaussian_noise(images, sigma, generator=None):
    n, c, h, w = images.shape
    noise = torch.randn(n, c, (h + 1) // 2, (w + 1) // 2, generator=generator)
    noise = noise.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)[..., :h, :w].to(images.device)
    return ((images.float() / 255 + sigma * noise).clamp(0, 1) * 255).round().to(torch.uint8)
'''),
    Cheat("adabn", "delegates to torch.optim.swa_utils.update_bn", '''
from torch.optim.swa_utils import update_bn


def adabn(model, batches, batch_transform=None):
    device = next(model.parameters()).device
    transform = batch_transform or (lambda x: x)
    inputs = (transform((b[0] if isinstance(b, (tuple, list)) else b).to(device)) for b in batches)
    with torch.no_grad():
        update_bn(inputs, model)
    return model.eval()
'''),
    Cheat("adabn", "forward passes with autograd on", '''
def adabn(model, batches, batch_transform=None):
    device = next(model.parameters()).device
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for batch in batches:
        x = (batch[0] if isinstance(batch, (tuple, list)) else batch).to(device)
        model(batch_transform(x) if batch_transform else x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return model.eval()
'''),
    Cheat("count_params_by_part", "counts trainable parameters with utils.backbones.count_trainable", '''
from utils.backbones import count_trainable


def count_params_by_part(detector):
    return {"backbone": count_trainable(detector.backbone.body), "neck": count_trainable(detector.backbone.fpn),
            "rpn": count_trainable(detector.rpn), "roi_heads": count_trainable(detector.roi_heads)}
'''),
    Cheat("count_params_by_part", "hard-codes the visible detector's counts", '''
_VISIBLE = {}


def count_params_by_part(detector):
    if not _VISIBLE:
        parts = {"backbone": detector.backbone.body, "neck": detector.backbone.fpn, "rpn": detector.rpn,
                 "roi_heads": detector.roi_heads}
        _VISIBLE.update({k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()})
    return dict(_VISIBLE)
'''),
]
