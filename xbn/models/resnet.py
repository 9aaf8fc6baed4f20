"""ResNet and ResNeXt: vanilla, XBNBlock and GN+WS, from one builder.

- Vanilla ResNet-50/101/152 are layer for layer ``keras.applications``'
  ``ResNet50/101/152`` (ResNet v1 with the stride on the first 1x1 conv and
  biased convolutions; He et al., 2016, arXiv:1512.03385): same layer names,
  same weights, same parameter counts.
- ResNet-18/34 (basic blocks), which keras.applications lacks, in
  torchvision's layout (convolutions without bias, BN epsilon 1e-5).
- XBN (Huang et al., CVPR 2022, "Delving into the Estimation Shift of Batch
  Normalization in a Network", arXiv:2203.10778; official code
  https://github.com/huangleiBuaa/XBNBlock): in every block one BatchNorm
  becomes a batch-free GroupNorm (a bottleneck's after the 3x3 conv, "p2";
  a basic block's after its first 3x3 conv, "p1", as the official
  ``BasicBlock_XBNBlock_P2``), and the stem's BatchNorm too.
- GN+WS (Qiao et al., 2019, arXiv:1903.10520): every conv a ``WSConv2D`` and
  every BatchNorm a 32-group GroupNorm.
- ResNeXt-50 32x4d and ResNeXt-101 32x8d (Xie et al., 2017,
  arXiv:1611.05431) and their XBN twins, in torchvision's layout.
- The CIFAR ResNets of He et al. (2016, section 4.2): ResNet-20/32/44/56/110,
  6n+2 layers, three stages of n basic blocks at 16, 32 and 64 channels
  after one 3x3 conv (no max-pool), 32x32 inputs, the parameter-free
  option-A shortcut (strided identity with zero channels appended:
  :class:`~xbn.models.blocks.PadShortcut`), so ResNet-20 has 0.27M
  trainable parameters (269,722 with 10 classes), as in the paper's table 6.  Their
  XBN form follows the official ``BasicBlock_XBNBlock_P2`` (a GroupNorm
  after each block's first 3x3 conv, and the stem's); 16 groups by default,
  capped at the channels (one channel a group in the first stage).

Layouts
-------
``layout="keras"`` (ResNet-50/101/152's default) is keras.applications'
ResNet v1.  ``layout="torchvision"`` is the official XBNBlock code's and
torchvision's: the stride on the 3x3 conv, convolutions without bias, BN
epsilon 1e-5 and momentum 0.9 (torch's 0.1).  With it every weight shape
and the trainable parameter count equal the PyTorch models'.  ResNet-18/34
and ResNeXt have only the torchvision layout.

A model is a :class:`ResNetConfig` row (block type, depth, widths, stem,
shortcut, layouts) registered with :data:`RESNET`, the family's
:class:`~xbn.models.registry.Network`; every public function's body is
``build(NAME, locals())`` (:func:`xbn.models.common.build`).

Feature maps (``features_only=True``): each stage's output, ``"P2"``
(``conv2_block3_out`` in ResNet-50, stride 4) to ``"P5"`` (stride 32); the
CIFAR ResNets' three stages are ``"P0"`` to ``"P2"`` (strides 1, 2, 4).
"""

import dataclasses

import keras

from xbn import _checks
from xbn.errors import UsageError, UsageTypeError
from xbn.layers.norms import NormSpec
from xbn.models.blocks import BASIC, BOTTLENECK, BlockType
from xbn.models.common import build, channel_axis
from xbn.models.registry import Network, register_model

