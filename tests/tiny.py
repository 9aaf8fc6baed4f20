"""A tiny stand-in for the zoo model in the in-process training tests.

The loop's mechanics (strategies, precision, XLA, data, checkpoints, NaN
handling) do not depend on the network; tracing MobileNetV2 does cost tens
of seconds per run.  The real model is trained end to end by the main-job,
resume and multi-worker tests.
"""

from pathlib import Path

import keras
import pytest

from xbn.layers import BatchNorm, GroupNorm

# xbn-train on the tiny stand-in model, for subprocess tests (see tiny_train.py).
TINY_TRAIN = str(Path(__file__).with_name("tiny_train.py"))


def tiny_model(name="mobilenetv2_xbn", input_shape=(32, 32, 3), classes=10, classifier_activation=None, **_):
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(16, 3, strides=2, use_bias=False, name="stem")(inputs)
    x = keras.layers.ReLU()(BatchNorm(name="stem_bn")(x))
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = keras.layers.ReLU()(GroupNorm(groups=4, name="dw_gn")(x))
    x = keras.layers.Conv2D(32, 1, use_bias=False, name="project")(x)
    x = keras.layers.ReLU()(BatchNorm(name="project_bn")(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


@pytest.fixture
def tiny_zoo(monkeypatch):
    """xbn-train builds the tiny model whatever --model says."""
    import xbn.models

    monkeypatch.setattr(xbn.models, "get_model", lambda name, **kwargs: tiny_model(name, **kwargs))
