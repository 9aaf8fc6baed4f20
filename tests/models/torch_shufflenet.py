"""A PyTorch reference of the official XBNBlock ShuffleNetV2, written for the tests.

Written from the official code's structure (models/shuffleV2.py and
shuffleV2_XBNBlock.py, Megvii's layout), with the same module names:
first_conv.{0,1}, features.{I}.branch_main.{0..7} / branch_proj.{0..4},
conv_last.{0,1}, classifier.0 (no bias).  A stride-1 unit passes the even
channels and transforms the odd ones; XBN puts a GroupNorm after every
depthwise conv (the largest divisor of the channels not above the groups).
"""

import torch
from torch import nn
from torch_resnet import randomize_norms

WIDTHS = {0.5: (48, 96, 192, 1024), 1.0: (116, 232, 464, 1024), 1.5: (176, 352, 704, 1024),
          2.0: (244, 488, 976, 2048)}


def _dw_norm(channels, xbn, groups):
    if not xbn:
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0), channels)


class Unit(nn.Module):
    def __init__(self, inp, oup, stride, xbn, groups):
        super().__init__()
        self.stride = stride
        mid, outputs = oup // 2, oup - inp
        self.branch_main = nn.Sequential(
            nn.Conv2d(inp, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), _dw_norm(mid, xbn, groups),
            nn.Conv2d(mid, outputs, 1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU(),
        )
        if stride == 2:
            self.branch_proj = nn.Sequential(
                nn.Conv2d(inp, inp, 3, 2, 1, groups=inp, bias=False), _dw_norm(inp, xbn, groups),
                nn.Conv2d(inp, inp, 1, bias=False), nn.BatchNorm2d(inp), nn.ReLU(),
            )

    def forward(self, x):
        if self.stride == 1:
            return torch.cat((x[:, 0::2], self.branch_main(x[:, 1::2])), 1)
        return torch.cat((self.branch_proj(x), self.branch_main(x)), 1)


class ShuffleNetV2(nn.Module):
    def __init__(self, alpha, num_classes, xbn=False, groups=29):
        super().__init__()
        widths = WIDTHS[alpha]
        self.first_conv = nn.Sequential(nn.Conv2d(3, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU())
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        units, channels = [], 24
        for repeats, width in zip((4, 8, 4), widths[:3]):
            for index in range(repeats):
                units.append(Unit(channels if index == 0 else channels // 2, width, 2 if index == 0 else 1, xbn,
                                  groups))
                channels = width
        self.features = nn.Sequential(*units)
        self.conv_last = nn.Sequential(nn.Conv2d(channels, widths[3], 1, bias=False), nn.BatchNorm2d(widths[3]),
                                       nn.ReLU())
        self.classifier = nn.Sequential(nn.Linear(widths[3], num_classes, bias=False))

    def forward(self, x):
        x = self.conv_last(self.features(self.maxpool(self.first_conv(x))))
        return self.classifier(x.mean((2, 3)))


def reference(alpha, num_classes, xbn=False, seed=0):
    """The model with random weights, affine parameters and running statistics, in eval mode."""
    torch.manual_seed(seed)
    return randomize_norms(ShuffleNetV2(alpha, num_classes, xbn), seed)
