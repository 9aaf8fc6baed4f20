"""GroupNorm against keras.layers.GroupNormalization and a float64 reference."""

import warnings

import accuracy
import keras
import numpy as np
import pytest
import references
import tensorflow as tf
from battery import LayerBattery
from conftest import dtype_policy

from xbn.layers import GroupNorm, _dispatch

CHANNELS = 64


@pytest.fixture(params=[True, False], ids=["tf-kernel", "portable"])
def path(request, monkeypatch):
    """Run a test on the TensorFlow kernel and on the portable keras.ops path."""
    if not request.param:
        monkeypatch.setattr(_dispatch, "NATIVE_GROUP_NORM", False)
    return request.param


def _layers(groups, rng, **kwargs):
    ours = GroupNorm(groups=groups, **kwargs)
    theirs = keras.layers.GroupNormalization(groups=groups, **kwargs)
    return ours, theirs


def _randomize(ours, theirs, shape, rng):
    ours.build(shape)
    theirs.build(shape)
    c = ours.gamma.shape[0]
    ours.set_weights(
        [rng.uniform(0.5, 1.5, c).astype("float32"), rng.normal(0, 1, c).astype("float32")]
    )
    theirs.set_weights(ours.get_weights())


class TestGroupNormBattery(LayerBattery):
    layer_cls = GroupNorm
    init_kwargs = {"groups": 4}


