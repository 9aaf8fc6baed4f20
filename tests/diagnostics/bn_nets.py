"""Small BatchNorm networks and their float64 reference statistics."""

import keras
import numpy as np

from xbn.layers import BatchNorm


def net(momentum=0.99, keras_bn=False):
    """conv -> BN -> relu -> conv -> BN -> GAP -> dense, on 8x8x3."""
    norm = keras.layers.BatchNormalization if keras_bn else BatchNorm
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", name="c1")(inputs)
    x = keras.layers.ReLU()(norm(momentum=momentum, name="bn1")(x))
    x = keras.layers.Conv2D(5, 3, strides=2, name="c2")(x)
    x = norm(momentum=momentum, name="bn2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x), name="net")


def data(rng, n=37):
    return (rng.normal(2.0, 3.0, (n, 8, 8, 3))).astype(np.float32)


def reference(model, x, training):
    """float64 mean and biased variance of each BN's input over all of ``x``."""
    capture = keras.Model(model.inputs, [model.get_layer(n).input for n in ("bn1", "bn2")])
    outs = capture(x, training=training)
    return [
        (np.asarray(o, np.float64).reshape(-1, o.shape[-1]).mean(0),
         np.asarray(o, np.float64).reshape(-1, o.shape[-1]).var(0))
        for o in outs
    ]


def randomize_moving(model, rng):
    for name in ("bn1", "bn2"):
        layer = model.get_layer(name)
        layer.moving_mean.assign(rng.normal(0, 1, layer.moving_mean.shape).astype(np.float32))
        layer.moving_variance.assign(rng.uniform(0.5, 4, layer.moving_variance.shape).astype(np.float32))
