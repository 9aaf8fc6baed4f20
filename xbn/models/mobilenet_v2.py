"""MobileNetV2: vanilla, XBN and GN+WS, from one builder.

- Vanilla is layer for layer ``keras.applications.MobileNetV2`` (Sandler et
  al., 2018, arXiv:1801.04381): same layer names, weights and parameter
  counts, every ``alpha``.
- XBN (Huang et al., CVPR 2022): the BatchNorm after every depthwise conv
  becomes a 16-group GroupNorm, as in the Keras article xbn started from and the XBNBlock code; the
  expand, project, stem and last-conv BatchNorms stay.
- GN+WS: every BatchNorm a GroupNorm (``gn_groups=32``, capped) and every regular
  convolution a ``WSConv2D``; the depthwise convolutions (9 weights per
  filter) are left unstandardized.

Two layouts (``layout=``): ``"keras"`` (the default) is
keras.applications'; ``"torchvision"`` is torchvision's ``mobilenet_v2``, whose
checkpoints :func:`xbn.models.model_from_torch` loads: symmetric padding of
one pixel before every stride-2 convolution (keras pads only the bottom and
right of an even input), BatchNorm epsilon 1e-5 and momentum 0.9 (torch's
0.1), and dropout 0.2 before the classifier.

Channel counts follow keras' ``_make_divisible(v, 8)``, so a requested group
count need not divide them; the largest divisor of the channels not above
the request is used (see :mod:`xbn.layers.norms`).  Every positive
``alpha`` builds.

Feature maps (``features_only=True``): the last map at each stride,
``"P1"`` (``expanded_conv_project_BN``, stride 2), ``"P2"`` (``block_2_add``),
``"P3"`` (``block_5_add``), ``"P4"`` (``block_12_add``) and ``"P5"``
(``out_relu``, the last conv's, stride 32).
"""

import dataclasses

import keras

from xbn import _checks
from xbn.layers.norms import NormSpec
from xbn.models import common
from xbn.models.common import build
from xbn.models.registry import Network, register_model

BN = NormSpec("bn", epsilon=1e-3, momentum=0.999)
# The BatchNorm of each layout (see the module docstring).
LAYOUT_BN = {"keras": BN, "torchvision": NormSpec("bn", epsilon=1e-5, momentum=0.9)}
LAYOUTS = tuple(LAYOUT_BN)
XBN_GROUPS = 16
# The width for small inputs (the digits job, the study, quick benchmarks).
SMALL_ARGS = {"alpha": 0.35}
GNWS_GROUPS = 32
# The norm roles: after the stem conv, each block's expand, depthwise and
# project convs, and the last conv.  The XBN rule makes the depthwise one a
# GroupNorm.
ROLES = ("stem", "expand", "depthwise", "project", "last")
XBN_ROLES = ("depthwise",)

# (expansion, filters, stride) of the 17 inverted residual blocks.
BLOCKS = (
    (1, 16, 1),
    (6, 24, 2), (6, 24, 1),
    (6, 32, 2), (6, 32, 1), (6, 32, 1),
    (6, 64, 2), (6, 64, 1), (6, 64, 1), (6, 64, 1),
    (6, 96, 1), (6, 96, 1), (6, 96, 1),
    (6, 160, 2), (6, 160, 1), (6, 160, 1),
    (6, 320, 1),
)


@dataclasses.dataclass(frozen=True)
class MobileNetV2Config:
    """The shape of a MobileNetV2.

    Attributes:
        blocks: ``(expansion, filters, stride)`` of each inverted residual block.
        layout: ``"keras"`` or ``"torchvision"`` (see the module docstring).
    """

    blocks: tuple = BLOCKS
    layout: str = "keras"


MOBILENETV2 = MobileNetV2Config()


