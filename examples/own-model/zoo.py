"""PyTorch definitions of gut's built-in ("zoo") models, for loading gut's model-final.pt.

For a built-in model gut writes each agent's final model as a state dict (parameter name -> float32
tensor). These modules have exactly gut's parameter names, shapes and order, and compute exactly
gut's function (core/models/zoo.h and zoo_forward.cc, docs/algorithms.md section 5), so

    model = zoo.build("resnet20", classes=10, norm="evonorm")
    model.load_state_dict(torch.load("model-final.pt"))  # strict

gives the agent's model. `norm` is the run's model.norm: "evonorm" (EvoNorm-S0 as gut implements
it: its own activation, no ReLU after it) or "groupnorm" (GroupNorm with 2 groups, then a ReLU where
the architecture has one). The models keep no buffers; train and eval modes compute the same.
lenet5 is models.LeNet5.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def _evonorm_s0(x, gamma, beta, groups, eps=1e-5):
    """EvoNorm-S0 as gut implements it: per-sample biased group variance, hard sigmoid, no `v`."""
    n, c = x.shape[0], x.shape[1]
    var = x.reshape(n, groups, -1).var(dim=2, unbiased=False, keepdim=True)
    num = (x * F.hardsigmoid(x)).reshape(n, groups, -1)
    y = (num / torch.sqrt(var + eps)).reshape(x.shape)
    return y * gamma.view(1, c, 1, 1) + beta.view(1, c, 1, 1)


class Norm(nn.Module):
    """gut's Norm(name, x, channels, relu): parameters `weight` (scale) and `bias` (shift)."""

    def __init__(self, channels, norm="evonorm", relu=False):
        super().__init__()
        if norm not in ("evonorm", "groupnorm"):
            raise ValueError(f"norm: unknown normalisation '{norm}'; allowed: evonorm, groupnorm")
        self.norm, self.relu = norm, relu
        self.groups = 8 if channels % 8 == 0 else 1  # EvoNorm's groups
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        if self.norm == "evonorm":  # its own activation: `relu` does not apply
            return _evonorm_s0(x, self.weight, self.bias, self.groups)
        y = F.group_norm(x, 2, self.weight, self.bias, 1e-5)
        return F.relu(y) if self.relu else y

    def extra_repr(self):
        return f"{self.weight.shape[0]}, norm={self.norm}, relu={self.relu}"


def _act(x, norm):
    """gut's Act: ReLU under GroupNorm, identity under EvoNorm."""
    return F.relu(x) if norm == "groupnorm" else x


def _conv(cin, cout, k, stride=1, groups=1, bias=False):
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=bias)


# ResNet-(6k+2) for CIFAR (section 5.3) ------------------------------------------------------------

class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride, norm):
        super().__init__()
        self.norm = norm
        self.conv1 = _conv(cin, cout, 3, stride)
        self.bn1 = Norm(cout, norm, relu=True)
        self.conv2 = _conv(cout, cout, 3)
        self.bn2 = Norm(cout, norm, relu=False)
        self.shortcut = nn.Sequential()  # identity; no parameters
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(_conv(cin, cout, 1, stride), Norm(cout, norm, relu=False))

    def forward(self, x):
        y = self.bn2(self.conv2(self.bn1(self.conv1(x))))
        return _act(y + self.shortcut(x), self.norm)


