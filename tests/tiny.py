"""A tiny stand-in family for the training, study and diagnostics tests.

The loop's mechanics (strategies, precision, XLA, data, checkpoints, NaN
handling, the study's bookkeeping) do not depend on the network; tracing
MobileNetV2 does cost tens of seconds per run.  So the tests register three
small networks under their own names, ``tiny`` (BatchNorm throughout),
``tiny_xbn`` (a GroupNorm after the depthwise conv) and ``tiny_gnws``
(GroupNorm and weight-standardized convs), through xbn's public registry,
exactly as a plugin would, and train them by name: nothing of xbn is
patched.  The real models are trained end to end by the main-job test.

In-process tests use the ``tiny_zoo`` fixture (registered for the test,
removed afterwards, so ``list_models()`` elsewhere never sees them);
subprocess tests run ``tiny_train.py``, which registers them for its process.
"""

import contextlib
from pathlib import Path

import keras
import pytest

from xbn.layers import BatchNorm, Conv2D, GroupNorm, WSConv2D
from xbn.models import common
from xbn.models.registry import register_model, unregister_model

# xbn-train with the tiny family registered, for subprocess tests (see tiny_train.py).
TINY_TRAIN = str(Path(__file__).with_name("tiny_train.py"))
NAMES = ("tiny", "tiny_xbn", "tiny_gnws")


def _tiny_net(variant, facts, include_top=True, weights=None, input_tensor=None, input_shape=None,
              pooling=None, classes=10, classifier_activation="softmax", name=None, width=16, gn_groups=4):
    input_shape = common.check_common_args(
        facts.name, include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, facts.default_size,
    )
    conv = WSConv2D if variant == "gnws" else Conv2D

    def norm(norm_name, batch_free):
        if batch_free:
            return GroupNorm(groups=gn_groups, name=f"{norm_name}_gn")
        return BatchNorm(name=f"{norm_name}_bn")

    inputs = common.image_input(input_tensor, input_shape)
    x = conv(width, 3, strides=2, use_bias=False, name="stem")(inputs)
    x = keras.layers.ReLU()(norm("stem", variant == "gnws")(x))
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = keras.layers.ReLU()(norm("dw", variant != "vanilla")(x))
    x = conv(2 * width, 1, use_bias=False, name="project")(x)
    x = keras.layers.ReLU()(norm("project", variant == "gnws")(x))
    x = common.classifier_top(x, include_top, pooling, classes, classifier_activation)
    return common.finish_model(inputs, input_tensor, x, name or facts.name, facts, weights)


def tiny(width=16, **kwargs):
    return _tiny_net("vanilla", tiny.facts, width=width, **kwargs)


def tiny_xbn(width=16, gn_groups=4, **kwargs):
    return _tiny_net("xbn", tiny_xbn.facts, width=width, gn_groups=gn_groups, **kwargs)


def tiny_gnws(width=16, gn_groups=4, **kwargs):
    return _tiny_net("gnws", tiny_gnws.facts, width=width, gn_groups=gn_groups, **kwargs)


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
