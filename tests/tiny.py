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
from xbn.models.common import build
from xbn.models.registry import Network, register_model, unregister_model

# xbn-train with the tiny family registered, for subprocess tests (see tiny_train.py).
TINY_TRAIN = str(Path(__file__).with_name("tiny_train.py"))
NAMES = ("tiny", "tiny_xbn", "tiny_gnws")


# The tiny family's norm roles, and the one the XBN rule makes a GroupNorm:
# the family declares them, xbn.models.variants does the rest.
ROLES = ("stem", "dw", "project")
XBN_ROLES = ("dw",)
BN = NormSpec("bn")


def _tiny_trunk(inputs, config, norms, owner, width=16):
    x = norms.conv_layer(width, 3, name="stem", strides=2, use_bias=False)(inputs)
    x = keras.layers.ReLU()(norms.norm("stem", width, "stem_bn")(x))
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = keras.layers.ReLU()(norms.norm("dw", width, "dw_bn")(x))
    x = norms.conv_layer(2 * width, 1, name="project", use_bias=False)(x)
    x = keras.layers.ReLU()(norms.norm("project", 2 * width, "project_bn")(x))
    return x, {2: x}


# The family's network: its trunk, its one layout, its XBN roles.
TINY = Network(trunk=_tiny_trunk, layout=lambda config, layout, owner: (config, BN),
               xbn_roles=lambda config, args, owner: XBN_ROLES)


def tiny(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
         classes=10, classifier_activation="softmax", name=None, features_only=False, width=16, bn_kind="bn",
         bn_options=None):
    return build(tiny, locals())


def tiny_xbn(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
             classes=10, classifier_activation="softmax", name=None, features_only=False, width=16, xbn_groups=4,
             bn_kind="bn", bn_options=None):
    return build(tiny_xbn, locals())


def tiny_gnws(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
              classes=10, classifier_activation="softmax", name=None, features_only=False, width=16, gn_groups=4):
    return build(tiny_gnws, locals())


def register():
    """Register the tiny family in xbn's registry (idempotent)."""
    from xbn.models import list_models

    for builder, variant in ((tiny, "vanilla"), (tiny_xbn, "xbn"), (tiny_gnws, "gnws")):
        if builder.__name__ not in list_models():
            register_model(
                family="tiny", variant=variant, network=TINY, default_size=32, preprocessing="tf",
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
