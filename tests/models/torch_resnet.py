"""A PyTorch reference of the official XBNBlock ResNets, written for the tests.

torchvision has no CPU build for these machines, so the reference is written
here from the official code (github.com/huangleiBuaa/XBNBlock,
models/resnet_XBNBlock_P2.py) and torchvision's ResNeXt: the same module
names (conv1, bn1, layer{S}.{B}.conv{K}/bn{K}, downsample.0/1, fc), the
stride on the 3x3 conv, no conv biases, ``nn.GroupNorm(64, C)`` where XBN
puts it (a basic block's bn1, a bottleneck's bn2, and the stem's bn1).
``reference(name, ..., group_norm=32)`` is timm's ``resnet50_gn`` instead:
``nn.GroupNorm(32, C)`` at every norm's place, torchvision's module names.
"""

import torch
from torch import nn

XBN_GROUPS = 64


# 0: BatchNorm outside the XBN places; N: a GroupNorm of N groups at every norm's place (timm's resnet50_gn).
_EVERY_NORM = {"groups": 0}


def _norm(channels, group_norm):
    if _EVERY_NORM["groups"]:
        return nn.GroupNorm(_EVERY_NORM["groups"], channels)
    return nn.GroupNorm(min(XBN_GROUPS, channels), channels) if group_norm else nn.BatchNorm2d(channels)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride, downsample, xbn, groups=1, base_width=64):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = _norm(planes, xbn)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = _norm(planes, False)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride, downsample, xbn, groups=1, base_width=64):
        super().__init__()
        width = int(planes * base_width / 64) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = _norm(width, False)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = _norm(width, xbn)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = _norm(planes * 4, False)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes, xbn=False, groups=1, width_per_group=64):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = _norm(64, xbn)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if index == 0 else 2
            downsample = None
            if stride != 1 or self.inplanes != planes * block.expansion:
                downsample = nn.Sequential(
                    nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                    _norm(planes * block.expansion, False),
                )
            stage = [block(self.inplanes, planes, stride, downsample, xbn, groups, width_per_group)]
            self.inplanes = planes * block.expansion
            stage += [block(self.inplanes, planes, 1, None, xbn, groups, width_per_group) for _ in range(1, blocks)]
            setattr(self, f"layer{index + 1}", nn.Sequential(*stage))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


ARCHITECTURES = {
    "resnet18": (BasicBlock, (2, 2, 2, 2), {}),
    "resnet34": (BasicBlock, (3, 4, 6, 3), {}),
    "resnet50": (Bottleneck, (3, 4, 6, 3), {}),
    "resnet101": (Bottleneck, (3, 4, 23, 3), {}),
    "resnet152": (Bottleneck, (3, 8, 36, 3), {}),
    "resnext50_32x4d": (Bottleneck, (3, 4, 6, 3), {"groups": 32, "width_per_group": 4}),
    "resnext101_32x8d": (Bottleneck, (3, 4, 23, 3), {"groups": 32, "width_per_group": 8}),
}


def reference(name, num_classes, seed=0, group_norm=0):
    """The PyTorch model of xbn's ``name`` (``_xbn`` for the XBN form), with
    random weights, affine parameters and running statistics, in eval mode;
    ``group_norm=32``: a ``group_norm``-group GroupNorm at every norm's place."""
    base, xbn = (name[:-4], True) if name.endswith("_xbn") else (name, False)
    block, layers, options = ARCHITECTURES[base]
    torch.manual_seed(seed)
    _EVERY_NORM["groups"] = group_norm
    try:
        return randomize_norms(ResNet(block, layers, num_classes, xbn=xbn, **options), seed)
    finally:
        _EVERY_NORM["groups"] = 0


def randomize_norms(model, seed):
    """``model`` in eval mode, its norms' affine weights and BatchNorms'
    running statistics random (so that a mapping that mixes them up shows)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                c = module.weight.shape[0]
                module.weight.copy_(0.5 + 0.5 * torch.rand(c, generator=generator))
                module.bias.copy_(0.1 * torch.randn(c, generator=generator))
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(0.1 * torch.randn(c, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(c, generator=generator))
    return model.eval()


def save_as_the_official_script(model, path):
    """``{"model": DataParallel state dict, "optimizer": ..., "epoch": ...}``,
    as the official ``extension/checkpoint.py`` writes it."""
    wrapped = nn.DataParallel(model)
    optimizer = torch.optim.SGD(wrapped.parameters(), lr=0.1, momentum=0.9)
    torch.save({"model": wrapped.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 100}, path)