class ResNetCifar(nn.Module):
    def __init__(self, depth=20, classes=10, norm="evonorm"):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"resnet depth {depth} is not 6k + 2")
        k = (depth - 2) // 6
        self.conv1 = _conv(3, 16, 3)
        self.bn1 = Norm(16, norm, relu=True)
        cin = 16
        for s, width in enumerate((16, 32, 64)):
            blocks = []
            for i in range(k):
                blocks.append(BasicBlock(cin, width, 2 if (s > 0 and i == 0) else 1, norm))
                cin = width
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = self.bn1(self.conv1(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean((2, 3)))


# VGG-11, slim (section 5.4) -----------------------------------------------------------------------

class ConvNorm(nn.Module):
    def __init__(self, cin, cout, norm):
        super().__init__()
        self.conv = _conv(cin, cout, 3, bias=True)
        self.norm = Norm(cout, norm, relu=True)

    def forward(self, x):
        return self.norm(self.conv(x))


class Vgg11(nn.Module):
    CFG = (16, "M", 32, "M", 64, 64, "M", 128, 128, "M", 128, 128, "M")

    def __init__(self, classes=10, norm="evonorm"):
        super().__init__()
        layers, cin = [], 3
        for c in self.CFG:  # a max-pool takes an index of `features` too, as in gut's names
            if c == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(ConvNorm(cin, c, norm))
                cin = c
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(128, classes)

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


# MobileNet-V2 (section 5.5) -----------------------------------------------------------------------

class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, expansion, stride, norm):
        super().__init__()
        hidden = expansion * cin
        self.stride = stride
        self.conv1 = _conv(cin, hidden, 1)
        self.bn1 = Norm(hidden, norm, relu=True)
        self.conv2 = _conv(hidden, hidden, 3, stride, groups=hidden)
        self.bn2 = Norm(hidden, norm, relu=True)
        self.conv3 = _conv(hidden, cout, 1)
        self.bn3 = Norm(cout, norm, relu=False)
        self.shortcut = nn.Sequential()  # identity (used only when stride is 1)
        if stride == 1 and cin != cout:
            self.shortcut = nn.Sequential(_conv(cin, cout, 1), Norm(cout, norm, relu=False))

    def forward(self, x):
        y = self.bn3(self.conv3(self.bn2(self.conv2(self.bn1(self.conv1(x))))))
        return y + self.shortcut(x) if self.stride == 1 else y


class MobileNetV2(nn.Module):
    def __init__(self, classes=10, norm="evonorm", imagenet=False):
        super().__init__()
        stages = ((1, 16, 1, 1), (6, 24, 2, 2 if imagenet else 1), (6, 32, 3, 2), (6, 64, 4, 2),
                  (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
        self.conv1 = _conv(3, 32, 3, 2 if imagenet else 1)
        self.bn1 = Norm(32, norm, relu=True)
        blocks, cin = [], 32
        for t, c, n, s in stages:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, t, s if i == 0 else 1, norm))
                cin = c
        self.layers = nn.Sequential(*blocks)
        self.conv2 = _conv(320, 1280, 1)
        self.bn2 = Norm(1280, norm, relu=True)
        self.linear = nn.Linear(1280, classes)

    def forward(self, x):
        x = self.layers(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        return self.linear(x.mean((2, 3)))


# Constructors -------------------------------------------------------------------------------------

def resnet(depth=20, classes=10, norm="evonorm"):
    return ResNetCifar(depth, classes, norm)


def vgg11(classes=10, norm="evonorm"):
    return Vgg11(classes, norm)


def mobilenetv2(classes=10, norm="evonorm", imagenet=False):
    return MobileNetV2(classes, norm, imagenet)


NAMES = ("resnet20", "resnet32", "resnet44", "resnet56", "vgg11", "mobilenetv2")


def build(name, classes=10, norm="evonorm", input_size=32):
    """The zoo model gut's `model.name: <name>` builds; input_size 224 selects ImageNet MobileNet-V2."""
    if name in ("resnet20", "resnet32", "resnet44", "resnet56", "vgg11") and input_size != 32:
        raise ValueError(f"{name} takes 3x32x32 inputs, not {input_size}x{input_size}")
    if name.startswith("resnet") and name in NAMES:
        return resnet(int(name[6:]), classes, norm)
    if name == "vgg11":
        return vgg11(classes, norm)
    if name == "mobilenetv2":
        if input_size not in (32, 224):
            raise ValueError(f"mobilenetv2 takes 3x224x224 or 3x32x32 inputs, not {input_size}x{input_size}")
        return mobilenetv2(classes, norm, imagenet=input_size == 224)
    raise ValueError(f"unknown zoo model '{name}'; known: lenet5 (models.LeNet5), " + ", ".join(NAMES))
