"""ResNet and ResNeXt: vanilla, XBNBlock and GN+WS, from one builder.

- Vanilla ResNet-50/101/152 are layer for layer ``keras.applications``'
  ``ResNet50/101/152`` (ResNet v1 with the stride on the first 1x1 conv and
  biased convolutions; He et al., 2016, arXiv:1512.03385): same layer names,
  same weights, same parameter counts.
- XBN (Huang et al., CVPR 2022, "Delving into the Estimation Shift of Batch
  Normalization in a Network", arXiv:2203.10778; official code
  https://github.com/huangleiBuaa/XBNBlock): in every bottleneck one BatchNorm
  becomes a batch-free GroupNorm, by default the one after the 3x3 conv
  ("p2"), and the stem's BatchNorm too.  The 1x1 convs' and the shortcut's
  BatchNorms stay, under their keras.applications names.
- GN+WS (Qiao et al., 2019, arXiv:1903.10520): every conv a ``WSConv2D`` and
  every BatchNorm a 32-group GroupNorm.
- ResNeXt-50 32x4d (Xie et al., 2017, arXiv:1611.05431), which
  keras.applications lacks, and its XBN twin (GroupNorm after the grouped
  3x3 conv): stride on the 3x3 conv, convolutions without bias, as in the
  official code and torchvision.

A variant is a configuration: :class:`ResNetConfig` (depth, cardinality,
widths, where the stride goes) and :class:`ResNetNorms` (the
:class:`~xbn.layers.factory.NormSpec` at each position, and the conv kind).
"""

import dataclasses

import keras

from xbn import _checks
from xbn.layers.factory import NormSpec, make_conv, make_norm
from xbn.models import common
from xbn.models.registry import register_model

# keras.applications' epsilon for ResNet BatchNorm (>= cuDNN's minimum).
BN = NormSpec("bn", epsilon=1.001e-5)
# The XBNBlock code uses torch's nn.GroupNorm defaults: epsilon 1e-5.
XBN_GROUPS = 64
GNWS_GROUPS = 32
POSITIONS = ("p1", "p2", "p3")
STAGES = ("conv2", "conv3", "conv4", "conv5")
STAGE_FILTERS = (64, 128, 256, 512)


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
    """The shape of a bottleneck ResNet.

    Attributes:
        blocks: bottleneck blocks per stage (conv2..conv5).
        groups: cardinality of the 3x3 conv (1 for ResNet, 32 for ResNeXt).
        width_per_group: 3x3 channels per group at the first stage;
            a stage with ``filters`` output-quarter width has
            ``filters // 64 * width_per_group * groups`` bottleneck channels.
        stride_in_3x3: put a block's stride on the 3x3 conv (ResNet v1.5,
            ResNeXt) instead of the first 1x1 (keras.applications' v1).
        use_bias: biases on the convolutions (keras.applications' ResNets
            have them).
    """

    blocks: tuple
    groups: int = 1
    width_per_group: int = 64
    stride_in_3x3: bool = False
    use_bias: bool = True


@dataclasses.dataclass(frozen=True)
class ResNetNorms:
    """The norm at each position, and the kind of convolution.

    Positions: ``stem`` (after conv1), ``p1``/``p2``/``p3`` (after the first
    1x1, the 3x3 and the last 1x1 conv of a bottleneck) and ``shortcut``.
    """

    stem: NormSpec = BN
    p1: NormSpec = BN
    p2: NormSpec = BN
    p3: NormSpec = BN
    shortcut: NormSpec = BN
    conv: str = "conv"


RESNET50 = ResNetConfig(blocks=(3, 4, 6, 3))
RESNET101 = ResNetConfig(blocks=(3, 4, 23, 3))
RESNET152 = ResNetConfig(blocks=(3, 8, 36, 3))
RESNEXT50_32X4D = ResNetConfig(
    blocks=(3, 4, 6, 3), groups=32, width_per_group=4, stride_in_3x3=True, use_bias=False
)