def make_divisible(v, divisor=8, min_value=None):
    """keras.applications' channel rounding (never more than 10% down)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def correct_pad(inputs, kernel_size=3):
    """Padding for a stride-2 'valid' conv that matches keras.applications."""
    first = keras.config.image_data_format() == "channels_first"
    size = inputs.shape[2:4] if first else inputs.shape[1:3]
    adjust = (1, 1) if size[0] is None else (1 - size[0] % 2, 1 - size[1] % 2)
    correct = (kernel_size // 2, kernel_size // 2)
    return ((correct[0] - adjust[0], correct[0]), (correct[1] - adjust[1], correct[1]))


def _stride_2_pad(x, layout, name):
    """The padding before a stride-2 3x3 conv: keras.applications' (bottom
    and right of an even input) or torchvision's (one pixel all round)."""
    padding = 1 if layout == "torchvision" else correct_pad(x, 3)
    return keras.layers.ZeroPadding2D(padding, name=name)(x)


def _inverted_res_block(inputs, expansion, stride, alpha, filters, block_id, norms, layout="keras"):
    axis = common.channel_axis()
    in_channels = inputs.shape[axis]
    pointwise_filters = make_divisible(int(filters * alpha), 8)
    x = inputs
    prefix = f"block_{block_id}_"
    if block_id:
        channels = expansion * in_channels
        x = norms.conv_layer(channels, 1, name=f"{prefix}expand", padding="same", use_bias=False)(x)
        x = norms.norm("expand", channels, f"{prefix}expand_BN", axis=axis)(x)
        x = keras.layers.ReLU(6.0, name=f"{prefix}expand_relu")(x)
    else:
        prefix = "expanded_conv_"
        channels = in_channels
    if stride == 2:
        x = _stride_2_pad(x, layout, f"{prefix}pad")
    x = keras.layers.DepthwiseConv2D(
        3, strides=stride, use_bias=False, padding="same" if stride == 1 else "valid",
        name=f"{prefix}depthwise",
    )(x)
    x = norms.norm("depthwise", channels, f"{prefix}depthwise_BN", axis=axis)(x)
    x = keras.layers.ReLU(6.0, name=f"{prefix}depthwise_relu")(x)
    x = norms.conv_layer(
        pointwise_filters, 1, name=f"{prefix}project", padding="same", use_bias=False
    )(x)
    x = norms.norm("project", pointwise_filters, f"{prefix}project_BN", axis=axis)(x)
    if in_channels == pointwise_filters and stride == 1:
        return keras.layers.Add(name=f"{prefix}add")([inputs, x])
    return x


def mobilenetv2_trunk(img_input, config, norms, owner, alpha=1.0):
    """The stem, the inverted residual blocks and the last conv; returns the
    last feature map and ``{stride: the last map at that stride}``."""
    alpha = _checks.check_float(owner, "alpha", alpha, minimum=0.0, min_inclusive=False)
    layout = config.layout
    axis = common.channel_axis()
    first_filters = make_divisible(32 * alpha, 8)
    if layout == "torchvision":
        x = _stride_2_pad(img_input, layout, "Conv1_pad")
        x = norms.conv_layer(first_filters, 3, name="Conv1", strides=2, padding="valid", use_bias=False)(x)
    else:
        x = norms.conv_layer(first_filters, 3, name="Conv1", strides=2, padding="same", use_bias=False)(img_input)
    x = norms.norm("stem", first_filters, "bn_Conv1", axis=axis)(x)
    x = keras.layers.ReLU(6.0, name="Conv1_relu")(x)
    features, stride = {}, 2
    for block_id, (expansion, filters, block_stride) in enumerate(config.blocks):
        if block_stride == 2:
            features[stride] = x
            stride *= 2
        x = _inverted_res_block(x, expansion, block_stride, alpha, filters, block_id, norms, layout)
    # As in the paper, alpha does not shrink the last conv (it does widen it).
    last_filters = make_divisible(1280 * alpha, 8) if alpha > 1.0 else 1280
    x = norms.conv_layer(last_filters, 1, name="Conv_1", use_bias=False)(x)
    x = norms.norm("last", last_filters, "Conv_1_bn", axis=axis)(x)
    x = keras.layers.ReLU(6.0, name="out_relu")(x)
    features[stride] = x
    return x, features


def _layout(config, layout, owner):
    layout = _checks.check_choice(owner, "layout", config.layout if layout is None else layout, LAYOUTS)
    return dataclasses.replace(config, layout=layout), LAYOUT_BN[layout]


