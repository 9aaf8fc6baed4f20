"""ShuffleNetV2: vanilla, XBN and GN+WS, in the official XBNBlock code's layout or torchvision's.

ShuffleNetV2 (Ma et al., ECCV 2018, arXiv:1807.11164) as the official
XBNBlock code ships it (``models/shuffleV2.py``, Megvii's layout): a
strided 3x3 stem conv and max-pool, three stages of 4, 8 and 4 units, a 1x1
last conv, global average pooling and a classifier without bias (with
dropout 0.2 at 2.0x).  A unit with stride 1 splits its channels into the
even and the odd ones (the channel shuffle of the previous unit), passes the
even half through and sends the odd half through 1x1 -> depthwise 3x3 ->
1x1; a unit with stride 2 sends the whole input through that branch and a
second one (depthwise 3x3/2 -> 1x1), and concatenates.  No ReLU follows a
depthwise conv.

``layout="torchvision"`` is torchvision's ``shufflenet_v2_x*``, whose
checkpoints :func:`xbn.models.model_from_torch` loads: a stride-1 unit
passes the first half of its channels and sends the second half through the
branch, every unit ends with the channel shuffle (groups of 2), both
branches of a stride-2 unit give half the output channels (the official
code's shortcut branch keeps its input's), and the classifier has a bias.
The two layouts have the same parameter shapes but for the first unit of
stage 2 and the bias, and route channels differently, so one's weights do
not fit the other.

Widths per ``alpha`` (stage outputs; last conv): 0.5: 48, 96, 192; 1024.
1.0: 116, 232, 464; 1024.  1.5: 176, 352, 704; 1024.  2.0: 244, 488, 976;
2048.  Trainable parameters with 1000 classes: 1,365,792 / 2,278,760 /
3,506,720 / 7,402,600, the official models'.

- XBN (``shuffleV2_XBNBlock``): the BatchNorm after every depthwise conv,
  in both branches, becomes a GroupNorm (29 groups, as the official 1.0x
  script; where 29 does not divide the channels, the largest divisor not
  above it, e.g. 24 of 48 at 0.5x, where the official code fails).
- GN+WS: every BatchNorm a GroupNorm (``gn_groups=32``, capped) and every
  regular convolution a ``WSConv2D``; depthwise convs are left as they are.

Feature maps (``features_only=True``): ``"P2"`` (after the max-pool, stride
4), ``"P3"`` and ``"P4"`` (stages 2 and 3) and ``"P5"`` (the last conv's,
stride 32).
"""

import dataclasses

import keras

from xbn import _checks
from xbn.errors import UsageError
from xbn.layers.norms import NormSpec
from xbn.models import common
from xbn.models.common import build
from xbn.models.registry import Network, register_model

BN = NormSpec("bn", epsilon=1e-5, momentum=0.9)  # torch's defaults (momentum 0.1)
XBN_GROUPS = 29
GNWS_GROUPS = 32
ALPHAS = {0.5: (48, 96, 192, 1024), 1.0: (116, 232, 464, 1024), 1.5: (176, 352, 704, 1024),
          2.0: (244, 488, 976, 2048)}
REPEATS = (4, 8, 4)
STEM = 24
# The norm roles; the XBN rule makes the depthwise ones GroupNorms.
ROLES = ("stem", "pointwise", "depthwise", "last")
XBN_ROLES = ("depthwise",)
LAYOUTS = ("official", "torchvision")


