"""Shortcuts for Lesson 05 (ResNet): each must score 0 on the exercise it targets."""
from grader.cheats import Cheat

_BASIC_BODY = '''
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample
        self.residual = residual
'''

CHEATS = [
    Cheat("he_init", "borrows timm's ResNet.init_weights and makes randomise_ a no-op so BN looks initialised", '''
from timm.models.resnet import ResNet as _TimmResNet


def he_init_(model, zero_init_residual=False):
    _TimmResNet.init_weights(model, zero_init_last=False)
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.bias is not None:
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in model.modules():
            if hasattr(m, "downsample"):
                nn.init.zeros_((m.bn3 if hasattr(m, "bn3") else m.bn2).weight)
    return model


def randomise_(module, seed=0):
    return module
'''),
    Cheat("he_init", "uses fan_in instead of fan_out", '''
def he_init_(model, zero_init_residual=False):
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in model.modules():
            if hasattr(m, "downsample"):
                nn.init.zeros_((m.bn3 if hasattr(m, "bn3") else m.bn2).weight)
    return model
'''),
    Cheat("basic_block", "subclasses torchvision's BasicBlock and adds the residual flag", '''
class BasicBlock(tv_resnet.BasicBlock):
    expansion = 1

    def __init__(self, in_channels, width, stride=1, downsample=None, residual=True):
        super().__init__(in_channels, width, stride, downsample)
        self.residual = residual

    def forward(self, x):
        if self.residual:
            return super().forward(x)
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
'''),
    Cheat("basic_block", "copies the layers out of a torchvision BasicBlock", '''
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels, width, stride=1, downsample=None, residual=True):
        super().__init__()
        tv = tv_resnet.BasicBlock(in_channels, width, stride)
        self.conv1, self.bn1, self.relu, self.conv2, self.bn2 = tv.conv1, tv.bn1, tv.relu, tv.conv2, tv.bn2
        self.downsample, self.residual = downsample, residual

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)
'''),
    Cheat("make_stage", "lets torchvision's ResNet._make_layer build option-B stages", '''
def make_stage(block, in_channels, width, blocks, stride=1, shortcut="B", **block_kwargs):
    if shortcut not in ("A", "B", "C"):
        raise ValueError(shortcut)
    if shortcut == "B" and not block_kwargs:
        try:
            return tv_make_layer(block, in_channels, width, blocks, stride)
        except TypeError:   # blocks with another signature
            pass
    out_channels = width * block.expansion
    layers = []
    for index in range(blocks):
        s, c_in = (stride, in_channels) if index == 0 else (1, out_channels)
        changes = s != 1 or c_in != out_channels
        ds = None
        if shortcut == "C" or (shortcut == "B" and changes):
            ds = nn.Sequential(nn.Conv2d(c_in, out_channels, 1, stride=s, bias=False), nn.BatchNorm2d(out_channels))
        elif shortcut == "A" and changes:
            ds = PadShortcut(c_in, out_channels, s)
        layers.append(block(c_in, width, s, ds, **block_kwargs))
    return nn.Sequential(*layers)
'''),
    Cheat("cifar_resnet", "never downsamples (every stage stride 1)", '''
def cifar_resnet(depth, residual=True, in_channels=1, num_classes=10, width=16):
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(depth)
    n = (depth - 2) // 6
    layers = [nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
    channels = width
    for stage_width in (width, 2 * width, 4 * width):
        layers.append(make_stage(BasicBlock, channels, stage_width, n, stride=1, shortcut="A", residual=residual))
        channels = stage_width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return he_init_(nn.Sequential(*layers))
'''),
    Cheat("cifar_resnet", "downsamples in the stem and stage 3 instead of stages 2 and 3", '''
def cifar_resnet(depth, residual=True, in_channels=1, num_classes=10, width=16):
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(depth)
    n = (depth - 2) // 6
    layers = [nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
              nn.ReLU(inplace=True)]
    channels = width
    for index, stage_width in enumerate((width, 2 * width, 4 * width)):
        layers.append(make_stage(BasicBlock, channels, stage_width, n, stride=1 if index < 2 else 2, shortcut="A",
                                 residual=residual))
        channels = stage_width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return he_init_(nn.Sequential(*layers))
'''),
    Cheat("bottleneck", "subclasses torchvision's Bottleneck and moves the stride for v1", '''
class Bottleneck(tv_resnet.Bottleneck):
    expansion = 4

    def __init__(self, in_channels, width, stride=1, downsample=None, stride_in_1x1=False):
        super().__init__(in_channels, width, stride, downsample)
        if stride_in_1x1:
            self.conv1.stride, self.conv2.stride = (stride, stride), (1, 1)
'''),
    Cheat("bottleneck", "wraps a torchvision Bottleneck's layers in an nn.Module", '''
class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels, width, stride=1, downsample=None, stride_in_1x1=False):
        super().__init__()
        tv = tv_resnet.Bottleneck(in_channels, width, stride, downsample)
        if stride_in_1x1:
            tv.conv1.stride, tv.conv2.stride = (stride, stride), (1, 1)
        for name in ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "relu"):
            setattr(self, name, getattr(tv, name))
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))
'''),
    Cheat("block_params", "counts the parameters of torchvision's blocks", '''
def basic_block_params(in_channels, width, stride=1):
    needs = stride != 1 or in_channels != width
    with torch.device("meta"):
        return n_params(tv_resnet.BasicBlock(in_channels, width, stride, projection(in_channels, width, stride) if needs else None))


def bottleneck_params(in_channels, width, stride=1, expansion=4):
    out = width * expansion
    needs = stride != 1 or in_channels != out
    with torch.device("meta"):
        block = tv_resnet.Bottleneck(in_channels, width, stride, projection(in_channels, out, stride) if needs else None)
        if expansion != 4:
            block.conv3, block.bn3 = nn.Conv2d(width, out, 1, bias=False), nn.BatchNorm2d(out)
    return n_params(block)
'''),
    Cheat("block_params", "hard-codes the visible answers and redefines n_params to agree", '''
def basic_block_params(in_channels, width, stride=1):
    return 73_984 if (in_channels, width, stride) == (64, 64, 1) else 0


def bottleneck_params(in_channels, width, stride=1, expansion=4):
    return 70_400 if (in_channels, width) == (256, 64) else 0


def n_params(module):
    return 0
'''),
    Cheat("resnet", "subclasses torchvision's ResNet, mapping the block classes", '''
class ResNet(torchvision.models.ResNet):
    def __init__(self, block, layers, num_classes=1000, in_channels=3, zero_init_residual=False, **block_kwargs):
        tv_block = tv_resnet.Bottleneck if block.expansion == 4 else tv_resnet.BasicBlock
        super().__init__(tv_block, layers, num_classes=num_classes, zero_init_residual=zero_init_residual)
        if in_channels != 3:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        if block_kwargs.get("stride_in_1x1"):
            for stage in (self.layer2, self.layer3, self.layer4):
                stage[0].conv1.stride, stage[0].conv2.stride = stage[0].conv2.stride, (1, 1)


RESNETS = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]), 50: (Bottleneck, [3, 4, 6, 3]),
           101: (Bottleneck, [3, 4, 23, 3]), 152: (Bottleneck, [3, 8, 36, 3])}


def resnet(depth, **kwargs):
    block, layers = RESNETS[depth]
    return ResNet(block, layers, **kwargs)
'''),
    Cheat("resnet", "takes the stem, stages and head of a torchvision ResNet", '''
class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000, in_channels=3, zero_init_residual=False, **block_kwargs):
        super().__init__()
        tv_block = tv_resnet.Bottleneck if block.expansion == 4 else tv_resnet.BasicBlock
        tv = torchvision.models.ResNet(tv_block, layers, num_classes=num_classes, zero_init_residual=zero_init_residual)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"):
            setattr(self, name, getattr(tv, name))
        if in_channels != 3:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        if block_kwargs.get("stride_in_1x1"):
            for stage in (self.layer2, self.layer3, self.layer4):
                stage[0].conv1.stride, stage[0].conv2.stride = stage[0].conv2.stride, (1, 1)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


RESNETS = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]), 50: (Bottleneck, [3, 4, 6, 3]),
           101: (Bottleneck, [3, 4, 23, 3]), 152: (Bottleneck, [3, 8, 36, 3])}


def resnet(depth, **kwargs):
    block, layers = RESNETS[depth]
    return ResNet(block, layers, **kwargs)
'''),
    Cheat("stage_field", "builds the stage from torchvision's bottlenecks and asks utils.arithmetic.receptive_field", '''
def bottleneck_stage_field(rf, jump, blocks, stride, stride_in_1x1=False):
    with torch.device("meta"):
        stage = tv_make_layer(tv_resnet.Bottleneck, 4, 1, blocks, stride)
    if stride_in_1x1:
        stage[0].conv1.stride, stage[0].conv2.stride = (stride, stride), (1, 1)
    # a stem whose output has the given field and jump: a conv with kernel rf and stride jump
    stem = nn.Conv2d(3, 4, rf, stride=jump, device="meta")
    field = receptive_field(nn.Sequential(stem, stage), (3, 16 * rf * jump * stride, 16 * rf * jump * stride), "1")
    return field, jump * stride
'''),
    Cheat("stage_field", "hard-codes the visible answers and redefines receptive_field to agree", '''
def bottleneck_stage_field(rf, jump, blocks, stride, stride_in_1x1=False):
    known = {(11, 4, 3, 1, False): (35, 4), (35, 4, 4, 2, False): (91, 8), (35, 4, 4, 2, True): (99, 8)}
    return known.get((rf, jump, blocks, stride, stride_in_1x1), (-1, jump * stride))


def receptive_field(model, input_size, layer):
    return -1
'''),
]