MOBILENETV2_NETWORK = Network(
    trunk=mobilenetv2_trunk, layout=_layout, xbn_roles=lambda config, args, owner: XBN_ROLES,
    head=lambda config, own: {"dropout": 0.2 if config.layout == "torchvision" else 0.0},
)


_DOC = """MobileNetV2{what}.

    Args:
        input_shape: optional ``(height, width, 3)``; sides of at least 32.
            Defaults to ``(224, 224, 3)`` with a top, any size without.
        alpha: width multiplier; any positive number (keras' ImageNet
            weights exist for 0.35, 0.5, 0.75, 1.0, 1.3 and 1.4).
        include_top, weights, input_tensor, pooling, classes,
        classifier_activation, name, features_only: as for
            :func:`xbn.models.resnet50` (``weights``: ``None``, a name such
            as ``"imagenet"`` or ``"torchvision"``, or a path on disk;
            ``features_only`` gives ``"P1"`` to ``"P5"``).
        layout: ``"keras"`` (keras.applications') or ``"torchvision"``
            (torchvision's padding, BatchNorm and dropout; see
            :mod:`xbn.models.mobilenet_v2`).{extra}

    Returns:
        A ``keras.Model`` with ``model.xbn_facts`` attached.
"""


_BN_ARGS = """
        bn_kind, bn_options: the norm kind and options at every BatchNorm
            position, as for :func:`xbn.models.resnet50`."""


def _mobilenet(variant, what, extra, description, keras_application=None):
    """:func:`register_model` with the family's facts and its docstring for ``variant``."""
    return register_model(
        family="mobilenetv2", variant=variant, network=MOBILENETV2_NETWORK, config=MOBILENETV2, default_size=224,
        preprocessing="tf", small_args=SMALL_ARGS,
        description=description, keras_application=keras_application, doc=_DOC.format(what=what, extra=extra),
    )


# One definition per public model: keras.applications.MobileNetV2's
# signature, the layout, then the variant's own arguments.


@_mobilenet("vanilla", " (keras.applications.MobileNetV2)", _BN_ARGS,
            "MobileNetV2 (keras.applications.MobileNetV2)", keras_application="MobileNetV2")
def mobilenetv2(
    input_shape=None, alpha=1.0, include_top=True, weights=None, input_tensor=None,
    pooling=None, classes=1000, classifier_activation="softmax", name=None, features_only=False,
    layout="keras", bn_kind="bn", bn_options=None,
):
    return build(mobilenetv2, locals())


@_mobilenet("xbn", " with XBN: a GroupNorm after every depthwise conv", """
        xbn_groups: GroupNorm groups after each depthwise conv (16 in the
            Keras article and the XBNBlock code), reduced to a divisor of the channels.""" + _BN_ARGS,
            "MobileNetV2 with a GroupNorm after every depthwise conv (XBN)")
def mobilenetv2_xbn(
    input_shape=None, alpha=1.0, include_top=True, weights=None, input_tensor=None,
    pooling=None, classes=1000, classifier_activation="softmax", name=None, features_only=False,
    layout="keras", xbn_groups=XBN_GROUPS, bn_kind="bn", bn_options=None,
):
    return build(mobilenetv2_xbn, locals())


@_mobilenet("gnws", " with GroupNorm + weight standardization", """
        gn_groups: groups of every GroupNorm (32, as in the GN paper),
            reduced to a divisor of each layer's channels.  MobileNetV2's
            layers are narrow (56 channels in block 13 at ``alpha=0.35``) and
            at 32x32 inputs its last stage is 1x1 pixel, where 32 groups
            leave 2 values per group; GroupNorm warns about that, and fewer
            groups (e.g. 8) avoid it.""",
            "MobileNetV2 with GroupNorm + weight-standardized convs (GN+WS)")
def mobilenetv2_gnws(
    input_shape=None, alpha=1.0, include_top=True, weights=None, input_tensor=None,
    pooling=None, classes=1000, classifier_activation="softmax", name=None, features_only=False,
    layout="keras", gn_groups=GNWS_GROUPS,
):
    return build(mobilenetv2_gnws, locals())
