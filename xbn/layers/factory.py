"""The norm factory: model builders ask it for "the norm at this position".

A model variant is a configuration, not a copy (timm's ``create_norm``): a
builder describes each position's normalization with a :class:`NormSpec`
and each convolution's kind with a string, and calls :func:`make_norm` and
:func:`make_conv`.  ``resnet50``, ``resnet50_xbn`` and ``resnet50_gnws`` differ
only in the specs they pass.

Group counts that do not divide the channels
--------------------------------------------
MobileNetV2's widths follow ``_make_divisible(v, 8)``, so a requested group
count need not divide a layer's channels (16 groups against 24 channels at
``alpha=0.75``).  :func:`resolve_groups` then uses the **largest group count
that divides the channels and is no larger than requested** (12 for 24
channels and 16 requested); the GroupNorm layer's config records the count
actually used.  Asking for more groups than channels caps the count at the
channel count (InstanceNorm), as the XBNBlock code does.
"""

import dataclasses

from xbn import _checks
from xbn.layers.batch_norm import BatchNorm
from xbn.layers.conv import Conv2D
from xbn.layers.group_norm import GroupNorm
from xbn.layers.ws_conv import WSConv2D

NORM_KINDS = ("bn", "gn")
CONV_KINDS = ("conv", "ws")


@dataclasses.dataclass(frozen=True)
class NormSpec:
    """How to normalize at one position of a network.

    Attributes:
        kind: ``"bn"`` (BatchNorm) or ``"gn"`` (GroupNorm).
        groups: requested group count for ``"gn"`` (see :func:`resolve_groups`).
        epsilon: added to the variance.
        momentum: BatchNorm's moving-average momentum (ignored by GroupNorm).
    """

    kind: str = "bn"
    groups: int = 32
    epsilon: float = 1e-3
    momentum: float = 0.99

    def __post_init__(self):
        _checks.check_choice("NormSpec", "kind", self.kind, NORM_KINDS)
        _checks.check_int("NormSpec", "groups", self.groups, minimum=1)
        _checks.check_float("NormSpec", "epsilon", self.epsilon, minimum=0.0, min_inclusive=False)
        _checks.check_float(
            "NormSpec", "momentum", self.momentum, minimum=0.0, maximum=1.0, max_inclusive=False
        )


def resolve_groups(requested, channels):
    """The largest divisor of ``channels`` that is at most ``requested``.

    >>> resolve_groups(16, 24), resolve_groups(64, 64), resolve_groups(64, 32)
    (12, 64, 32)
    """
    requested = _checks.check_int("resolve_groups", "requested", requested, minimum=1)
    channels = _checks.check_int("resolve_groups", "channels", channels, minimum=1)
    for groups in range(min(requested, channels), 0, -1):
        if channels % groups == 0:
            return groups
    raise AssertionError("unreachable: 1 divides every channel count")


def gn_name(bn_name):
    """The name of the GroupNorm that replaces the BatchNorm ``bn_name``.

    Keeps keras.applications' spelling style: ``conv2_block1_2_bn`` ->
    ``conv2_block1_2_gn``, ``block_3_depthwise_BN`` -> ``block_3_depthwise_GN``,
    ``bn_Conv1`` -> ``gn_Conv1``.
    """
    for old, new in (("_bn", "_gn"), ("_BN", "_GN")):
        if bn_name.endswith(old):
            return bn_name[: -len(old)] + new
    if bn_name.startswith("bn_"):
        return "gn_" + bn_name[3:]
    return bn_name + "_gn"


def make_norm(spec, channels, name, axis=-1):
    """A normalization layer for ``channels`` channels as ``spec`` says.

    Args:
        spec: a :class:`NormSpec`.
        channels: the channel count of the input (for GroupNorm's groups).
        name: the BatchNorm name keras.applications uses at this position;
            a GroupNorm gets :func:`gn_name` of it.
        axis: the channel axis.
    """
    if spec.kind == "bn":
        return BatchNorm(axis=axis, epsilon=spec.epsilon, momentum=spec.momentum, name=name)
    return GroupNorm(
        groups=resolve_groups(spec.groups, channels),
        axis=axis,
        epsilon=spec.epsilon,
        name=gn_name(name),
    )


def make_conv(kind, filters, kernel_size, name, **kwargs):
    """xbn's ``Conv2D`` (``kind="conv"``) or weight-standardized ``WSConv2D`` (``"ws"``)."""
    _checks.check_choice("make_conv", "kind", kind, CONV_KINDS)
    cls = Conv2D if kind == "conv" else WSConv2D
    return cls(filters, kernel_size, name=name, **kwargs)