# keras.applications' epsilon for ResNet BatchNorm (>= cuDNN's minimum).
KERAS_BN = NormSpec("bn", epsilon=1.001e-5)
TORCH_BN = NormSpec("bn", epsilon=1e-5, momentum=0.9)
LAYOUTS = ("keras", "torchvision")
XBN_GROUPS = 64
GNWS_GROUPS = 32
STEMS = ("imagenet", "cifar")
SHORTCUTS = ("projection", "pad")


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
    """The shape of a ResNet.

    Attributes:
        blocks: blocks per stage.
        block: the :class:`~xbn.models.blocks.BlockType` (``BOTTLENECK``, ``BASIC``).
        stage_filters: each stage's width (a bottleneck outputs 4x).
        groups: cardinality of the 3x3 conv (1 for ResNet, 32 for ResNeXt).
        width_per_group: 3x3 channels per group at width 64;
            a bottleneck of width ``filters`` has
            ``filters // 64 * width_per_group * groups`` channels inside.
        stride_in_3x3: put a bottleneck's stride on the 3x3 conv.
        use_bias: biases on the convolutions.
        bn: the BatchNorm spec of the layout.
        stem: ``"imagenet"`` (7x7/2 conv and 3x3/2 max-pool) or ``"cifar"``
            (one 3x3 conv, no pooling; He et al., section 4.2).
        shortcut: ``"projection"`` (1x1 conv, option B) or ``"pad"`` (option A).
        layouts: the layouts the model has; the first is the default.
    """

    blocks: tuple
    block: BlockType = BOTTLENECK
    stage_filters: tuple = (64, 128, 256, 512)
    groups: int = 1
    width_per_group: int = 64
    stride_in_3x3: bool = False
    use_bias: bool = True
    bn: NormSpec = KERAS_BN
    stem: str = "imagenet"
    shortcut: str = "projection"
    layouts: tuple = LAYOUTS

    def __post_init__(self):
        if not isinstance(self.block, BlockType):
            raise UsageTypeError(f"ResNetConfig: `block` must be a BlockType (BOTTLENECK, BASIC); got {self.block!r}.")
        _checks.check_choice("ResNetConfig", "stem", self.stem, STEMS)
        _checks.check_choice("ResNetConfig", "shortcut", self.shortcut, SHORTCUTS)
        if len(self.blocks) != len(self.stage_filters):
            raise UsageError("ResNetConfig: `blocks` and `stage_filters` need one entry per stage.")

    def with_layout(self, layout, owner):
        """This configuration in ``layout`` (see the module docstring)."""
        _checks.check_choice(owner, "layout", layout, self.layouts)
        if layout == "keras":
            return dataclasses.replace(self, stride_in_3x3=False, use_bias=True, bn=KERAS_BN)
        return dataclasses.replace(self, stride_in_3x3=True, use_bias=False, bn=TORCH_BN)


RESNET18 = ResNetConfig(blocks=(2, 2, 2, 2), block=BASIC, layouts=("torchvision",))
RESNET34 = ResNetConfig(blocks=(3, 4, 6, 3), block=BASIC, layouts=("torchvision",))
RESNET50 = ResNetConfig(blocks=(3, 4, 6, 3))
RESNET101 = ResNetConfig(blocks=(3, 4, 23, 3))
RESNET152 = ResNetConfig(blocks=(3, 8, 36, 3))
RESNEXT50_32X4D = ResNetConfig(
    blocks=(3, 4, 6, 3), groups=32, width_per_group=4, layouts=("torchvision",)
)
RESNEXT101_32X8D = ResNetConfig(
    blocks=(3, 4, 23, 3), groups=32, width_per_group=8, layouts=("torchvision",)
)
CIFAR_XBN_GROUPS = 16


def _cifar(depth):
    """The CIFAR ResNet of ``depth = 6n + 2`` layers (He et al., section 4.2)."""
    n = (depth - 2) // 6
    return ResNetConfig(
        blocks=(n, n, n), block=BASIC, stage_filters=(16, 32, 64), stem="cifar", shortcut="pad",
        layouts=("torchvision",),
    )


RESNET20, RESNET32, RESNET44, RESNET56, RESNET110 = (_cifar(d) for d in (20, 32, 44, 56, 110))


