"""xbn's Conv2D: keras' forward pass, a faster but identical input gradient."""

import keras
import numpy as np
import pytest
import references
import tensorflow as tf
from battery import LayerBattery
from conftest import dtype_policy

from xbn.layers import Conv2D, WSConv2D


class TestConv2DBattery(LayerBattery):
    layer_cls = Conv2D
    init_kwargs = {"filters": 6, "kernel_size": 1, "strides": 2}


# (config, whether the input gradient is computed as a forward convolution)
CONFIGS = [
    pytest.param({"kernel_size": 1}, True, id="1x1"),
    pytest.param({"kernel_size": 1, "strides": 2}, True, id="1x1-stride2-odd-size"),
    pytest.param({"kernel_size": 1, "strides": (2, 3), "padding": "same"}, True, id="1x1-stride2x3-same"),
    pytest.param({"kernel_size": 3, "padding": "same"}, True, id="3x3-same"),
    pytest.param({"kernel_size": 3}, True, id="3x3-valid"),
    pytest.param({"kernel_size": (3, 5), "padding": "same"}, True, id="3x5-same"),
    pytest.param({"kernel_size": (1, 4)}, True, id="1x4-valid"),
    pytest.param({"kernel_size": 3, "strides": 2, "padding": "same"}, False, id="3x3-stride2"),
    pytest.param({"kernel_size": 2, "padding": "same"}, False, id="2x2-same-asymmetric"),
    pytest.param({"kernel_size": 3, "dilation_rate": 2, "padding": "same"}, False, id="dilated"),
]


def _layer_and_data(rng, config, shape=(2, 9, 11, 4), filters=5):
    layer = Conv2D(filters, **config)
    x = rng.normal(0, 1, shape).astype("float32")
    layer.build(x.shape)
    layer.kernel.assign(rng.normal(0, 1, layer.kernel.shape).astype("float32"))
    layer.bias.assign(rng.normal(0, 1, filters).astype("float32"))
    upstream = rng.normal(0, 1, layer.compute_output_shape(x.shape)).astype("float32")
    return layer, x, upstream


def _gradients(layer, x, upstream):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    upstream = tf.cast(upstream, y.dtype)
    dx, dkernel, dbias = tape.gradient(y, [x, layer.kernel.value, layer.bias.value], upstream)
    return y, dx, dkernel, dbias


@pytest.mark.parametrize("config, fast", CONFIGS)
def test_outputs_and_gradients_match_float64_reference(rng, config, fast):
    layer, x, upstream = _layer_and_data(rng, config)
    assert layer.fast_input_gradient is fast
    y, dx, dkernel, dbias = _gradients(layer, x, upstream)
    kernel = layer.kernel.numpy()
    args = dict(strides=layer.strides, padding=layer.padding, dilation=layer.dilation_rate)
    np.testing.assert_allclose(y, references.conv2d(x, kernel, layer.bias.numpy(), **args), atol=1e-5)
    want_dx, want_dkernel = references.conv2d_gradients(x, kernel, upstream, **args)
    np.testing.assert_allclose(dx, want_dx, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(dkernel, want_dkernel, atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(dbias, upstream.sum(axis=(0, 1, 2)), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("config, fast", CONFIGS)
def test_same_outputs_and_kernel_gradient_as_keras_conv2d(rng, config, fast):
    """The forward pass is keras' own op, equal bit for bit; so is the kernel
    gradient, except where a 1x1 kernel's is one matmul (summed in another
    order; the float64 test above bounds both)."""
    ours, x, upstream = _layer_and_data(rng, config)
    theirs = keras.layers.Conv2D(5, **config)
    theirs.build(x.shape)
    theirs.set_weights(ours.get_weights())
    y_ours, dx_ours, dk_ours, _ = _gradients(ours, x, upstream)
    y_theirs, dx_theirs, dk_theirs, _ = _gradients(theirs, x, upstream)
    np.testing.assert_array_equal(y_ours, y_theirs)
    if fast and tuple(ours.kernel_size) == (1, 1):
        np.testing.assert_allclose(dk_ours, dk_theirs, atol=1e-5, rtol=1e-5)
    else:
        np.testing.assert_array_equal(dk_ours, dk_theirs)
    np.testing.assert_allclose(dx_ours, dx_theirs, atol=1e-5, rtol=1e-5)
    if not fast:
        np.testing.assert_array_equal(dx_ours, dx_theirs)


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"kernel_size": 1, "groups": 2}, "groups"),
        ({"kernel_size": 1, "data_format": "channels_first"}, "channels_first"),
    ],
    ids=["grouped", "channels-first"],
)
def test_other_configurations_keep_keras_gradient(kwargs, reason):
    assert Conv2D(4, **kwargs).fast_input_gradient is False, reason


