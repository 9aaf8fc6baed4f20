"""WSConv2D against a float64 convolution with the standardized kernel."""

import keras
import numpy as np
import pytest
import references
import tensorflow as tf
from battery import LayerBattery
from conftest import dtype_policy

from xbn.layers import WSConv2D


class TestWSConv2DBattery(LayerBattery):
    layer_cls = WSConv2D
    init_kwargs = {"filters": 6, "kernel_size": 3, "padding": "same"}


CONFIGS = [
    pytest.param({"kernel_size": 3}, id="valid"),
    pytest.param({"kernel_size": 3, "padding": "same", "strides": 2}, id="same-stride2"),
    pytest.param({"kernel_size": (3, 1), "strides": (1, 2)}, id="rect-kernel"),
    pytest.param({"kernel_size": 3, "dilation_rate": 2, "padding": "same"}, id="dilated"),
    pytest.param({"kernel_size": 3, "groups": 2, "padding": "same"}, id="grouped"),
    pytest.param({"kernel_size": 1, "use_bias": False}, id="1x1-no-bias"),
    pytest.param({"kernel_size": 3, "eps": 1e-2}, id="eps"),
]


@pytest.mark.parametrize("config", CONFIGS)
def test_matches_float64_convolution_with_standardized_kernel(rng, config):
    layer = WSConv2D(filters=8, **config)
    x = rng.normal(0, 1, (2, 9, 10, 4)).astype("float32")
    layer.build(x.shape)
    kernel = rng.normal(0.3, 0.05, layer.kernel.shape).astype("float32")
    layer.kernel.assign(kernel)
    if layer.use_bias:
        layer.bias.assign(rng.normal(0, 1, 8).astype("float32"))
    standardized = references.standardize_kernel(kernel, eps=config.get("eps", 1e-5))
    expected = references.conv2d(
        x,
        standardized,
        bias=layer.bias.numpy() if layer.use_bias else None,
        strides=layer.strides,
        padding=layer.padding,
        dilation=layer.dilation_rate,
        groups=layer.groups,
    )
    np.testing.assert_allclose(np.asarray(layer(x)), expected, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(layer.standardized_kernel()), standardized, atol=1e-5
    )


def test_standardized_filters_have_zero_mean_unit_variance(rng):
    layer = WSConv2D(5, 3)
    layer.build((None, 8, 8, 3))
    layer.kernel.assign(rng.normal(2.0, 0.1, layer.kernel.shape).astype("float32"))
    w = np.asarray(layer.standardized_kernel(), np.float64).reshape(-1, 5)
    np.testing.assert_allclose(w.mean(axis=0), 0, atol=1e-5)
    # Biased variance with eps inside the square root: var / (var + eps).
    var = 0.1**2
    np.testing.assert_allclose(w.var(axis=0), var / (var + 1e-5), rtol=0.05)


def test_gradient_flows_through_the_standardization(rng):
    """d loss / d kernel equals float64 autodiff of the explicit formula."""
    layer = WSConv2D(4, 3, use_bias=False)
    x = rng.normal(0, 1, (2, 6, 6, 3)).astype("float32")
    layer.build(x.shape)
    kernel = rng.normal(0, 1, layer.kernel.shape).astype("float32")
    layer.kernel.assign(kernel)
    upstream = rng.normal(0, 1, (2, 4, 4, 4)).astype("float32")
    with tf.GradientTape() as tape:
        y = layer(x)
    grad = tape.gradient(y, layer.kernel.value, upstream)

    k64 = tf.constant(kernel, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(k64)
        mean = tf.reduce_mean(k64, axis=(0, 1, 2), keepdims=True)
        var = tf.reduce_mean(tf.square(k64 - mean), axis=(0, 1, 2), keepdims=True)
        w = (k64 - mean) / tf.sqrt(var + 1e-5)
        y64 = tf.nn.conv2d(tf.constant(x, tf.float64), w, 1, "VALID")
    expected = tape.gradient(y64, k64, tf.constant(upstream, tf.float64))
    np.testing.assert_allclose(grad, expected, atol=1e-4, rtol=1e-4)
    # The component along the filter mean is projected out: the gradient of
    # each filter sums to zero, unlike a plain Conv2D's.
    np.testing.assert_allclose(np.asarray(grad).reshape(-1, 4).sum(0), 0, atol=1e-4)


def test_kernel_statistics_use_the_float32_master_weights(rng):
    with dtype_policy("mixed_float16"):
        layer = WSConv2D(4, 3)
        x = rng.normal(0, 1, (1, 6, 6, 3)).astype("float16")
        y = layer(x)
    assert layer.kernel.dtype == "float32"
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    # A kernel whose float16 rounding would change its statistics.
    kernel = (1.0 + rng.normal(0, 1e-3, layer.kernel.shape)).astype("float32")
    layer.kernel.assign(kernel)
    np.testing.assert_allclose(
        np.asarray(layer.standardized_kernel()),
        references.standardize_kernel(kernel),
        atol=2e-3,
    )


def test_config_keeps_every_conv2d_argument():
    layer = WSConv2D(
        16, (3, 5), strides=2, padding="same", dilation_rate=1, groups=2,
        use_bias=False, eps=1e-4, kernel_initializer="he_normal", name="ws",
    )
    config = layer.get_config()
    assert config["eps"] == 1e-4
    assert config["kernel_size"] == (3, 5)
    assert config["groups"] == 2
    assert WSConv2D.from_config(config).get_config() == config


@pytest.mark.parametrize("eps", [0.0, -1.0, float("nan")])
def test_bad_eps_is_named(eps):
    with pytest.raises(ValueError, match="WSConv2D: argument `eps` must be a finite number > 0.0"):
        WSConv2D(4, 3, eps=eps)