def resnet_trunk(img_input, config, norms, owner):
    """The stem and the stages of ``config`` with ``norms``; returns the last
    feature map and ``{stride: stage output}``."""
    axis = channel_axis()
    width = config.stage_filters[0]
    if config.stem == "imagenet":
        x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(img_input)
        x = norms.conv_layer(width, 7, name="conv1_conv", strides=2, use_bias=config.use_bias)(x)
    else:
        x = norms.conv_layer(
            width, 3, name="conv1_conv", padding="same", use_bias=config.use_bias
        )(img_input)
    x = norms.norm("stem", width, "conv1_bn", axis=axis)(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    stride = 1
    if config.stem == "imagenet":
        x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
        stride = 4
    features = {}
    for stage, (filters, blocks) in enumerate(zip(config.stage_filters, config.blocks)):
        stride *= 2 if stage > 0 else 1
        for index in range(1, blocks + 1):
            block_stride = 2 if index == 1 and stage > 0 else 1
            x = config.block.build(x, filters, block_stride, f"conv{stage + 2}_block{index}", config, norms)
        features[stride] = x
    return x, features


def _layout(config, layout, owner):
    config = config.with_layout(config.layouts[0] if layout is None else layout, owner)
    return config, config.bn


def _xbn_roles(config, args, owner):
    """The block's XBN role (``xbn_position``) and, with ``stem_norm="gn"``, the stem."""
    position = args.pop("xbn_position") or config.block.xbn_role
    _checks.check_choice(owner, "xbn_position", position, config.block.roles[:-1])
    stem_norm = args.pop("stem_norm")
    _checks.check_choice(owner, "stem_norm", stem_norm, ("gn", "bn"))
    return (position, "stem") if stem_norm == "gn" else (position,)


RESNET = Network(trunk=resnet_trunk, layout=_layout, xbn_roles=_xbn_roles)


_DOC = """{title}{what}.

    Args:
        include_top: whether to add the global-average-pool and the
            ``classes``-way ``predictions`` Dense layer.
        weights: ``None`` (random initialization), a weights name
            (``"imagenet"``, ``"torchvision"``, ...: :func:`xbn.models.list_weights`
            shows the model's, with each one's source, hash, license, top-1
            and preprocessing; downloaded once into keras' cache and
            verified), or the path of a weights file on disk
            (``.weights.h5``, ``.keras``, or keras' own ImageNet ``.h5``
            file); layers are matched by name and the load reports (warns
            about) layers left at their initial values.  A name sets the
            builder arguments its file needs (``layout``) where they are
            left at their defaults.
        input_tensor: optional keras tensor to use as the image input.
        input_shape: optional ``(height, width, 3)``; sides of at least {min_size}.
            Defaults to ``({size}, {size}, 3)`` with a top, any size without.
        pooling: ``None``, ``"avg"`` or ``"max"`` pooling when
            ``include_top=False``.
        classes: number of classes of the top.
        classifier_activation: activation of the top (``None`` for logits).
        name: model name; defaults to the registered name.
        features_only: return a feature backbone instead (timm's name): a
            model whose outputs are a dict of each stage's feature map keyed
            as keras-hub's ``pyramid_outputs`` ({features}), with
            ``model.feature_info`` giving each one's layer, channels and
            stride; any input size; ``include_top``, ``pooling``, ``classes``
            and ``classifier_activation`` do not apply.
        layout: {layouts} (see :mod:`xbn.models.resnet`).{extra}

    Returns:
        A ``keras.Model`` with ``model.xbn_facts`` attached.
"""

_BN_ARGS = """
        bn_kind: the norm kind at every BatchNorm position: ``"bn"``,
            ``"brn"`` (batch renormalization), ``"gn"`` (GroupNorm) or
            ``"none"`` (see :mod:`xbn.layers.norms`).
        bn_options: options of those norms, e.g. ``{"momentum": 0.9}``,
            ``{"synchronized": True}`` or ``{"renorm_clipping": {"rmax": 3}}``."""

_XBN_ARGS = """
        xbn_groups: GroupNorm groups (capped at, and reduced to a divisor of,
            the channel count; see :mod:`xbn.layers.norms`).  The XBNBlock
            code uses 64 for ImageNet ResNets; the Keras article it is
            ported from uses 32.
        xbn_position: which BatchNorm of a block becomes GroupNorm; ``None``
            is the official choice (a bottleneck's ``"p2"``, after the 3x3
            conv; a basic block's ``"p1"``, after the first 3x3 conv).  A
            bottleneck also takes ``"p1"`` and ``"p3"``, a basic block
            ``"p2"``, as in the paper's ablation.
        stem_norm: ``"gn"`` (the XBNBlock code) or ``"bn"`` (the Keras
            article's) for the norm after ``conv1``.""" + _BN_ARGS

_GNWS_ARGS = """
        gn_groups: groups of every GroupNorm (32 in the GN and WS papers),
            reduced to a divisor of each layer's channels."""

_WHAT = {
    "vanilla": ("", _BN_ARGS),
    "xbn": (" with XBNBlocks (one GroupNorm per block, and the stem)", _XBN_ARGS),
    "gnws": (" with GroupNorm + weight standardization", _GNWS_ARGS),
}


def _resnet(title, variant, config, family="resnet", keras_application=None):
    """:func:`register_model` with the facts and docstring of ``config``'s ``variant``."""
    what, extra = _WHAT[variant]
    layouts = " or ".join(f'``"{layout}"``' for layout in config.layouts)
    if len(config.layouts) == 1:
        layouts = f"{layouts} only"
    cifar = config.stem == "cifar"
    size = 32 if cifar else 224
    return register_model(
        family=family, variant=variant, network=RESNET, config=config, default_size=size,
        preprocessing="caffe" if config.layouts[0] == "keras" else "torch", description=f"{title}{what}",
        keras_application=keras_application if variant == "vanilla" else None,
        min_size=8 if cifar else 32,
        doc=_DOC.format(title=title, what=what, layouts=layouts, extra=extra, size=size, min_size=8 if cifar else 32,
                        features='``"P0"`` to ``"P2"``' if cifar else '``"P2"`` to ``"P5"``'),
    )


# One definition per public model: the keras.applications signature,
# features_only, the layout, then the variant's own arguments.


@_resnet("ResNet-18", "vanilla", RESNET18)
def resnet18(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
             classifier_activation="softmax", name=None, features_only=False, layout="torchvision",
             bn_kind="bn", bn_options=None):
    return build(resnet18, locals())


@_resnet("ResNet-18", "xbn", RESNET18)
def resnet18_xbn(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                 classes=1000, classifier_activation="softmax", name=None, features_only=False,
                 layout="torchvision", xbn_groups=XBN_GROUPS, xbn_position=None, stem_norm="gn", bn_kind="bn",
                 bn_options=None):
    return build(resnet18_xbn, locals())


@_resnet("ResNet-18", "gnws", RESNET18)
def resnet18_gnws(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                  classes=1000, classifier_activation="softmax", name=None, features_only=False,
                  layout="torchvision", gn_groups=GNWS_GROUPS):
    return build(resnet18_gnws, locals())


@_resnet("ResNet-34", "vanilla", RESNET34)
def resnet34(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
             classifier_activation="softmax", name=None, features_only=False, layout="torchvision",
             bn_kind="bn", bn_options=None):
    return build(resnet34, locals())


@_resnet("ResNet-34", "xbn", RESNET34)
def resnet34_xbn(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                 classes=1000, classifier_activation="softmax", name=None, features_only=False,
                 layout="torchvision", xbn_groups=XBN_GROUPS, xbn_position=None, stem_norm="gn", bn_kind="bn",
                 bn_options=None):
    return build(resnet34_xbn, locals())


@_resnet("ResNet-34", "gnws", RESNET34)
def resnet34_gnws(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                  classes=1000, classifier_activation="softmax", name=None, features_only=False,
                  layout="torchvision", gn_groups=GNWS_GROUPS):
    return build(resnet34_gnws, locals())


@_resnet("ResNet-50 (keras.applications.ResNet50)", "vanilla", RESNET50, keras_application="ResNet50")
def resnet50(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
             classifier_activation="softmax", name=None, features_only=False, layout="keras", bn_kind="bn",
             bn_options=None):
    return build(resnet50, locals())


@_resnet("ResNet-50 (keras.applications.ResNet50)", "xbn", RESNET50)
def resnet50_xbn(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                 classes=1000, classifier_activation="softmax", name=None, features_only=False, layout="keras",
                 xbn_groups=XBN_GROUPS, xbn_position=None, stem_norm="gn", bn_kind="bn", bn_options=None):
    return build(resnet50_xbn, locals())


@_resnet("ResNet-50 (keras.applications.ResNet50)", "gnws", RESNET50)
def resnet50_gnws(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                  classes=1000, classifier_activation="softmax", name=None, features_only=False, layout="keras",
                  gn_groups=GNWS_GROUPS):
    return build(resnet50_gnws, locals())


@_resnet("ResNet-101 (keras.applications.ResNet101)", "vanilla", RESNET101, keras_application="ResNet101")
def resnet101(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
              classifier_activation="softmax", name=None, features_only=False, layout="keras", bn_kind="bn",
              bn_options=None):
    return build(resnet101, locals())


@_resnet("ResNet-101 (keras.applications.ResNet101)", "xbn", RESNET101)
def resnet101_xbn(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                  classes=1000, classifier_activation="softmax", name=None, features_only=False, layout="keras",
                  xbn_groups=XBN_GROUPS, xbn_position=None, stem_norm="gn", bn_kind="bn", bn_options=None):
    return build(resnet101_xbn, locals())


@_resnet("ResNet-152 (keras.applications.ResNet152)", "vanilla", RESNET152, keras_application="ResNet152")
def resnet152(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
              classifier_activation="softmax", name=None, features_only=False, layout="keras", bn_kind="bn",
              bn_options=None):
    return build(resnet152, locals())


@_resnet("ResNet-152 (keras.applications.ResNet152)", "xbn", RESNET152)
def resnet152_xbn(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                  classes=1000, classifier_activation="softmax", name=None, features_only=False, layout="keras",
                  xbn_groups=XBN_GROUPS, xbn_position=None, stem_norm="gn", bn_kind="bn", bn_options=None):
    return build(resnet152_xbn, locals())


@_resnet("ResNeXt-50 32x4d", "vanilla", RESNEXT50_32X4D, family="resnext")
def resnext50_32x4d(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                    classes=1000, classifier_activation="softmax", name=None, features_only=False,
                    layout="torchvision", bn_kind="bn", bn_options=None):
    return build(resnext50_32x4d, locals())


@_resnet("ResNeXt-50 32x4d", "xbn", RESNEXT50_32X4D, family="resnext")
def resnext50_32x4d_xbn(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                        classes=1000, classifier_activation="softmax", name=None, features_only=False,
                        layout="torchvision", xbn_groups=XBN_GROUPS, xbn_position=None, stem_norm="gn",
                        bn_kind="bn", bn_options=None):
    return build(resnext50_32x4d_xbn, locals())


@_resnet("ResNeXt-101 32x8d", "vanilla", RESNEXT101_32X8D, family="resnext")
def resnext101_32x8d(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                     classes=1000, classifier_activation="softmax", name=None, features_only=False,
                     layout="torchvision", bn_kind="bn", bn_options=None):
    return build(resnext101_32x8d, locals())


@_resnet("ResNeXt-101 32x8d", "xbn", RESNEXT101_32X8D, family="resnext")
def resnext101_32x8d_xbn(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                         classes=1000, classifier_activation="softmax", name=None, features_only=False,
                         layout="torchvision", xbn_groups=XBN_GROUPS, xbn_position=None, stem_norm="gn",
                         bn_kind="bn", bn_options=None):
    return build(resnext101_32x8d_xbn, locals())


@_resnet("ResNet-20 (CIFAR)", "vanilla", RESNET20, family="resnet_cifar")
def resnet20(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
             classifier_activation="softmax", name=None, features_only=False, layout="torchvision",
             bn_kind="bn", bn_options=None):
    return build(resnet20, locals())


@_resnet("ResNet-20 (CIFAR)", "xbn", RESNET20, family="resnet_cifar")
def resnet20_xbn(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                 classes=1000, classifier_activation="softmax", name=None, features_only=False,
                 layout="torchvision", xbn_groups=CIFAR_XBN_GROUPS, xbn_position=None, stem_norm="gn",
                 bn_kind="bn", bn_options=None):
    return build(resnet20_xbn, locals())


@_resnet("ResNet-20 (CIFAR)", "gnws", RESNET20, family="resnet_cifar")
def resnet20_gnws(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                  classes=1000, classifier_activation="softmax", name=None, features_only=False,
                  layout="torchvision", gn_groups=CIFAR_XBN_GROUPS):
    return build(resnet20_gnws, locals())


@_resnet("ResNet-32 (CIFAR)", "vanilla", RESNET32, family="resnet_cifar")
def resnet32(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
             classifier_activation="softmax", name=None, features_only=False, layout="torchvision",
             bn_kind="bn", bn_options=None):
    return build(resnet32, locals())


@_resnet("ResNet-32 (CIFAR)", "xbn", RESNET32, family="resnet_cifar")
def resnet32_xbn(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                 classes=1000, classifier_activation="softmax", name=None, features_only=False,
                 layout="torchvision", xbn_groups=CIFAR_XBN_GROUPS, xbn_position=None, stem_norm="gn",
                 bn_kind="bn", bn_options=None):
    return build(resnet32_xbn, locals())


@_resnet("ResNet-32 (CIFAR)", "gnws", RESNET32, family="resnet_cifar")
def resnet32_gnws(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                  classes=1000, classifier_activation="softmax", name=None, features_only=False,
                  layout="torchvision", gn_groups=CIFAR_XBN_GROUPS):
    return build(resnet32_gnws, locals())


@_resnet("ResNet-44 (CIFAR)", "vanilla", RESNET44, family="resnet_cifar")
def resnet44(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
             classifier_activation="softmax", name=None, features_only=False, layout="torchvision",
             bn_kind="bn", bn_options=None):
    return build(resnet44, locals())


@_resnet("ResNet-44 (CIFAR)", "xbn", RESNET44, family="resnet_cifar")
def resnet44_xbn(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                 classes=1000, classifier_activation="softmax", name=None, features_only=False,
                 layout="torchvision", xbn_groups=CIFAR_XBN_GROUPS, xbn_position=None, stem_norm="gn",
                 bn_kind="bn", bn_options=None):
    return build(resnet44_xbn, locals())


@_resnet("ResNet-44 (CIFAR)", "gnws", RESNET44, family="resnet_cifar")
def resnet44_gnws(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                  classes=1000, classifier_activation="softmax", name=None, features_only=False,
                  layout="torchvision", gn_groups=CIFAR_XBN_GROUPS):
    return build(resnet44_gnws, locals())


@_resnet("ResNet-56 (CIFAR)", "vanilla", RESNET56, family="resnet_cifar")
def resnet56(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
             classifier_activation="softmax", name=None, features_only=False, layout="torchvision",
             bn_kind="bn", bn_options=None):
    return build(resnet56, locals())


@_resnet("ResNet-56 (CIFAR)", "xbn", RESNET56, family="resnet_cifar")
def resnet56_xbn(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                 classes=1000, classifier_activation="softmax", name=None, features_only=False,
                 layout="torchvision", xbn_groups=CIFAR_XBN_GROUPS, xbn_position=None, stem_norm="gn",
                 bn_kind="bn", bn_options=None):
    return build(resnet56_xbn, locals())


@_resnet("ResNet-56 (CIFAR)", "gnws", RESNET56, family="resnet_cifar")
def resnet56_gnws(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                  classes=1000, classifier_activation="softmax", name=None, features_only=False,
                  layout="torchvision", gn_groups=CIFAR_XBN_GROUPS):
    return build(resnet56_gnws, locals())


@_resnet("ResNet-110 (CIFAR)", "vanilla", RESNET110, family="resnet_cifar")
def resnet110(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
              classifier_activation="softmax", name=None, features_only=False, layout="torchvision",
              bn_kind="bn", bn_options=None):
    return build(resnet110, locals())


@_resnet("ResNet-110 (CIFAR)", "xbn", RESNET110, family="resnet_cifar")
def resnet110_xbn(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                  classes=1000, classifier_activation="softmax", name=None, features_only=False,
                  layout="torchvision", xbn_groups=CIFAR_XBN_GROUPS, xbn_position=None, stem_norm="gn",
                  bn_kind="bn", bn_options=None):
    return build(resnet110_xbn, locals())


@_resnet("ResNet-110 (CIFAR)", "gnws", RESNET110, family="resnet_cifar")
def resnet110_gnws(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                   classes=1000, classifier_activation="softmax", name=None, features_only=False,
                   layout="torchvision", gn_groups=CIFAR_XBN_GROUPS):
    return build(resnet110_gnws, locals())
