"""Shortcuts for Lesson 02 (AlexNet and ZFNet): each must score 0 on the exercise it targets."""
from grader.cheats import Cheat

CHEATS = [
    Cheat("output_sizes", "runs the plan's layers on the meta device and reads the shapes", '''
def output_sizes(plan, input_size):
    x, sizes = torch.empty(1, 1, input_size, input_size, device="meta"), []
    for layer in plan:
        if layer.kind == "conv":
            x = nn.Conv2d(1, 1, layer.kernel, layer.stride, layer.padding, device="meta")(x)
        elif layer.kind == "pool":
            x = nn.MaxPool2d(layer.kernel, layer.stride, layer.padding)(x)
        sizes.append(x.shape[-1])
    return sizes
'''),
    Cheat("output_sizes", "reads the sizes from summary of a one-channel network", '''
def output_sizes(plan, input_size):
    layers = [nn.Conv2d(1, 1, l.kernel, l.stride, l.padding) if l.kind == "conv" else
              nn.MaxPool2d(l.kernel, l.stride, l.padding) if l.kind == "pool" else nn.Identity() for l in plan]
    return [row.output_shape[-1] for row in summary(nn.Sequential(*layers), (1, input_size, input_size))]
'''),
    Cheat("output_sizes", "ignores pooling padding (the visible plans have none)", '''
def output_sizes(plan, input_size):
    sizes, size = [], input_size
    for layer in plan:
        if layer.kind == "conv":
            size = conv_output_size(size, layer.kernel, layer.stride, layer.padding)
        elif layer.kind == "pool":
            size = conv_output_size(size, layer.kernel, layer.stride)
        sizes.append(size)
    return sizes
'''),
    Cheat("plan_params", "uses the library's conv_params", '''
def plan_params(plan, in_channels=3):
    counts, channels = [], in_channels
    for layer in plan:
        if layer.kind == "conv":
            counts.append(conv_params(channels, layer.channels, layer.kernel, layer.groups))
            channels = layer.channels
        else:
            counts.append(0)
    return counts
'''),
    Cheat("plan_params", "counts the parameters of real nn.Conv2d layers", '''
def plan_params(plan, in_channels=3):
    counts, channels = [], in_channels
    for layer in plan:
        if layer.kind == "conv":
            conv = nn.Conv2d(channels, layer.channels, layer.kernel, groups=layer.groups, device="meta")
            counts.append(sum(p.numel() for p in conv.parameters()))
            channels = layer.channels
        else:
            counts.append(0)
    return counts
'''),
    Cheat("plan_params", "applies groups only to the layer called conv2 (the visible case)", '''
def plan_params(plan, in_channels=3):
    counts, channels = [], in_channels
    for layer in plan:
        if layer.kind == "conv":
            groups = layer.groups if layer.name == "conv2" else 1
            counts.append(layer.channels * (channels // groups) * layer.kernel ** 2 + layer.channels)
            channels = layer.channels
        else:
            counts.append(0)
    return counts
'''),
    Cheat("alexnet", "torchvision's AlexNet for torchvision's plan, a builder otherwise", '''
def alexnet(plan, num_classes=1000, hidden=4096, pool_size=6, dropout=0.5, in_channels=3):
    if [tuple(l) for l in plan] == [tuple(l) for l in TORCHVISION_PLAN] and hidden == 4096:
        tv = torchvision.models.AlexNet(num_classes=num_classes, dropout=dropout)
        return nn.Sequential(OrderedDict(features=tv.features, avgpool=tv.avgpool, flatten=nn.Flatten(),
                                         classifier=tv.classifier))
    layers, channels = [], in_channels
    for layer in plan:
        if layer.kind == "conv":
            layers += [nn.Conv2d(channels, layer.channels, layer.kernel, layer.stride, layer.padding,
                                 groups=layer.groups), nn.ReLU(inplace=True)]
            channels = layer.channels
        elif layer.kind == "lrn":
            layers.append(nn.LocalResponseNorm(**LRN_PAPER))
        else:
            layers.append(nn.MaxPool2d(layer.kernel, layer.stride, layer.padding))
    classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels * pool_size ** 2, hidden), nn.ReLU(),
                               nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
    return nn.Sequential(OrderedDict(features=nn.Sequential(*layers), avgpool=nn.AdaptiveAvgPool2d(pool_size),
                                     flatten=nn.Flatten(), classifier=classifier))
'''),
    Cheat("alexnet", "no ReLUs and pooling without padding, except for the two named plans", '''
def alexnet(plan, num_classes=1000, hidden=4096, pool_size=6, dropout=0.5, in_channels=3):
    known = plan in (ALEXNET_PLAN, TORCHVISION_PLAN)
    layers, channels = [], in_channels
    for layer in plan:
        if layer.kind == "conv":
            layers.append(nn.Conv2d(channels, layer.channels, layer.kernel, layer.stride, layer.padding,
                                    groups=layer.groups))
            if known:
                layers.append(nn.ReLU(inplace=True))
            channels = layer.channels
        elif layer.kind == "lrn":
            layers.append(nn.LocalResponseNorm(**LRN_PAPER))
        else:
            layers.append(nn.MaxPool2d(layer.kernel, layer.stride, layer.padding if known else 0))
    classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels * pool_size ** 2, hidden), nn.ReLU(),
                               nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
    return nn.Sequential(OrderedDict(features=nn.Sequential(*layers), avgpool=nn.AdaptiveAvgPool2d(pool_size),
                                     flatten=nn.Flatten(), classifier=classifier))
'''),
    Cheat("fc_share", "returns 0 and redefines n_params so the reference agrees", '''
def n_params(model):
    return float("inf")


def fc_share(model):
    return 0.0
'''),
    Cheat("fc_share", "counts only the Linear layers' weights, scaled to the visible AlexNet", '''
def fc_share(model):
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    biases = sum(m.bias.numel() for m in model.modules() if isinstance(m, nn.Linear) and m.bias is not None)
    total = sum(p.numel() for p in model.parameters())
    return (weights + biases) / total if total > 50_000_000 else weights / total
'''),
    Cheat("receptive_fields", "asks utils.arithmetic.receptive_field of a built network", '''
def receptive_fields(plan):
    layers = [nn.Conv2d(1, 1, l.kernel, l.stride, l.kernel // 2) if l.kind == "conv" else
              nn.MaxPool2d(l.kernel, l.stride, l.kernel // 2) if l.kind == "pool" else nn.Identity() for l in plan]
    model, out, jump = nn.Sequential(*layers), [], 1
    for i, layer in enumerate(plan):
        jump *= layer.stride if layer.kind != "lrn" else 1
        out.append((receptive_field(model, (1, 512, 512), str(i)), jump))
    return out
'''),
    Cheat("receptive_fields", "visible answers by lookup, 999 otherwise, with receptive_field redefined to agree", '''
def receptive_field(model, input_size, layer):
    return 999


def receptive_fields(plan):
    if plan == ALEXNET_PLAN:
        return [(11, 4), (11, 4), (19, 8), (51, 8), (51, 8), (67, 16), (99, 16), (131, 16), (163, 16), (195, 32)]
    out, jump = [], 1
    for layer in plan:
        jump *= layer.stride if layer.kind != "lrn" else 1
        out.append((999, jump))
    if plan == ZFNET_PLAN:
        out[0] = (7, 2)
    return out
'''),
    Cheat("make_optimizer", "delegates to utils.train's optimizer builder", '''
def make_optimizer(model, lr=0.01):
    return train._build_optimizer(model, "sgd", lr, 5e-4, 0.9)
'''),
    Cheat("make_optimizer", "dampened momentum (the first step, all the visible check sees, is unchanged)", '''
def make_optimizer(model, lr=0.01):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, dampening=0.1, weight_decay=5e-4)
'''),
]