@pytest.mark.parametrize("groups", [1, 2, 32, CHANNELS, -1])
def test_matches_keras_and_float64_reference(rng, path, groups):
    shape = (3, 6, 5, CHANNELS)
    x = rng.normal(1.0, 3.0, shape).astype("float32")
    ours, theirs = _layers(groups, rng)
    _randomize(ours, theirs, shape, rng)
    y = np.asarray(ours(x))
    ref = references.group_norm(x, groups, gamma=ours.gamma.numpy(), beta=ours.beta.numpy())
    np.testing.assert_allclose(y, ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(y, np.asarray(theirs(x)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape, axis", [((5, 12), -1), ((2, 7, 12), -1), ((2, 12, 4, 3), 1)])
def test_other_ranks_and_channel_axes(rng, path, shape, axis):
    x = rng.normal(-2.0, 0.5, shape).astype("float32")
    ours, theirs = _layers(3, rng, axis=axis)
    _randomize(ours, theirs, shape, rng)
    y = np.asarray(ours(x))
    ref = references.group_norm(x, 3, axis=axis, gamma=ours.gamma.numpy(), beta=ours.beta.numpy())
    np.testing.assert_allclose(y, ref, atol=1e-5)
    np.testing.assert_allclose(y, np.asarray(theirs(x)), atol=1e-5)


def _reference_gradients(x, gamma, beta, groups, upstream, epsilon=1e-3):
    """Gradients of the textbook GN formula, by float64 autodiff."""
    x64, g64, b64 = (tf.constant(np.asarray(a, np.float64)) for a in (x, gamma, beta))
    with tf.GradientTape() as tape:
        tape.watch([x64, g64, b64])
        n, h, w, c = x.shape
        grouped = tf.reshape(x64, (n, h, w, groups, c // groups))
        mean = tf.reduce_mean(grouped, axis=(1, 2, 4), keepdims=True)
        var = tf.reduce_mean(tf.square(grouped - mean), axis=(1, 2, 4), keepdims=True)
        y = tf.reshape((grouped - mean) / tf.sqrt(var + epsilon), x.shape) * g64 + b64
    return tape.gradient(y, [x64, g64, b64], tf.constant(upstream, tf.float64))


@pytest.mark.parametrize("groups", [1, 8, CHANNELS])
def test_gradients_match_float64_autodiff_and_keras(rng, path, groups):
    shape = (2, 5, 4, CHANNELS)
    x = tf.constant(rng.normal(0.5, 2.0, shape).astype("float32"))
    upstream = rng.normal(0, 1, shape).astype("float32")
    ours, theirs = _layers(groups, rng)
    _randomize(ours, theirs, shape, rng)
    grads = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
        grads.append(tape.gradient(y, [x, layer.gamma.value, layer.beta.value], upstream))
    expected = _reference_gradients(x, ours.gamma.numpy(), ours.beta.numpy(), groups, upstream)
    for g_ours, g_keras, g_ref in zip(grads[0], grads[1], expected):
        np.testing.assert_allclose(g_ours, g_ref, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(g_ours, g_keras, atol=1e-4, rtol=1e-4)


def test_training_and_inference_are_the_same_and_batch_independent(rng):
    layer = GroupNorm(groups=4)
    x = rng.normal(0, 1, (4, 3, 3, 8)).astype("float32")
    np.testing.assert_array_equal(
        np.asarray(layer(x, training=True)), np.asarray(layer(x, training=False))
    )
    np.testing.assert_allclose(np.asarray(layer(x[:1])), np.asarray(layer(x))[:1], atol=1e-6)
    assert [w.name for w in layer.weights] == ["gamma", "beta"]


def test_unknown_batch_and_spatial_dims(rng):
    inputs = keras.Input((None, None, 8))
    model = keras.Model(inputs, GroupNorm(groups=2)(inputs))
    for shape in ((1, 5, 7, 8), (3, 4, 4, 8)):
        x = rng.normal(0, 1, shape).astype("float32")
        np.testing.assert_allclose(
            np.asarray(model(x)), references.group_norm(x, 2), atol=1e-5
        )


@pytest.mark.parametrize("make", list(accuracy.GN_ROBUSTNESS.values()), ids=list(accuracy.GN_ROBUSTNESS))
def test_large_magnitudes_lose_no_more_than_keras(rng, path, make):
    accuracy.check_gn_large_magnitudes(GroupNorm, make, rng)


@pytest.mark.parametrize(
    "policy, compute", [("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")]
)
def test_mixed_precision_statistics_in_float32(rng, path, policy, compute):
    x = rng.uniform(0, 6e4, (2, 4, 4, 8)).astype(compute if compute == "float16" else "float32")
    with dtype_policy(policy):
        layer = GroupNorm(groups=2)
        y = layer(x)
    assert keras.backend.standardize_dtype(y.dtype) == compute
    out = np.asarray(keras.ops.cast(y, "float32"))
    assert np.all(np.isfinite(out))
    seen = np.asarray(keras.ops.cast(keras.ops.cast(x, compute), "float32"), np.float64)
    np.testing.assert_allclose(
        out, references.group_norm(seen, 2), atol=0.05 if compute == "bfloat16" else 5e-3
    )


def test_indivisible_channels_error_names_layer_channels_and_groups():
    layer = GroupNorm(groups=16, name="block_2_depthwise_gn")
    with pytest.raises(ValueError) as info:
        layer.build((None, 8, 8, 24))
    message = str(info.value)
    assert "block_2_depthwise_gn" in message
    assert "24 channels" in message
    assert "groups=16" in message
    assert "[1, 2, 3, 4, 6, 8, 12, 24]" in message


@pytest.mark.parametrize(
    "groups, shape, values",
    [(28, (None, 1, 1, 56), 2), (-1, (None, 1, 1, 8), 1), (4, (None, 8), 2)],
    ids=["2-values", "instance-norm-1x1", "dense"],
)
def test_groups_of_two_values_or_fewer_warn_and_really_are_degenerate(groups, shape, values):
    layer = GroupNorm(groups=groups, epsilon=1e-5, name="tiny_groups")
    with pytest.warns(UserWarning, match=rf"'tiny_groups': each group normalizes only {values} value"):
        layer.build(shape)
    # What the warning says: the output no longer depends on the input's
    # values (distinct integers x 10: every pair differs by far more than
    # sqrt(epsilon), so two values normalize to +-1 within 1e-6).
    size = 4 * int(np.prod(shape[1:]))
    x = (10.0 * np.random.default_rng(0).permutation(size)).reshape(4, *shape[1:]).astype("float32")
    y = np.abs(np.asarray(layer(x)))
    expected = 0.0 if values == 1 else 1.0
    np.testing.assert_allclose(y, expected, atol=1e-3)


@pytest.mark.parametrize(
    "groups, shape",
    [(28, (None, 2, 1, 56)), (32, (None, None, None, 64)), (1, (None, 3))],
    ids=["4-values", "unknown-spatial", "dense-layer-norm"],
)
def test_ordinary_groups_do_not_warn(groups, shape):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GroupNorm(groups=groups).build(shape)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"groups": 0}, ValueError, "`groups` must be an integer >= 1 or -1"),
        ({"groups": 2.0}, ValueError, "argument `groups` must be an integer"),
        ({"groups": "32"}, ValueError, "argument `groups` must be an integer"),
        ({"epsilon": -1e-3}, ValueError, "`epsilon`"),
        ({"scale": "no"}, TypeError, "`scale` must be True or False"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match="GroupNorm") as info:
        GroupNorm(**kwargs)
    assert message in str(info.value)


def test_tensorflow_addons_argument_names_are_accepted():
    """The full keyword set of tfa.layers.GroupNormalization."""
    layer = GroupNorm(
        groups=2,
        axis=-1,
        epsilon=1e-5,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        beta_regularizer=keras.regularizers.L2(1e-4),
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=keras.constraints.NonNeg(),
    )
    layer.build((None, 4))
    assert len(layer.losses) == 1