def xbn_norms(xbn_groups=XBN_GROUPS, xbn_position="p2", stem_norm="gn", owner="resnet_xbn"):
    """The XBNBlock configuration: one GroupNorm per bottleneck (and the stem)."""
    xbn_groups = _checks.check_int(owner, "xbn_groups", xbn_groups, minimum=1)
    _checks.check_choice(owner, "xbn_position", xbn_position, POSITIONS)
    _checks.check_choice(owner, "stem_norm", stem_norm, ("gn", "bn"))
    gn = NormSpec("gn", groups=xbn_groups, epsilon=1e-5)
    return ResNetNorms(stem=gn if stem_norm == "gn" else BN, **{xbn_position: gn})


def gnws_norms(groups=GNWS_GROUPS):
    """GN+WS: every norm a GroupNorm, every conv weight-standardized."""
    gn = NormSpec("gn", groups=groups, epsilon=1e-5)
    return ResNetNorms(stem=gn, p1=gn, p2=gn, p3=gn, shortcut=gn, conv="ws")


def _bottleneck(x, filters, stride, conv_shortcut, name, config, norms):
    axis = common.channel_axis()
    width = filters // 64 * config.width_per_group * config.groups
    bias = config.use_bias

    def conv_norm(y, channels, kernel, spec, suffix, **kwargs):
        y = make_conv(norms.conv, channels, kernel, name=f"{name}_{suffix}_conv", use_bias=bias, **kwargs)(y)
        return make_norm(spec, channels, f"{name}_{suffix}_bn", axis=axis)(y)

    if conv_shortcut:
        shortcut = conv_norm(x, 4 * filters, 1, norms.shortcut, "0", strides=stride)
    else:
        shortcut = x
    x = conv_norm(x, width, 1, norms.p1, "1", strides=1 if config.stride_in_3x3 else stride)
    x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
    if config.stride_in_3x3 and stride > 1:
        # Symmetric padding, as the official code and torchvision pad.
        x = keras.layers.ZeroPadding2D(1, name=f"{name}_2_pad")(x)
        x = conv_norm(x, width, 3, norms.p2, "2", strides=stride, groups=config.groups)
    else:
        x = conv_norm(x, width, 3, norms.p2, "2", padding="same", groups=config.groups)
    x = keras.layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = conv_norm(x, 4 * filters, 1, norms.p3, "3")
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


