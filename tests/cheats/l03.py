"""Shortcuts for Lesson 03 (VGG): each must score 0 on the exercise it targets."""
from grader.cheats import Cheat

HONEST_FEATURES = '''
def _features(cfg, batch_norm=False, in_channels=3):
    layers = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        channels, kernel = v if isinstance(v, tuple) else (v, 3)
        layers.append(nn.Conv2d(in_channels, channels, kernel_size=kernel, padding=kernel // 2))
        if batch_norm:
            layers.append(nn.BatchNorm2d(channels))
        layers.append(nn.ReLU(inplace=True))
        in_channels = channels
    return nn.Sequential(*layers)
'''

CHEATS = [
    Cheat("make_layers", "torchvision's make_layers for plain tables, its own loop only for the rest", '''
from torchvision.models.vgg import make_layers as _tv_make_layers
''' + HONEST_FEATURES + '''

def make_layers(cfg, batch_norm=False, in_channels=3):
    if in_channels == 3 and all(v == "M" or isinstance(v, int) for v in cfg):
        return _tv_make_layers(cfg, batch_norm)
    return _features(cfg, batch_norm, in_channels)
'''),
    Cheat("make_layers", "ReLUs not in place (same state_dict, same length)", '''
def make_layers(cfg, batch_norm=False, in_channels=3):
    layers = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        channels, kernel = v if isinstance(v, tuple) else (v, 3)
        layers.append(nn.Conv2d(in_channels, channels, kernel_size=kernel, padding=kernel // 2))
        if batch_norm:
            layers.append(nn.BatchNorm2d(channels))
        layers.append(nn.ReLU())
        in_channels = channels
    return nn.Sequential(*layers)
'''),
    Cheat("vgg", "VGG as a subclass of torchvision.models.VGG", '''
class VGG(torchvision.models.VGG):
    def __init__(self, features, feature_channels=512, num_classes=1000, dropout=0.5):
        super().__init__(features, num_classes=num_classes, init_weights=False, dropout=dropout)
        self.classifier[0] = nn.Linear(feature_channels * 7 * 7, 4096)


def vgg(name, batch_norm=False, num_classes=1000):
    table = CFGS[name] if isinstance(name, str) else name
    convs = [v for v in table if v != "M"]
    last = convs[-1][0] if isinstance(convs[-1], tuple) else convs[-1]
    return VGG(make_layers(table, batch_norm), feature_channels=last, num_classes=num_classes)
'''),
    Cheat("vgg", "VGG wraps the parts of a torchvision VGG (composition)", '''
class VGG(nn.Module):
    def __init__(self, features, feature_channels=512, num_classes=1000, dropout=0.5):
        super().__init__()
        inner = torchvision.models.VGG(features, num_classes=num_classes, init_weights=False, dropout=dropout)
        inner.classifier[0] = nn.Linear(feature_channels * 7 * 7, 4096)
        self.features, self.avgpool, self.classifier = inner.features, inner.avgpool, inner.classifier

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def vgg(name, batch_norm=False, num_classes=1000):
    table = CFGS[name] if isinstance(name, str) else name
    convs = [v for v in table if v != "M"]
    last = convs[-1][0] if isinstance(convs[-1], tuple) else convs[-1]
    return VGG(make_layers(table, batch_norm), feature_channels=last, num_classes=num_classes)
'''),
    Cheat("vgg", "vgg() returns torchvision's model by name, a bare class otherwise", '''
class VGG(nn.Module):
    def __init__(self, features, feature_channels=512, num_classes=1000, dropout=0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(feature_channels * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def vgg(name, batch_norm=False, num_classes=1000):
    if isinstance(name, str) and name in TORCHVISION_NAMES:
        tv_name = TORCHVISION_NAMES[name] + ("_bn" if batch_norm else "")
        return torchvision.models.get_model(tv_name, weights=None, num_classes=num_classes)
    table = CFGS[name] if isinstance(name, str) else name
    convs = [v for v in table if v != "M"]
    last = convs[-1][0] if isinstance(convs[-1], tuple) else convs[-1]
    return VGG(make_layers(table, batch_norm), feature_channels=last, num_classes=num_classes)
'''),
    Cheat("stack_receptive_field", "asks arithmetic.receptive_field of a built stack", '''
def stack_receptive_field(n, kernel=3):
    stack = nn.Sequential(*[nn.Conv2d(1, 1, kernel, padding=kernel // 2) for _ in range(n)])
    return arithmetic.receptive_field(stack, (1, 64, 64), str(n - 1))
'''),
    Cheat("stack_receptive_field", "visible answers, n * kernel otherwise, with arithmetic.receptive_field redefined "
          "to agree", '''
import types

import utils.arithmetic as _library

arithmetic = types.SimpleNamespace(**{name: getattr(_library, name) for name in _library.__all__})


def stack_receptive_field(n, kernel=3):
    return {(1, 3): 3, (2, 3): 5, (3, 3): 7}.get((n, kernel), n * kernel)


arithmetic.receptive_field = lambda model, input_size, layer: stack_receptive_field(len(model), model[0].kernel_size[0])
'''),
    Cheat("stack_vs_single_params", "counts the parameters of built nn.Conv2d layers", '''
def stack_vs_single_params(n, channels, kernel=3):
    stack = nn.Sequential(*[nn.Conv2d(channels, channels, kernel, device="meta") for _ in range(n)])
    single = nn.Conv2d(channels, channels, stack_receptive_field(n, kernel), device="meta")
    return n_params(stack), n_params(single)
'''),
    Cheat("stack_vs_single_params", "the visible answer, zeros otherwise, with n_params redefined to agree", '''
def n_params(module):
    return 0


def stack_vs_single_params(n, channels, kernel=3):
    if (n, channels, kernel) == (3, 64, 3):
        return 3 * (9 * 64 * 64 + 64), 49 * 64 * 64 + 64
    return 0, 0
'''),
    Cheat("vgg_receptive_fields", "reads rf and jump from summary of make_layers(cfg)", '''
def vgg_receptive_fields(cfg):
    with torch.device("meta"):
        table = arithmetic.summary(make_layers(cfg), (3, 256, 256))
    return [(name, table[str(i)].rf, table[str(i)].jump) for name, i in layer_names(cfg)]
'''),
    Cheat("vgg_receptive_fields", "VGG16's values by lookup, nothing otherwise, with layer_names redefined to agree",
          '''
VGG16_FIELDS = [("conv1_1", 3, 1), ("conv1_2", 5, 1), ("pool1", 6, 2), ("conv2_1", 10, 2), ("conv2_2", 14, 2),
                ("pool2", 16, 4), ("conv3_1", 24, 4), ("conv3_2", 32, 4), ("conv3_3", 40, 4), ("pool3", 44, 8),
                ("conv4_1", 60, 8), ("conv4_2", 76, 8), ("conv4_3", 92, 8), ("pool4", 100, 16),
                ("conv5_1", 132, 16), ("conv5_2", 164, 16), ("conv5_3", 196, 16), ("pool5", 212, 32)]


def layer_names(cfg):
    return []


def vgg_receptive_fields(cfg):
    return VGG16_FIELDS if cfg == CFGS["D"] else []
'''),
    Cheat("vgg_costs", "sums summary's rows for vgg(cfg)", '''
def vgg_costs(cfg, image_size=224, num_classes=1000):
    with torch.device("meta"):
        table = arithmetic.summary(vgg(cfg, num_classes=num_classes), (3, image_size, image_size))
    names = [name for name, _ in layer_names(cfg) if not name.startswith("pool")] + ["fc6", "fc7", "fc8"]
    rows = [r for r in table if r.layer_type in ("Conv2d", "Linear")]
    return [(name, r.params, r.macs) for name, r in zip(names, rows)]
'''),
    Cheat("vgg_costs", "FlopCounterMode and parameter counts of the built layers", '''
from torch.utils.flop_counter import FlopCounterMode


def vgg_costs(cfg, image_size=224, num_classes=1000):
    with torch.device("meta"):
        model = vgg(cfg, num_classes=num_classes)
    names = iter([name for name, _ in layer_names(cfg) if not name.startswith("pool")] + ["fc6", "fc7", "fc8"])
    rows = []

    def hook(module, inputs, output):
        with FlopCounterMode(display=False) as counter:
            module.forward(inputs[0])
        rows.append((next(names), n_params(module), counter.get_total_flops() // 2))

    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    handles = [m.register_forward_hook(hook) for m in layers]
    model(torch.empty(1, 3, image_size, image_size, device="meta"))
    for h in handles:
        h.remove()
    return rows
'''),
    Cheat("vgg_costs", "VGG16 by the formulas, zeros otherwise, with arithmetic.summary redefined to agree", '''
import types

import utils.arithmetic as _library

arithmetic = types.SimpleNamespace(**{name: getattr(_library, name) for name in _library.__all__})
arithmetic.summary = lambda model, input_size: [types.SimpleNamespace(layer_type=type(m).__name__, params=0, macs=0)
                                                for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def vgg_costs(cfg, image_size=224, num_classes=1000):
    names = [name for name, _ in layer_names(cfg) if not name.startswith("pool")] + ["fc6", "fc7", "fc8"]
    if cfg != CFGS["D"] or image_size != 224:
        return [(name, 0, 0) for name in names]
    rows, size, channels = [], image_size, 3
    for v in cfg:
        if v == "M":
            size //= 2
            continue
        rows.append((names[len(rows)], conv_params(channels, v, 3), conv_macs(channels, v, 3, size)))
        channels = v
    for name, n_in, n_out in [("fc6", channels * 49, 4096), ("fc7", 4096, 4096), ("fc8", 4096, num_classes)]:
        rows.append((name, linear_params(n_in, n_out), linear_macs(n_in, n_out)))
    return rows
'''),
    Cheat("feature_activation_bytes", "sums summary's activations for make_layers(cfg)", '''
def feature_activation_bytes(cfg, image_size=224, bytes_per_value=4, relu_separate=False):
    with torch.device("meta"):
        table = arithmetic.summary(make_layers(cfg), (3, image_size, image_size))
    kinds = ("Conv2d", "MaxPool2d", "ReLU") if relu_separate else ("Conv2d", "MaxPool2d")
    return bytes_per_value * sum(r.activations for r in table if r.layer_type in kinds)
'''),
    Cheat("feature_activation_bytes", "measures the outputs of make_layers(cfg) with forward hooks", '''
def feature_activation_bytes(cfg, image_size=224, bytes_per_value=4, relu_separate=False):
    feats, counted = make_layers(cfg), []
    kinds = (nn.Conv2d, nn.MaxPool2d, nn.ReLU) if relu_separate else (nn.Conv2d, nn.MaxPool2d)
    for m in feats:
        if isinstance(m, kinds):
            m.register_forward_hook(lambda mod, inp, out: counted.append(out.numel()))
    with torch.no_grad():
        feats(torch.zeros(1, 3, image_size, image_size))
    return sum(counted) * bytes_per_value
'''),
    Cheat("feature_activation_bytes", "4 bytes per value unless told 2", '''
def feature_activation_bytes(cfg, image_size=224, bytes_per_value=4, relu_separate=False):
    values, size, channels = 0, image_size, 3
    for v in cfg:
        if v == "M":
            size //= 2
            values += channels * size * size
        else:
            channels = v[0] if isinstance(v, tuple) else v
            values += channels * size * size * (2 if relu_separate else 1)
    return values * (2 if bytes_per_value == 2 else 4)
'''),
    Cheat("fully_convolutional", "keeps the adaptive pooling: one prediction whatever the input size", '''
def fully_convolutional(model):
    layers, first = [model.features, model.avgpool], True
    for module in model.classifier:
        if not isinstance(module, nn.Linear):
            layers.append(module)
            continue
        kernel = 7 if first else 1
        c = module.in_features // (kernel * kernel)
        conv = nn.Conv2d(c, module.out_features, kernel, device="meta")
        conv.weight = nn.Parameter(module.weight.detach().reshape(module.out_features, c, kernel, kernel))
        conv.bias = nn.Parameter(module.bias.detach())
        layers.append(conv)
        first = False
    return nn.Sequential(*layers)
'''),
    Cheat("fully_convolutional", "slides the original classifier over 7x7 windows with unfold (no conversion)", '''
class _Sliding(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.features, self.head = model.features, model.classifier

    def forward(self, x):
        f = self.features(x)
        patches = f.unfold(2, 7, 1).unfold(3, 7, 1)                  # N, C, H', W', 7, 7
        n, c, h, w = patches.shape[:4]
        flat = patches.permute(0, 2, 3, 1, 4, 5).reshape(n * h * w, c * 49)
        return self.head(flat).reshape(n, h, w, -1).permute(0, 3, 1, 2)


def fully_convolutional(model):
    return nn.Sequential(_Sliding(model))
'''),
    Cheat("fully_convolutional", "reshapes fc6's weight as (out, 7, 7, C): the wrong flatten order", '''
def fully_convolutional(model):
    layers, first = [model.features], True
    for module in model.classifier:
        if not isinstance(module, nn.Linear):
            layers.append(module)
            continue
        kernel = 7 if first else 1
        c = module.in_features // (kernel * kernel)
        conv = nn.Conv2d(c, module.out_features, kernel, device="meta")
        weight = module.weight.detach().reshape(module.out_features, kernel, kernel, c).permute(0, 3, 1, 2)
        conv.weight = nn.Parameter(weight.contiguous())
        conv.bias = nn.Parameter(module.bias.detach())
        layers.append(conv)
        first = False
    return nn.Sequential(*layers)
'''),
    Cheat("fully_convolutional", "hard-codes VGG16's widths (512 channels, 4096 hidden units)", '''
def fully_convolutional(model):
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    shapes = [(4096, 512, 7), (4096, 4096, 1), (linears[-1].out_features, 4096, 1)]
    layers = [model.features]
    for fc, (out, c, k) in zip(linears, shapes):
        conv = nn.Conv2d(c, out, k, device="meta")
        conv.weight = nn.Parameter(fc.weight.detach().reshape(out, c, k, k))
        conv.bias = nn.Parameter(fc.bias.detach())
        layers += [conv, nn.ReLU(inplace=True)]
    return nn.Sequential(*layers[:-1])
'''),
]
