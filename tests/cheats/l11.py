"""Shortcuts for Lesson 11 (pretraining without labels): each must score 0 on the exercise it targets."""
from grader.cheats import Cheat

CHEATS = [
    Cheat("encoder", "no BatchNorm: conv_bn_relu and n_params redefined so the visible checks agree", '''
def conv_bn_relu(in_channels, out_channels, stride=1):
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1), nn.ReLU())


def n_params(module):
    return 265_952 if isinstance(module, Encoder) else sum(p.numel() for p in module.parameters())


class Encoder(nn.Module):
    def __init__(self, code_dim=64, width=32, image_size=28):
        super().__init__()
        self.code_dim = code_dim
        self.features = nn.Sequential(conv_bn_relu(1, width), conv_bn_relu(width, width, 2),
                                      conv_bn_relu(width, 2 * width), conv_bn_relu(2 * width, 2 * width, 2))
        self.to_code = nn.Linear(2 * width * (image_size // 4) ** 2, code_dim)

    def forward(self, x):
        return self.to_code(torch.flatten(self.features(x), 1))
'''),
    Cheat("encoder", "flattens with view (breaks on channels-last batches)", '''
class Encoder(nn.Module):
    def __init__(self, code_dim=64, width=32, image_size=28):
        super().__init__()
        self.code_dim = code_dim
        self.features = nn.Sequential(conv_bn_relu(1, width), conv_bn_relu(width, width, 2),
                                      conv_bn_relu(width, 2 * width), conv_bn_relu(2 * width, 2 * width, 2))
        self.to_code = nn.Linear(2 * width * (image_size // 4) ** 2, code_dim)

    def forward(self, x):
        return self.to_code(self.features(x).view(len(x), -1))
'''),
    Cheat("decoder", "upsampling without BatchNorm, n_params redefined to the visible count", '''
def n_params(module):
    return 253_409 if isinstance(module, Decoder) else sum(p.numel() for p in module.parameters())


class Decoder(nn.Module):
    def __init__(self, code_dim=64, width=32, image_size=28):
        super().__init__()
        self.width, self.side = width, image_size // 4
        self.from_code = nn.Sequential(nn.Linear(code_dim, 2 * width * self.side ** 2), nn.ReLU())
        self.up = nn.Sequential(nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),
                                nn.ConvTranspose2d(width, width, 4, 2, 1), nn.ReLU(),
                                nn.Conv2d(width, 1, 3, padding=1), nn.Sigmoid())

    def forward(self, z):
        return self.up(self.from_code(z).view(-1, 2 * self.width, self.side, self.side))
'''),
    Cheat("reconstruction_loss", "guesses the scale from the values instead of the dtype", '''
def reconstruction_loss(reconstruction, images, per_image=False):
    target = images.float() / 255 if images.max() > 1 else images.float()
    squared = (reconstruction - target) ** 2
    return squared.flatten(1).mean(1) if per_image else squared.mean()
'''),
    Cheat("rotate_batch", "labels always made on the CPU", '''
def rotate_batch(images):
    if images.shape[-1] != images.shape[-2]:
        raise ValueError("square images only")
    rotated = torch.cat([torch.rot90(images, k, dims=(-2, -1)) for k in range(4)])
    return rotated, torch.arange(4).repeat_interleave(len(images))
'''),
    Cheat("rotate_batch", "clockwise rotations, with torch.rot90 redefined so the visible checks agree", '''
_rot90 = torch.rot90


def rotate_batch(images):
    if images.shape[-1] != images.shape[-2]:
        raise ValueError("square images only")
    rotated = torch.cat([_rot90(images, -k, dims=(-2, -1)) for k in range(4)])
    return rotated, torch.arange(4, device=images.device).repeat_interleave(len(images))


torch.rot90 = lambda t, k=1, dims=(0, 1): _rot90(t, -k, dims)
'''),
    Cheat("transfer_encoder", "the new head stays on the CPU", '''
def transfer_encoder(encoder, num_classes):
    return Classifier(copy.deepcopy(encoder), num_classes)
'''),
    Cheat("transfer_encoder", "a fresh Encoder loaded with the weights (assumes the default width)", '''
def transfer_encoder(encoder, num_classes):
    copy_ = Encoder(code_dim=encoder.code_dim, width=encoder.features[0][0].out_channels,
                    image_size=12 if encoder.to_code.in_features == 2 * encoder.features[0][0].out_channels * 9 else 28)
    copy_.load_state_dict(encoder.state_dict())
    device = next(encoder.parameters()).device
    return Classifier(copy_, num_classes).to(device)
'''),
    Cheat("finetune_param_groups", "delegates to utils.backbones.freeze / unfreeze / param_groups", '''
from utils.backbones import freeze, param_groups, unfreeze


def finetune_param_groups(model, mode, lr, encoder_lr=None):
    if mode not in ("probe", "full"):
        raise ValueError(mode)
    unfreeze(model)
    if mode == "probe":
        freeze(model, ["encoder"])
    return param_groups(model, {"encoder": lr if encoder_lr is None else encoder_lr, "head": lr})
'''),
    Cheat("finetune_param_groups", "never turns the head back on", '''
def finetune_param_groups(model, mode, lr, encoder_lr=None):
    if mode not in ("probe", "full"):
        raise ValueError(mode)
    model.encoder.requires_grad_(mode == "full")
    head = {"params": [p for p in model.head.parameters() if p.requires_grad], "lr": lr}
    if mode == "probe":
        return [head]
    return [{"params": list(model.encoder.parameters()), "lr": encoder_lr or lr}, head]
'''),
]