def test_unknown_spatial_size_traced_once_serves_two_sizes(rng):
    """The strided scatter uses the input's dynamic shape, not a static one."""
    layer = Conv2D(3, 1, strides=2)
    layer.build((None, None, None, 4))
    traces = []

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 4], tf.float32)])
    def input_gradient(x):
        traces.append(1)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
        return tape.gradient(y, x, tf.ones_like(y))

    for shape in ((1, 7, 6, 4), (3, 10, 5, 4)):
        x = rng.normal(0, 1, shape).astype("float32")
        kernel = layer.kernel.numpy()
        dy = np.ones(layer.compute_output_shape(shape), "float32")
        want, _ = references.conv2d_gradients(x, kernel, dy, strides=2)
        np.testing.assert_allclose(input_gradient(x), want, atol=1e-5)
    assert len(traces) == 1


def test_xla_gradients_equal_eager(rng):
    layer, x, upstream = _layer_and_data(rng, {"kernel_size": 1, "strides": 2})
    eager = _gradients(layer, x, upstream)
    compiled = tf.function(lambda: _gradients(layer, x, upstream), jit_compile=True)()
    for a, b in zip(compiled, eager):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize(
    "config",
    [{"kernel_size": 3, "padding": "same"}, {"kernel_size": 1}, {"kernel_size": 1, "strides": 2}],
    ids=["3x3-same", "1x1", "1x1-stride2"],
)
def test_mixed_precision_gradients_are_close_to_float64(rng, policy, config):
    with dtype_policy(policy):
        layer, x, upstream = _layer_and_data(rng, config)
        y, dx, dkernel, _ = _gradients(layer, x.astype(layer.compute_dtype), upstream)
    assert keras.backend.standardize_dtype(dx.dtype) == layer.compute_dtype
    assert layer.kernel.dtype == "float32" and dkernel.dtype == tf.float32
    want_dx, want_dkernel = references.conv2d_gradients(
        x, layer.kernel.numpy(), upstream, strides=layer.strides, padding=layer.padding
    )
    tolerance = 2e-2 if policy == "mixed_float16" else 1e-1  # 10 and 7 mantissa bits
    for got, want in ((dx, want_dx), (dkernel, want_dkernel)):
        scale = np.abs(want).max()
        np.testing.assert_allclose(np.asarray(tf.cast(got, tf.float32)), want, atol=tolerance * scale)


def test_ws_conv2d_gets_the_fast_gradient_too(rng):
    layer = WSConv2D(5, 1, strides=2, use_bias=False)
    x = rng.normal(0, 1, (2, 9, 9, 4)).astype("float32")
    layer.build(x.shape)
    assert layer.fast_input_gradient
    upstream = rng.normal(0, 1, (2, 5, 5, 5)).astype("float32")
    x_t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        y = layer(x_t)
    dx = tape.gradient(y, x_t, upstream)
    kernel = np.asarray(layer.standardized_kernel())
    want, _ = references.conv2d_gradients(x, kernel, upstream, strides=2)
    np.testing.assert_allclose(dx, want, atol=1e-5, rtol=1e-5)
