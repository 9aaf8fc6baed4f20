"""Residual block types: what a ResNet stage repeats.

A :class:`BlockType` declares its *expansion* (output channels over the
stage's width), its norm *roles* (the slots a variant fills, see
:mod:`xbn.models.variants`) and the role the XBNBlock rule turns into a
GroupNorm.  A ``ResNetConfig`` holds its block type as an object
(``block=BOTTLENECK``, as timm passes ``block=Bottleneck``), so ResNet-18/34
(:data:`BASIC`), ResNet-50+ and ResNeXt (:data:`BOTTLENECK`) and the CIFAR
ResNets are configurations of one network.

Adding a block type is one function and one ``BlockType(...)`` of it.

Layer names follow keras.applications: ``{block}_{slot}_conv`` and
``{block}_{slot}_bn`` for slot 1, 2, ... and slot 0 for the projection
shortcut.
"""

import dataclasses
from typing import Callable

import keras
from keras import ops

from xbn import _checks
from xbn.errors import UsageError
from xbn.models.common import channel_axis


@dataclasses.dataclass(frozen=True)
class BlockType:
    """A residual block.

    Attributes:
        name: ``"bottleneck"`` or ``"basic"``.
        expansion: output channels over the stage width (4 and 1).
        roles: the norm roles inside the block, in order (the shortcut's
            role is ``"shortcut"``).
        xbn_role: the role the XBNBlock rule makes a GroupNorm by default.
        build: ``build(x, filters, stride, name, config, norms)``; see
            :func:`bottleneck`.
    """

    name: str
    expansion: int
    roles: tuple
    xbn_role: str
    build: Callable

    def __post_init__(self):
        if self.xbn_role not in self.roles:
            raise UsageError(f"BlockType: xbn_role {self.xbn_role!r} is not one of the roles {self.roles}.")


def _conv_norm(x, norms, role, channels, kernel, name, config, axis, stride=1, groups=1):
    """Conv, then the norm at ``role``; a strided 3x3 pads symmetrically
    (the official code and torchvision), an unstrided one keeps the size."""
    if kernel > 1 and stride > 1:
        x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same" if kernel > 1 else "valid"
    x = norms.conv_layer(
        channels, kernel, name=f"{name}_conv", strides=stride, padding=padding, groups=groups,
        use_bias=config.use_bias,
    )(x)
    return norms.norm(role, channels, f"{name}_bn", axis=axis)(x)


def shortcut(x, out_channels, stride, name, config, norms, axis):
    """The block's identity, or where the shape changes, the configured shortcut:
    ``"projection"`` (a strided 1x1 conv and its norm, He et al.'s option B)
    or ``"pad"`` (subsample and zero-pad the channels, option A, no weights)."""
    in_channels = x.shape[axis]
    if stride == 1 and in_channels == out_channels:
        return x
    if config.shortcut == "projection":
        return _conv_norm(x, norms, "shortcut", out_channels, 1, f"{name}_0", config, axis, stride)
    return PadShortcut(out_channels - in_channels, stride, name=f"{name}_0_pad")(x)


@keras.saving.register_keras_serializable(package="xbn")
class PadShortcut(keras.layers.Layer):
    """He et al.'s option-A shortcut: keep every ``stride``-th pixel and append
    ``extra`` zero channels (channels-last or channels-first)."""

    def __init__(self, extra, stride, **kwargs):
        super().__init__(**kwargs)
        self.extra = _checks.check_int("PadShortcut", "extra", extra, minimum=0)
        self.stride = _checks.check_int("PadShortcut", "stride", stride, minimum=1)

    def call(self, x):
        first = keras.config.image_data_format() == "channels_first"
        s = self.stride
        x = x[:, :, ::s, ::s] if first else x[:, ::s, ::s, :]
        pad = [[0, 0]] * 4
        pad[1 if first else 3] = [self.extra // 2, self.extra - self.extra // 2]
        return ops.pad(x, pad)

    def compute_output_shape(self, shape):
        first = keras.config.image_data_format() == "channels_first"
        shape = list(shape)
        for i in (2, 3) if first else (1, 2):
            shape[i] = None if shape[i] is None else -(-shape[i] // self.stride)
        shape[1 if first else 3] += self.extra
        return tuple(shape)

    def get_config(self):
        return {**super().get_config(), "extra": self.extra, "stride": self.stride}


def bottleneck(x, filters, stride, name, config, norms):
    """1x1 -> 3x3 (grouped for ResNeXt) -> 1x1 with 4x expansion (He et al., 2016).

    The stride sits on the first 1x1 conv (keras.applications' v1) or on the
    3x3 (``config.stride_in_3x3``: torchvision, the official code, ResNeXt).
    """
    axis = channel_axis()
    width = filters // 64 * config.width_per_group * config.groups
    short = shortcut(x, 4 * filters, stride, name, config, norms, axis)
    first_stride, middle_stride = (1, stride) if config.stride_in_3x3 else (stride, 1)
    x = _conv_norm(x, norms, "p1", width, 1, f"{name}_1", config, axis, first_stride)
    x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = _conv_norm(x, norms, "p2", width, 3, f"{name}_2", config, axis, middle_stride, config.groups)
    x = keras.layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = _conv_norm(x, norms, "p3", 4 * filters, 1, f"{name}_3", config, axis)
    x = keras.layers.Add(name=f"{name}_add")([short, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


def basic(x, filters, stride, name, config, norms):
    """3x3 -> 3x3 at the stage width, the stride on the first (He et al., 2016).

    The XBNBlock rule's GroupNorm goes after the first 3x3 conv, as the
    official ``BasicBlock_XBNBlock_P2``.
    """
    axis = channel_axis()
    short = shortcut(x, filters, stride, name, config, norms, axis)
    x = _conv_norm(x, norms, "p1", filters, 3, f"{name}_1", config, axis, stride)
    x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = _conv_norm(x, norms, "p2", filters, 3, f"{name}_2", config, axis)
    x = keras.layers.Add(name=f"{name}_add")([short, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


BOTTLENECK = BlockType("bottleneck", expansion=4, roles=("p1", "p2", "p3", "shortcut"), xbn_role="p2",
                       build=bottleneck)
BASIC = BlockType("basic", expansion=1, roles=("p1", "p2", "shortcut"), xbn_role="p1", build=basic)