def build_resnet(
    config,
    norms,
    facts,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
):
    """Build a bottleneck ResNet from its configuration (see module docstring)."""
    owner = facts.name
    input_shape = common.check_common_args(
        owner, include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, facts.default_size,
    )
    img_input = common.image_input(input_tensor, input_shape)
    axis = common.channel_axis()

    x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(img_input)
    x = make_conv(norms.conv, 64, 7, name="conv1_conv", strides=2, use_bias=config.use_bias)(x)
    x = make_norm(norms.stem, 64, "conv1_bn", axis=axis)(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, filters, blocks in zip(STAGES, STAGE_FILTERS, config.blocks):
        for block in range(1, blocks + 1):
            first = block == 1
            stride = 2 if first and stage != "conv2" else 1
            x = _bottleneck(
                x, filters, stride, first, f"{stage}_block{block}", config, norms
            )
    x = common.classifier_top(x, include_top, pooling, classes, classifier_activation)
    return common.finish_model(img_input, input_tensor, x, name or facts.name, facts, weights)


_DOC = """{title}

    Args:
        include_top: whether to add the global-average-pool and the
            ``classes``-way ``predictions`` Dense layer.
        weights: ``None`` (random initialization) or the path of a weights
            file on disk (``.weights.h5``, ``.keras``, or keras' own ImageNet
            ``.h5`` file); layers are matched by name and the load reports
            (warns about) layers left at their initial values.  Nothing is
            ever downloaded.
        input_tensor: optional keras tensor to use as the image input.
        input_shape: optional ``(height, width, 3)``; sides of at least 32.
            Defaults to ``(224, 224, 3)`` with a top, any size without.
        pooling: ``None``, ``"avg"`` or ``"max"`` pooling when
            ``include_top=False``.
        classes: number of classes of the top.
        classifier_activation: activation of the top (``None`` for logits).
        name: model name; defaults to the registered name.{extra}

    Returns:
        A ``keras.Model`` with ``model.xbn_facts`` attached.
"""

_XBN_ARGS = """
        xbn_groups: GroupNorm groups (capped at, and reduced to a divisor of,
            the channel count; see :mod:`xbn.layers.factory`).  Seed 004 uses
            32; the XBNBlock code 64.
        xbn_position: which bottleneck BatchNorm becomes GroupNorm: ``"p2"``
            (after the 3x3 conv, the paper's choice), ``"p1"`` (first 1x1) or
            ``"p3"`` (last 1x1), as in the paper's ablation.
        stem_norm: ``"gn"`` (the XBNBlock code) or ``"bn"`` (seed 004) for the
            norm after ``conv1``."""


_GNWS_ARGS = """
        gn_groups: groups of every GroupNorm (32 in the GN and WS papers),
            reduced to a divisor of each layer's channels."""


def _register(name, config, title, family="resnet", variants=("vanilla", "xbn")):
    def vanilla(
        include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
        classes=1000, classifier_activation="softmax", name=None,
    ):
        return build_resnet(
            config, ResNetNorms(), vanilla.facts, include_top, weights, input_tensor,
            input_shape, pooling, classes, classifier_activation, name,
        )

    def xbn(
        include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
        classes=1000, classifier_activation="softmax", name=None,
        xbn_groups=XBN_GROUPS, xbn_position="p2", stem_norm="gn",
    ):
        norms = xbn_norms(xbn_groups, xbn_position, stem_norm, owner=xbn.facts.name)
        return build_resnet(
            config, norms, xbn.facts, include_top, weights, input_tensor, input_shape,
            pooling, classes, classifier_activation, name,
        )

    def gnws(
        include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
        classes=1000, classifier_activation="softmax", name=None, gn_groups=GNWS_GROUPS,
    ):
        gn_groups = _checks.check_int(gnws.facts.name, "gn_groups", gn_groups, minimum=1)
        return build_resnet(
            config, gnws_norms(gn_groups), gnws.facts, include_top, weights, input_tensor,
            input_shape, pooling, classes, classifier_activation, name,
        )

    made = {}
    for variant, builder, suffix, what, extra in (
        ("vanilla", vanilla, "", "", ""),
        ("xbn", xbn, "_xbn", " with XBNBlocks (one GroupNorm per bottleneck)", _XBN_ARGS),
        ("gnws", gnws, "_gnws", " with GroupNorm + weight standardization", _GNWS_ARGS),
    ):
        if variant not in variants:
            continue
        builder.__name__ = builder.__qualname__ = name + suffix
        builder.__doc__ = _DOC.format(title=f"{title}{what}.", extra=extra)
        builder.__module__ = __name__
        made[variant] = register_model(
            family=family, variant=variant, default_size=224, preprocessing="caffe",
            description=f"{title}{what}",
        )(builder)
    return made


_r50 = _register("resnet50", RESNET50, "ResNet-50 (keras.applications.ResNet50)",
                 variants=("vanilla", "xbn", "gnws"))
resnet50, resnet50_xbn, resnet50_gnws = _r50["vanilla"], _r50["xbn"], _r50["gnws"]
_r101 = _register("resnet101", RESNET101, "ResNet-101 (keras.applications.ResNet101)")
resnet101, resnet101_xbn = _r101["vanilla"], _r101["xbn"]
_r152 = _register("resnet152", RESNET152, "ResNet-152 (keras.applications.ResNet152)")
resnet152, resnet152_xbn = _r152["vanilla"], _r152["xbn"]
_x50 = _register("resnext50_32x4d", RESNEXT50_32X4D, "ResNeXt-50 32x4d", family="resnext")
resnext50_32x4d, resnext50_32x4d_xbn = _x50["vanilla"], _x50["xbn"]