def _conv_norm_relu(x, norms, channels, role, name, relu=True):
    axis = common.channel_axis()
    x = norms.conv_layer(channels, 1, name=f"{name}_conv", use_bias=False)(x)
    x = norms.norm(role, channels, f"{name}_bn", axis=axis)(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _depthwise(x, norms, stride, name):
    axis = common.channel_axis()
    if stride == 2:
        x = keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
    x = keras.layers.DepthwiseConv2D(
        3, strides=stride, padding="same" if stride == 1 else "valid", use_bias=False, name=f"{name}_conv"
    )(x)
    return norms.norm("depthwise", x.shape[axis], f"{name}_bn", axis=axis)(x)


class _ChannelSlice(keras.layers.Layer):
    """A fixed slice of a tensor's channels (:meth:`_slice` says which)."""

    def _slice(self, channels):
        raise NotImplementedError

    def call(self, x):
        if keras.config.image_data_format() == "channels_first":
            return x[:, self._slice(x.shape[1])]
        return x[..., self._slice(x.shape[-1])]

    def compute_output_shape(self, shape):
        axis = 1 if keras.config.image_data_format() == "channels_first" else len(shape) - 1
        shape = list(shape)
        if shape[axis] is not None:
            shape[axis] = len(range(shape[axis])[self._slice(shape[axis])])
        return tuple(shape)


@keras.saving.register_keras_serializable(package="xbn")
class ChannelSplit(_ChannelSlice):
    """The even (``parity=0``) or the odd (``parity=1``) channels of a tensor:
    the official code's channel shuffle, one half at a time."""

    def __init__(self, parity, **kwargs):
        super().__init__(**kwargs)
        self.parity = _checks.check_int("ChannelSplit", "parity", parity, minimum=0, maximum=1)

    def _slice(self, channels):
        return slice(self.parity, None, 2)

    def get_config(self):
        return {**super().get_config(), "parity": self.parity}


@keras.saving.register_keras_serializable(package="xbn")
class ChannelHalf(_ChannelSlice):
    """The first (``half=0``) or the second (``half=1``) half of the
    channels of a tensor: torchvision's ``x.chunk(2, dim=1)``."""

    def __init__(self, half, **kwargs):
        super().__init__(**kwargs)
        self.half = _checks.check_int("ChannelHalf", "half", half, minimum=0, maximum=1)

    def _slice(self, channels):
        middle = channels // 2
        return slice(0, middle) if self.half == 0 else slice(middle, channels)

    def get_config(self):
        return {**super().get_config(), "half": self.half}


@keras.saving.register_keras_serializable(package="xbn")
class ChannelShuffle(keras.layers.Layer):
    """ShuffleNet's channel shuffle: the channels, seen as ``groups`` rows,
    read column by column (torchvision's ``channel_shuffle``)."""

    def __init__(self, groups=2, **kwargs):
        super().__init__(**kwargs)
        self.groups = _checks.check_int("ChannelShuffle", "groups", groups, minimum=1)

    def call(self, x):
        first = keras.config.image_data_format() == "channels_first"
        if first:
            x = keras.ops.transpose(x, (0, 2, 3, 1))
        channels = x.shape[-1]
        order = [g * (channels // self.groups) + i for i in range(channels // self.groups)
                 for g in range(self.groups)]
        x = keras.ops.take(x, order, axis=-1)
        return keras.ops.transpose(x, (0, 3, 1, 2)) if first else x

    def compute_output_shape(self, shape):
        return tuple(shape)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}


def _split(x, name):
    """The even and the odd channels (the official code's channel shuffle)."""
    return ChannelSplit(0, name=f"{name}_even")(x), ChannelSplit(1, name=f"{name}_odd")(x)


def _unit(x, out_channels, stride, name, norms, layout="official"):
    axis = common.channel_axis()
    in_channels = x.shape[axis]
    torchvision = layout == "torchvision"
    if stride == 1:
        if torchvision:
            passed, x = ChannelHalf(0, name=f"{name}_first")(x), ChannelHalf(1, name=f"{name}_second")(x)
        else:
            passed, x = _split(x, name)
        in_channels //= 2
    mid = out_channels // 2
    # The shortcut branch of a stride-2 unit keeps its input's channels in
    # the official code, half the output's in torchvision's.
    proj = mid if torchvision else in_channels
    branch = _conv_norm_relu(x, norms, mid, "pointwise", f"{name}_main_1")
    branch = _depthwise(branch, norms, stride, f"{name}_main_dw")
    main = out_channels - (in_channels if stride == 1 else proj)
    branch = _conv_norm_relu(branch, norms, main, "pointwise", f"{name}_main_2")
    if stride == 2:
        passed = _depthwise(x, norms, stride, f"{name}_proj_dw")
        passed = _conv_norm_relu(passed, norms, proj, "pointwise", f"{name}_proj_1")
    x = keras.layers.Concatenate(axis=axis, name=f"{name}_concat")([passed, branch])
    return ChannelShuffle(2, name=f"{name}_shuffle")(x) if torchvision else x


@dataclasses.dataclass(frozen=True)
class ShuffleNetV2Config:
    """The shape of a ShuffleNetV2.

    Attributes:
        repeats: units per stage.
        widths: ``{alpha: (stage widths..., last conv)}``.
        layout: ``"official"`` or ``"torchvision"`` (see the module docstring).
    """

    repeats: tuple = REPEATS
    widths: dict = dataclasses.field(default_factory=lambda: dict(ALPHAS))
    layout: str = "official"

    def __hash__(self):
        return hash((self.repeats, tuple(self.widths.items()), self.layout))


SHUFFLENETV2 = ShuffleNetV2Config()


def shufflenetv2_trunk(img_input, config, norms, owner, alpha=1.0):
    """The stem, the three stages and the last conv; returns the last feature
    map and ``{stride: the last map at that stride}``."""
    alpha = _checks.check_float(owner, "alpha", alpha, minimum=0.0, min_inclusive=False)
    if alpha not in config.widths:
        raise UsageError(
            f"{owner}: argument `alpha` must be one of {', '.join(str(a) for a in config.widths)} (the official "
            f"widths). Received: alpha={alpha!r}"
        )
    axis = common.channel_axis()
    widths = config.widths[alpha]
    x = keras.layers.ZeroPadding2D(1, name="stem_pad")(img_input)
    x = norms.conv_layer(STEM, 3, name="stem_conv", strides=2, use_bias=False)(x)
    x = norms.norm("stem", STEM, "stem_bn", axis=axis)(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.ZeroPadding2D(1, name="pool_pad")(x)  # after ReLU: zeros act as -inf
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool")(x)
    features, stride = {4: x}, 4
    for stage, (repeats, width) in enumerate(zip(config.repeats, widths[:-1])):
        stride *= 2
        for index in range(repeats):
            x = _unit(x, width, 2 if index == 0 else 1, f"stage{stage + 2}_unit{index + 1}", norms, config.layout)
        features[stride] = x
    x = _conv_norm_relu(x, norms, widths[-1], "last", "last")
    features[stride] = x
    return x, features


def _layout(config, layout, owner):
    layout = _checks.check_choice(owner, "layout", config.layout if layout is None else layout, LAYOUTS)
    return dataclasses.replace(config, layout=layout), BN


SHUFFLENETV2_NETWORK = Network(
    trunk=shufflenetv2_trunk, layout=_layout, xbn_roles=lambda config, args, owner: XBN_ROLES,
    head=lambda config, own: {"use_bias": config.layout == "torchvision",
                              "dropout": 0.2 if own.get("alpha") == 2.0 else 0.0},
)


_DOC = """ShuffleNetV2{what} (the official XBNBlock code's layout, or torchvision's).

    Args:
        include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name, features_only: as for
            :func:`xbn.models.resnet50` (``weights``: ``None``, a name such as
            ``"torchvision"``, or a path on disk; sides of at least 32;
            ``features_only`` gives ``"P2"`` to ``"P5"``).
        alpha: width, one of 0.5, 1.0, 1.5, 2.0 (after keras' arguments,
            as ``layout`` and the variant's own are in every family).
        layout: ``"official"`` (the XBNBlock code's, Megvii's) or
            ``"torchvision"`` (see :mod:`xbn.models.shufflenet_v2`).{extra}

    Returns:
        A ``keras.Model`` with ``model.xbn_facts`` attached.
"""
_BN_ARGS = """
        bn_kind, bn_options: the norm kind and options at every BatchNorm
            position, as for :func:`xbn.models.resnet50`."""


def _shufflenet(variant, what, extra):
    """:func:`register_model` with the family's facts and its docstring for ``variant``."""
    return register_model(
        family="shufflenetv2", variant=variant, network=SHUFFLENETV2_NETWORK, config=SHUFFLENETV2, default_size=224,
        preprocessing="torch",
        small_args={"alpha": 0.5}, description=f"ShuffleNetV2{what}", doc=_DOC.format(what=what, extra=extra),
    )


# One definition per public model: the keras.applications arguments, the
# width, the layout, then the variant's own.


@_shufflenet("vanilla", "", _BN_ARGS)
def shufflenetv2(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                 classes=1000, classifier_activation="softmax", name=None, features_only=False, alpha=1.0,
                 layout="official", bn_kind="bn", bn_options=None):
    return build(shufflenetv2, locals())


@_shufflenet("xbn", " with XBN: a GroupNorm after every depthwise conv", """
        xbn_groups: GroupNorm groups after each depthwise conv (29, the
            official 1.0x script's), reduced to a divisor of the channels.""" + _BN_ARGS)
def shufflenetv2_xbn(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                     classes=1000, classifier_activation="softmax", name=None, features_only=False, alpha=1.0,
                     layout="official", xbn_groups=XBN_GROUPS, bn_kind="bn", bn_options=None):
    return build(shufflenetv2_xbn, locals())


@_shufflenet("gnws", " with GroupNorm + weight standardization", """
        gn_groups: groups of every GroupNorm (32, as in the GN paper),
            reduced to a divisor of each layer's channels.""")
def shufflenetv2_gnws(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                      classes=1000, classifier_activation="softmax", name=None, features_only=False, alpha=1.0,
                      layout="official", gn_groups=GNWS_GROUPS):
    return build(shufflenetv2_gnws, locals())
