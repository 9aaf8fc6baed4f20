"""PyTorch references of torchvision's ShuffleNetV2 and MobileNetV2, written for the tests.

These machines have no CPU build of torchvision, so the two networks are
written here from torchvision's structure (``torchvision/models/
shufflenetv2.py`` and ``mobilenetv2.py``) with its module names and tensor
layouts:

- ShuffleNetV2: ``conv1.{0,1}``, ``stage{2,3,4}.{I}.branch1.{0..3}`` (stride
  2 only) and ``.branch2.{0..6}``, ``conv5.{0,1}``, ``fc`` (with bias).  A
  stride-1 unit passes the first half of the channels and transforms the
  second; every unit ends with the channel shuffle (groups of 2).
- MobileNetV2: ``features.0.{0,1}`` (3x3/2 stem), ``features.1.conv.{0.0,
  0.1,1,2}`` (no expansion), ``features.{2..17}.conv.{0.0,0.1,1.0,1.1,2,3}``,
  ``features.18.{0,1}``, ``classifier.1``; ReLU6, padding 1 on every 3x3.

``xbn=True`` puts a GroupNorm after every depthwise conv, as xbn's XBN forms
do (the largest divisor of the channels not above ``groups``).
"""

import torch
from torch import nn
from torch_resnet import randomize_norms

SHUFFLE_WIDTHS = {0.5: (48, 96, 192, 1024), 1.0: (116, 232, 464, 1024)}
MOBILENET_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                    (6, 320, 1, 1))


def _dw_norm(channels, xbn, groups):
    if not xbn:
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0), channels)


def channel_shuffle(x, groups):
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, c, h, w)


class InvertedResidual(nn.Module):
    """torchvision's ShuffleNetV2 unit."""

    def __init__(self, inp, oup, stride, xbn, groups):
        super().__init__()
        self.stride = stride
        features = oup // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), _dw_norm(inp, xbn, groups),
                nn.Conv2d(inp, features, 1, bias=False), nn.BatchNorm2d(features), nn.ReLU(inplace=True),
            )
        first = inp if stride > 1 else features
        self.branch2 = nn.Sequential(
            nn.Conv2d(first, features, 1, bias=False), nn.BatchNorm2d(features), nn.ReLU(inplace=True),
            nn.Conv2d(features, features, 3, stride, 1, groups=features, bias=False),
            _dw_norm(features, xbn, groups),
            nn.Conv2d(features, features, 1, bias=False), nn.BatchNorm2d(features), nn.ReLU(inplace=True),
        )

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, alpha, num_classes, xbn=False, groups=29):
        super().__init__()
        widths = SHUFFLE_WIDTHS[alpha]
        self.conv1 = nn.Sequential(nn.Conv2d(3, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        channels = 24
        for stage, (repeats, width) in enumerate(zip((4, 8, 4), widths[:3]), start=2):
            units = [InvertedResidual(channels, width, 2, xbn, groups)]
            units += [InvertedResidual(width, width, 1, xbn, groups) for _ in range(repeats - 1)]
            setattr(self, f"stage{stage}", nn.Sequential(*units))
            channels = width
        self.conv5 = nn.Sequential(nn.Conv2d(channels, widths[3], 1, bias=False), nn.BatchNorm2d(widths[3]),
                                   nn.ReLU(inplace=True))
        self.fc = nn.Linear(widths[3], num_classes)

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        return self.fc(x.mean((2, 3)))


def _make_divisible(v, divisor=8):
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _conv_bn_relu6(inp, oup, kernel, stride, groups=1, norm=None):
    return nn.Sequential(nn.Conv2d(inp, oup, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         norm if norm is not None else nn.BatchNorm2d(oup), nn.ReLU6(inplace=True))


class MobileNetBlock(nn.Module):
    """torchvision's MobileNetV2 InvertedResidual."""

    def __init__(self, inp, oup, stride, expand, xbn, groups):
        super().__init__()
        hidden = inp * expand
        self.use_res_connect = stride == 1 and inp == oup
        layers = [] if expand == 1 else [_conv_bn_relu6(inp, hidden, 1, 1)]
        layers += [_conv_bn_relu6(hidden, hidden, 3, stride, hidden, _dw_norm(hidden, xbn, groups)),
                   nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, alpha, num_classes, xbn=False, groups=16):
        super().__init__()
        channels = _make_divisible(32 * alpha)
        last = _make_divisible(1280 * max(1.0, alpha))
        features = [_conv_bn_relu6(3, channels, 3, 2)]
        for expand, width, repeats, stride in MOBILENET_BLOCKS:
            out = _make_divisible(width * alpha)
            for index in range(repeats):
                features.append(MobileNetBlock(channels, out, stride if index == 0 else 1, expand, xbn, groups))
                channels = out
        features.append(_conv_bn_relu6(channels, last, 1, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


def shufflenet(alpha, num_classes, xbn=False, seed=0):
    """torchvision's ShuffleNetV2 with random weights, affine parameters and running statistics, in eval mode."""
    torch.manual_seed(seed)
    return randomize_norms(ShuffleNetV2(alpha, num_classes, xbn), seed)


def mobilenet(alpha, num_classes, xbn=False, seed=0):
    """torchvision's MobileNetV2 with random weights, affine parameters and running statistics, in eval mode."""
    torch.manual_seed(seed)
    return randomize_norms(MobileNetV2(alpha, num_classes, xbn), seed)
