"""Run xbn's layers on a non-TensorFlow keras backend; used by test_backends.py.

Usage: KERAS_BACKEND=jax python tests/backend_check.py  (or torch)

Checks the layers against the float64 NumPy references, and BatchNorm's
and GroupNorm's numerical promises (tests/accuracy.py: large offsets over
10 seeds against keras' own error, ordinary inputs to float32 resolution,
gradients where they cancel) on both paths the backend has: the default
(PyTorch's native kernels on PyTorch) and the portable keras.ops maths.
Prints "ok <backend>" at the end; any mismatch raises.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

if os.environ.get("KERAS_BACKEND") == "torch":
    import torch  # noqa: F401  (before anything imports TensorFlow, as keras' tests do)

import accuracy  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import references  # noqa: E402

from xbn.layers import BatchNorm, Conv2D, GroupNorm, WSConv2D  # noqa: E402


def check_batch_norm(rng):
    for shape, axis in (((16, 7), -1), ((6, 5, 5, 8), -1), ((6, 8, 5, 5), 1)):
        layer = BatchNorm(axis=axis, momentum=0.8)
        batches = [rng.normal(1.5, 2.0, shape).astype("float32") for _ in range(3)]
        for x in batches:
            y = keras.ops.convert_to_numpy(layer(x, training=True))
            np.testing.assert_allclose(y, references.batch_norm(x, axis)[0], atol=1e-5)
        mean, var = references.moving_statistics(batches, 0.8, axis=axis)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_mean), mean, atol=1e-5)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_variance), var, atol=1e-5)
        x = batches[0]
        y = keras.ops.convert_to_numpy(layer(x, training=False))
        np.testing.assert_allclose(
            y, references.batch_norm(x, axis, mean=mean, var=var)[0], atol=1e-5
        )


def check_group_norm(rng):
    for groups, axis, shape in ((2, -1, (3, 6, 5, 8)), (8, -1, (3, 6, 5, 8)), (4, 1, (2, 8, 3, 3))):
        x = rng.normal(1.0, 3.0, shape).astype("float32")
        y = keras.ops.convert_to_numpy(GroupNorm(groups=groups, axis=axis)(x))
        np.testing.assert_allclose(y, references.group_norm(x, groups, axis=axis), atol=1e-5)


def check_ws_conv(rng):
    layer = WSConv2D(6, 3, padding="same", strides=2)
    x = rng.normal(0, 1, (2, 9, 9, 4)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    expected = references.conv2d(
        x, references.standardize_kernel(kernel), keras.ops.convert_to_numpy(layer.bias),
        strides=2, padding="same",
    )
    np.testing.assert_allclose(y, expected, atol=1e-5)


def check_conv(rng):
    layer = Conv2D(6, 1, strides=2)
    assert not layer.fast_input_gradient  # the TensorFlow-only path stays off
    x = rng.normal(0, 1, (2, 9, 9, 4)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    expected = references.conv2d(
        x, keras.ops.convert_to_numpy(layer.kernel), keras.ops.convert_to_numpy(layer.bias),
        strides=2,
    )
    np.testing.assert_allclose(y, expected, atol=1e-5)


def check_training(rng):
    inputs = keras.Input((8, 8, 3))
    x = WSConv2D(8, 3, padding="same")(inputs)
    x = Conv2D(8, 1, strides=2)(x)
    x = GroupNorm(groups=4)(x)
    x = BatchNorm()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    data = rng.normal(0, 1, (16, 8, 8, 3)).astype("float32")
    history = model.fit(data, rng.integers(0, 2, 16), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def check_accuracy(rng):
    from xbn.layers import _dispatch

    for fused in (None, False):
        def make(fused=fused, **kwargs):
            return BatchNorm(fused=fused, **kwargs)

        accuracy.check_bn_large_offsets(make)
        for name, data in accuracy.ORDINARY.items():
            accuracy.check_bn_ordinary_inputs(make, data)
        accuracy.check_bn_gradients_where_they_cancel(make)
    for portable in (False, True):
        # portable: the keras.ops maths where PyTorch has a native kernel
        _dispatch.NATIVE_GROUP_NORM = not portable
        for data in accuracy.GN_ROBUSTNESS.values():
            accuracy.check_gn_large_magnitudes(GroupNorm, data, rng)
        check_group_norm(rng)
    _dispatch.NATIVE_GROUP_NORM = True


if __name__ == "__main__":
    generator = np.random.default_rng(0)
    check_accuracy(generator)
    check_batch_norm(generator)
    check_group_norm(generator)
    check_ws_conv(generator)
    check_conv(generator)
    check_training(generator)
    print("ok", keras.backend.backend())
