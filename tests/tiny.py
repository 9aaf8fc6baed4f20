"""A tiny stand-in family for the training, study and diagnostics tests.

The loop's mechanics (strategies, precision, XLA, data, checkpoints, NaN
handling, the study's bookkeeping) do not depend on the network; tracing
MobileNetV2 does cost tens of seconds per run.  So the tests register three
small networks under their own names, ``tiny`` (BatchNorm throughout),
``tiny_xbn`` (a GroupNorm after the depthwise conv) and ``tiny_gnws``
(GroupNorm and weight-standardized convs), through xbn's public registry
and variant rules, exactly as a plugin family would, and train them by name: nothing of xbn is
patched.  The real models are trained end to end by the main-job test.

In-process tests use the ``tiny_zoo`` fixture (registered for the test,
removed afterwards, so ``list_models()`` elsewhere never sees them);
subprocess tests run ``tiny_train.py``, which registers them for its process.
"""

import contextlib
from pathlib import Path

import keras
import pytest

from xbn.layers.norms import NormSpec
from xbn.models import common, variants
from xbn.models.registry import register_model, unregister_model

# xbn-train with the tiny family registered, for subprocess tests (see tiny_train.py).
TINY_TRAIN = str(Path(__file__).with_name("tiny_train.py"))
NAMES = ("tiny", "tiny_xbn", "tiny_gnws")


# The tiny family's norm roles, and the one the XBN rule makes a GroupNorm:
# the family declares them, xbn.models.variants does the rest.
ROLES = ("stem", "dw", "project")
XBN_ROLES = ("dw",)
BN = NormSpec("bn")


def _tiny_net(norms, facts, include_top=True, weights=None, input_tensor=None, input_shape=None,
              pooling=None, classes=10, classifier_activation="softmax", name=None, width=16):
    input_shape = common.check_common_args(
        facts.name, include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, facts.default_size,
    )
    inputs = common.image_input(input_tensor, input_shape)
    x = norms.conv_layer(width, 3, name="stem", strides=2, use_bias=False)(inputs)
    x = keras.layers.ReLU()(norms.norm("stem", width, "stem_bn")(x))
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = keras.layers.ReLU()(norms.norm("dw", width, "dw_bn")(x))
    x = norms.conv_layer(2 * width, 1, name="project", use_bias=False)(x)
    x = keras.layers.ReLU()(norms.norm("project", 2 * width, "project_bn")(x))
    x = common.classifier_top(x, include_top, pooling, classes, classifier_activation)
    return common.finish_model(inputs, input_tensor, x, name or facts.name, facts, weights)


def tiny(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
         classes=10, classifier_activation="softmax", name=None, width=16, bn_kind="bn",
         bn_options=None):
    norms = variants.vanilla(BN, bn_kind, bn_options, owner="tiny")
    return _tiny_net(norms, tiny.facts, include_top, weights, input_tensor, input_shape, pooling,
                     classes, classifier_activation, name, width)


def tiny_xbn(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
             classes=10, classifier_activation="softmax", name=None, width=16, gn_groups=4,
             bn_kind="bn", bn_options=None):
    norms = variants.xbn(BN, XBN_ROLES, gn_groups, bn_kind, bn_options, owner="tiny_xbn")
    return _tiny_net(norms, tiny_xbn.facts, include_top, weights, input_tensor, input_shape,
                     pooling, classes, classifier_activation, name, width)


def tiny_gnws(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
              classes=10, classifier_activation="softmax", name=None, width=16, gn_groups=4):
    norms = variants.gnws(gn_groups, owner="tiny_gnws")
    return _tiny_net(norms, tiny_gnws.facts, include_top, weights, input_tensor, input_shape,
                     pooling, classes, classifier_activation, name, width)


def register():
    """Register the tiny family in xbn's registry (idempotent)."""
    from xbn.models import list_models

    for builder, variant in ((tiny, "vanilla"), (tiny_xbn, "xbn"), (tiny_gnws, "gnws")):
        if builder.__name__ not in list_models():
            register_model(
                family="tiny", variant=variant, default_size=32, preprocessing="tf",
                description=f"a tiny test network ({variant})",
            )(builder)


def unregister():
    from xbn.models import list_models

    for name in NAMES:
        if name in list_models():
            unregister_model(name)


@contextlib.contextmanager
def registered():
    register()
    try:
        yield
    finally:
        unregister()


@pytest.fixture
def tiny_zoo():
    """The tiny family, registered for one test."""
    with registered():
        yield
