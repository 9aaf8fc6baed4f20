"""BatchNorm against keras.layers.BatchNormalization and a float64 reference."""

import re

import accuracy
import keras
import numpy as np
import pytest
import references
import tensorflow as tf
from accuracy import ULP
from battery import LayerBattery
from conftest import LOGICAL_CPUS, dtype_policy

from xbn.layers import BatchNorm
from xbn.training import mirrored_strategy

# Both implementations must be exact: the fused TensorFlow kernel (default)
# and the portable keras.ops path that the JAX/PyTorch backends run.
PATHS = [pytest.param(None, id="fused"), pytest.param(False, id="portable")]

# (input shape, axis): dense, channels-last images, channels-first images.
CASES = [
    pytest.param((16, 7), -1, id="rank2"),
    pytest.param((6, 5, 5, 8), -1, id="rank4"),
    pytest.param((6, 8, 5, 5), 1, id="rank4-axis1"),
]


def _data(rng, shape, loc=0.0, scale=1.0):
    return rng.normal(loc, scale, shape).astype("float32")


def _randomize_affine(layer, rng):
    c = layer.gamma.shape[0]
    layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
    layer.beta.assign(rng.normal(0, 1, c).astype("float32"))


class TestBatchNormBattery(LayerBattery):
    layer_cls = BatchNorm
    init_kwargs = {"momentum": 0.9}


@pytest.mark.parametrize("fused", PATHS)
@pytest.mark.parametrize("shape, axis", CASES)
def test_matches_keras_and_float64_reference(rng, fused, shape, axis):
    ours = BatchNorm(axis=axis, momentum=0.8, fused=fused)
    theirs = keras.layers.BatchNormalization(axis=axis, momentum=0.8)
    batches = [_data(rng, shape, loc=1.5, scale=2.0) for _ in range(4)]
    ours.build(shape)
    theirs.build(shape)
    _randomize_affine(ours, rng)
    theirs.set_weights(ours.get_weights())
    gamma, beta = ours.gamma.numpy(), ours.beta.numpy()
    for x in batches:
        y_ours = np.asarray(ours(x, training=True))
        y_theirs = np.asarray(theirs(x, training=True))
        y_ref, _, _ = references.batch_norm(x, axis, gamma, beta, epsilon=1e-3)
        np.testing.assert_allclose(y_ours, y_theirs, atol=1e-5, rtol=0)
        np.testing.assert_allclose(y_ours, y_ref, atol=1e-5, rtol=0)
    mean_ref, var_ref = references.moving_statistics(batches, 0.8, axis=axis)
    for name, ref in (("moving_mean", mean_ref), ("moving_variance", var_ref)):
        np.testing.assert_allclose(getattr(ours, name).numpy(), ref, atol=1e-5, rtol=0)
        np.testing.assert_allclose(
            getattr(ours, name).numpy(), getattr(theirs, name).numpy(), atol=1e-5, rtol=0
        )
    x = _data(rng, shape, loc=1.5, scale=2.0)
    y_ref, _, _ = references.batch_norm(
        x, axis, gamma, beta, epsilon=1e-3, mean=mean_ref, var=var_ref
    )
    np.testing.assert_allclose(np.asarray(ours(x, training=False)), y_ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(
        np.asarray(ours(x, training=False)), np.asarray(theirs(x, training=False)), atol=1e-5
    )


@pytest.mark.parametrize("fused", PATHS)
@pytest.mark.parametrize("shape, axis", CASES)
def test_gradients_match_keras(rng, fused, shape, axis):
    ours = BatchNorm(axis=axis, fused=fused)
    theirs = keras.layers.BatchNormalization(axis=axis)
    ours.build(shape)
    theirs.build(shape)
    _randomize_affine(ours, rng)
    theirs.set_weights(ours.get_weights())
    x = tf.constant(_data(rng, shape, loc=-1.0, scale=3.0))
    upstream = tf.constant(_data(rng, shape))
    for training in (True, False):
        grads = []
        for layer in (ours, theirs):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=training)
            grads.append(
                tape.gradient(y, [x, layer.gamma.value, layer.beta.value], upstream)
            )
        for g_ours, g_theirs in zip(*grads):
            np.testing.assert_allclose(g_ours, g_theirs, atol=2e-5, rtol=1e-5)


def test_weights_transfer_both_ways_with_keras(rng):
    shape = (4, 3, 3, 6)
    theirs = keras.layers.BatchNormalization()
    theirs.build(shape)
    values = [rng.uniform(0.5, 2, 6).astype("float32") for _ in range(4)]
    theirs.set_weights(values)
    ours = BatchNorm()
    ours.build(shape)
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    assert [w.trainable for w in ours.weights] == [w.trainable for w in theirs.weights]
    ours.set_weights(theirs.get_weights())
    back = keras.layers.BatchNormalization()
    back.build(shape)
    back.set_weights(ours.get_weights())
    for a, b in zip(values, back.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = _data(rng, shape)
    np.testing.assert_allclose(
        np.asarray(ours(x, training=False)), np.asarray(theirs(x, training=False)), atol=1e-6
    )


@pytest.mark.parametrize("fused", PATHS)
def test_trainable_false_means_inference_mode(rng, fused):
    layer = BatchNorm(momentum=0.5, fused=fused)
    x = _data(rng, (8, 4), loc=3.0)
    layer.build(x.shape)
    layer.moving_mean.assign(np.full(4, 2.0, "float32"))
    layer.moving_variance.assign(np.full(4, 4.0, "float32"))
    layer.trainable = False
    y = np.asarray(layer(x, training=True))
    expected, _, _ = references.batch_norm(x, mean=np.full(4, 2.0), var=np.full(4, 4.0))
    np.testing.assert_allclose(y, expected, atol=1e-6)
    np.testing.assert_array_equal(layer.moving_mean.numpy(), np.full(4, 2.0))


def test_mask_excludes_positions_from_statistics(rng):
    """A mask always takes the portable path (the fused kernel has no mask)."""
    x = _data(rng, (3, 10, 4), loc=1.0)
    mask = np.ones((3, 10), bool)
    mask[:, 6:] = False
    x[:, 6:] = 1e3  # would dominate the statistics if counted
    layer = BatchNorm(momentum=0.0)
    layer(x, training=True, mask=mask)
    _, mean, var = references.batch_norm(x[:, :6])
    np.testing.assert_allclose(layer.moving_mean.numpy(), mean, atol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(), var, atol=1e-5)


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_keras_convention_masks_work_on_any_axis(rng, axis):
    """keras.layers.Masking masks every axis but the last, whatever BN's axis:
    the mask (N, T) of an (N, T, F) input is broadcast over F."""
    x = _data(rng, (4, 6, 5), loc=2.0, scale=3.0)
    mask = rng.uniform(size=(4, 6)) > 0.3
    ours = BatchNorm(axis=axis, momentum=0.0)
    theirs = keras.layers.BatchNormalization(axis=axis, momentum=0.0)
    y = np.asarray(ours(x, training=True, mask=mask))
    y_keras = np.asarray(theirs(x, training=True, mask=mask))
    # float64: per channel, the values at unmasked positions only.
    keep = np.broadcast_to(mask[..., None], x.shape)
    moved_x, moved_keep = np.moveaxis(x, axis, -1), np.moveaxis(keep, axis, -1)
    for c in range(moved_x.shape[-1]):
        values = moved_x[..., c][moved_keep[..., c]].astype(np.float64)
        assert ours.moving_mean.numpy()[c] == pytest.approx(values.mean(), abs=1e-5)
        assert ours.moving_variance.numpy()[c] == pytest.approx(values.var(), abs=1e-4)
    np.testing.assert_allclose(y, y_keras, atol=1e-4)


def test_nan_and_inf_at_masked_positions_stay_out_of_the_statistics(rng):
    x = _data(rng, (3, 8, 4), loc=1.0)
    mask = np.ones((3, 8), bool)
    mask[0, 5:] = False
    x[0, 5] = np.nan
    x[0, 6] = np.inf
    x[0, 7] = -np.inf
    layer = BatchNorm(momentum=0.5)
    y = np.asarray(layer(x, training=True, mask=mask))
    _, mean, var = references.batch_norm(x[mask])
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.5 * mean, atol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.5 + 0.5 * var, atol=1e-5)
    assert np.all(np.isfinite(y[mask]))


# -- numerical robustness (tests/accuracy.py; the same checks run on JAX and
# PyTorch in tests/backend_check.py) ----------------------------------------
def _maker(fused):
    return lambda **kwargs: BatchNorm(fused=fused, **kwargs)


@pytest.mark.parametrize("fused", PATHS)
def test_large_offsets_lose_no_more_than_keras_on_any_seed(fused):
    """Channels far from zero against their spread: the float32 sums of the
    statistics lose digits in proportion to |mean| / spread.  xbn centres such
    inputs before summing (the fused kernel's input too), keras does not."""
    accuracy.check_bn_large_offsets(_maker(fused))


@pytest.mark.parametrize("fused", PATHS)
@pytest.mark.parametrize("make", list(accuracy.ORDINARY.values()), ids=list(accuracy.ORDINARY))
def test_ordinary_inputs_are_exact_to_float32_resolution(fused, make):
    """A correct float32 two-pass algorithm is off by a few ulps of the output scale."""
    accuracy.check_bn_ordinary_inputs(_maker(fused), make)


@pytest.mark.parametrize("fused", PATHS)
def test_gradients_stay_accurate_where_they_cancel(fused):
    """Where the input gradient cancels a thousandfold, no worse than keras on
    any seed (TensorFlow's own fused gradient kernel, on one thread, was 3x
    less accurate and made MobileNetV2's stem gradient 2% off)."""
    accuracy.check_bn_gradients_where_they_cancel(_maker(fused))


@pytest.mark.parametrize("axis", [3, 1], ids=["channels-last", "channels-first"])
def test_centring_happens_only_where_channels_sit_far_from_zero(rng, axis):
    """A channel is centred only when its first sampled value lies more than
    PIVOT_RATIO times the range of its samples from zero: ordinary layers
    are summed as they are, and the statistics are exact either way."""
    from xbn.layers import _dispatch, _portable

    def shift(x):
        x = np.moveaxis(x, -1, axis)  # channels last -> at `axis`
        axes = [i for i in range(4) if i != axis]
        stats = _portable.batch_statistics(tf.constant(x), axes, _dispatch.portable_policy())  # eager: centred up front
        value = np.broadcast_to(np.asarray(stats.shift, np.float64), stats.mean.shape).ravel()
        x64 = np.asarray(x, np.float64)
        np.testing.assert_allclose(np.asarray(stats.mean).ravel(), x64.mean(tuple(axes)),
                                   rtol=0, atol=4 * ULP * np.abs(x64).max())
        np.testing.assert_allclose(np.asarray(stats.variance).ravel(), x64.var(tuple(axes)),
                                   rtol=4 * ULP, atol=0)
        moved = np.moveaxis(x64 - np.asarray(stats.input, np.float64), axis, -1)
        np.testing.assert_allclose(moved, np.broadcast_to(value, moved.shape), rtol=0,
                                   atol=4 * ULP * np.abs(x64).max())
        return value

    assert not np.any(shift(_data(rng, (8, 5, 5, 4), loc=2.0)))
    assert np.all(np.abs(shift(_data(rng, (8, 5, 5, 4), loc=30.0)) - 30) < 3)
    offset = _data(rng, (8, 5, 5, 4))
    offset[..., 2] += 1e4  # one channel is enough, and only it moves
    assert np.all(np.abs(shift(offset) - np.array([0, 0, 1e4, 0])) < 5)


@pytest.mark.parametrize("fused", PATHS)
@pytest.mark.parametrize(
    "policy, compute", [("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")]
)
def test_mixed_precision_statistics_in_float32(rng, fused, policy, compute):
    """float16 inputs up to 6e4: no inf/NaN, float32 statistics."""
    x = rng.uniform(0, 6e4, (8, 4, 4, 5)).astype(compute if compute == "float16" else "float32")
    with dtype_policy(policy):
        layer = BatchNorm(momentum=0.0, fused=fused)
        y = layer(x, training=True)
        y_inf = layer(x, training=False)
    assert keras.backend.standardize_dtype(y.dtype) == compute
    assert layer.moving_mean.dtype == "float32"
    x_seen = np.asarray(keras.ops.cast(keras.ops.cast(x, compute), "float32"), np.float64)
    y_ref, mean_ref, var_ref = references.batch_norm(x_seen)
    for out in (y, y_inf):
        out = np.asarray(keras.ops.cast(out, "float32"))
        assert np.all(np.isfinite(out))
        # Normalized outputs are of order 1: the compute dtype's resolution.
        np.testing.assert_allclose(out, y_ref, atol=0.05 if compute == "bfloat16" else 5e-3)
    # Statistics of magnitude 1e8 are finite and exact to float32 precision.
    np.testing.assert_allclose(layer.moving_mean.numpy(), mean_ref, rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(), var_ref, rtol=1e-4)


# -- synchronized BN under tf.distribute ---------------------------------------
def _replica_run(strategy, layer, x_global, upstream_global):
    """Train-mode forward/backward of ``layer`` with the batch split evenly."""
    n = strategy.num_replicas_in_sync
    per = x_global.shape[0] // n

    def shard(ctx, t):
        i = ctx.replica_id_in_sync_group
        return t[i * per:(i + 1) * per]

    xs = strategy.experimental_distribute_values_from_function(
        lambda ctx: shard(ctx, x_global)
    )
    ups = strategy.experimental_distribute_values_from_function(
        lambda ctx: shard(ctx, upstream_global)
    )

    @tf.function
    def step(x, up):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
        gx, gg = tape.gradient(y, [x, layer.gamma.value], up)
        return y, gx, gg

    y, gx, gg = strategy.run(step, args=(xs, ups))
    def cat(v):
        return np.concatenate([np.asarray(t) for t in strategy.experimental_local_results(v)])

    return cat(y), cat(gx), [np.asarray(t) for t in strategy.experimental_local_results(gg)]


def _sync_and_single(rng, loc):
    """Synchronized BN on two replicas and plain BN on the whole batch."""
    assert len(LOGICAL_CPUS) == 2
    strategy = mirrored_strategy(LOGICAL_CPUS)
    x = _data(rng, (8, 3, 3, 4), loc=loc)
    upstream = _data(rng, (8, 3, 3, 4))
    with strategy.scope():
        synced = BatchNorm(momentum=0.5, synchronized=True)
        synced.build(x.shape)
    single = BatchNorm(momentum=0.5)
    single.build(x.shape)
    with tf.GradientTape() as tape:
        xt = tf.constant(x)
        tape.watch(xt)
        y_single = single(xt, training=True)
    gx_single, gg_single = tape.gradient(y_single, [xt, single.gamma.value], upstream)
    y, gx, gg_per_replica = _replica_run(strategy, synced, x, upstream)
    return x, (synced, y, gx, sum(gg_per_replica)), (
        single, np.asarray(y_single), np.asarray(gx_single), np.asarray(gg_single)
    )


def test_synchronized_equals_single_device_on_concatenated_batch(rng):
    _, (synced, y, gx, gg), (single, y1, gx1, gg1) = _sync_and_single(rng, 2.0)
    np.testing.assert_allclose(y, y1, atol=1e-5)
    np.testing.assert_allclose(gx, gx1, atol=1e-5, rtol=1e-5)
    # Each replica holds its share of the gamma gradient; they sum to the whole.
    np.testing.assert_allclose(gg, gg1, atol=1e-4, rtol=1e-5)
    for name in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(
            getattr(synced, name).numpy(), getattr(single, name).numpy(), rtol=1e-6
        )


def test_synchronized_statistics_are_robust_to_large_means(rng):
    """Keras' synchronized path forms E[x^2] - E[x]^2; at a mean of 1e4 that
    leaves float32 no correct digit of a unit variance.  Ours is as close to
    the float64 truth as single-device BN on the whole batch."""
    x, (synced, y, _, _), (single, y1, _, _) = _sync_and_single(rng, 1e4)
    y_ref, mean_ref, var_ref = references.batch_norm(x.astype(np.float64))
    moving_var_ref = 0.5 + 0.5 * var_ref
    sync_var_error = np.abs(synced.moving_variance.numpy() - moving_var_ref).max()
    single_var_error = np.abs(single.moving_variance.numpy() - moving_var_ref).max()
    assert sync_var_error <= 2 * single_var_error + 1e-6
    assert sync_var_error < 1e-3
    assert np.abs(y - y_ref).max() <= 2 * np.abs(y1 - y_ref).max()


def test_strategies_made_one_after_another_keep_their_all_reduces_apart(rng):
    """A bare MirroredStrategy reuses the previous one's collective keys in the
    same process ("Shape mismatch in the collective instance 100") as soon as
    the shapes differ; xbn's strategies each get their own."""
    for channels in (4, 7):
        strategy = mirrored_strategy(LOGICAL_CPUS)
        x = _data(rng, (8, 3, 3, channels), loc=1.0)
        with strategy.scope():
            synced = BatchNorm(synchronized=True)
            synced.build(x.shape)
        y, _, _ = _replica_run(strategy, synced, x, np.ones_like(x))
        np.testing.assert_allclose(y, references.batch_norm(x.astype(np.float64))[0], atol=1e-4)


def test_unsynchronized_replicas_use_local_statistics(rng):
    """Control for the test above: without sync each half is normalized alone."""
    strategy = mirrored_strategy(LOGICAL_CPUS)
    x = np.concatenate([_data(rng, (4, 2, 2, 3), loc=-3), _data(rng, (4, 2, 2, 3), loc=3)])
    with strategy.scope():
        local = BatchNorm(synchronized=False)
        local.build(x.shape)
    y, _, _ = _replica_run(strategy, local, x, np.ones_like(x))
    expected = np.concatenate(
        [references.batch_norm(x[:4])[0], references.batch_norm(x[4:])[0]]
    )
    np.testing.assert_allclose(y, expected, atol=1e-4)


# -- arguments ----------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"momentum": 1.0}, ValueError, "`momentum` must be a finite number in [0.0, 1.0)"),
        ({"momentum": "0.9"}, TypeError, "`momentum`"),
        ({"epsilon": 0.0}, ValueError, "`epsilon` must be a finite number > 0.0"),
        ({"axis": 1.5}, TypeError, "`axis` must be an integer"),
        ({"center": 1}, TypeError, "`center` must be True or False"),
        ({"synchronized": "yes"}, TypeError, "`synchronized`"),
        ({"renorm": "yes"}, TypeError, "argument `renorm` must be True or False"),
        ({"renorm": True, "renorm_momentum": 1.0}, ValueError,
         "`renorm_momentum` must be a finite number in [0.0, 1.0)"),
        ({"renorm": True, "renorm_clipping": {"rmax": 0.5, "rmin": 1.0}}, ValueError,
         "renorm_clipping['rmax'] must be at least renorm_clipping['rmin']"),
        ({"renorm": True, "renorm_clipping": {"dmax": -1}}, ValueError, "renorm_clipping['dmax'] must be >= 0"),
        ({"renorm": True, "renorm_clipping": {"rmin": -0.5}}, ValueError, "renorm_clipping['rmin'] must be >= 0"),
        ({"renorm": True, "renorm_clipping": {"rmax": "3"}}, ValueError, "renorm_clipping['rmax'] must be a number"),
        ({"renorm": True, "renorm_clipping": {"r_max": 3.0}}, ValueError,
         "may only hold the keys 'rmax', 'rmin' and 'dmax'"),
        ({"renorm": True, "renorm_clipping": [3.0]}, TypeError, "`renorm_clipping` must be None or a dict"),
        ({"renorm": True, "fused": True}, ValueError, "fused=True cannot renormalize"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, message):
    with pytest.raises(error) as info:
        BatchNorm(**kwargs)
    assert message in str(info.value)
    assert "BatchNorm" in str(info.value)


def test_build_errors_name_the_layer():
    with pytest.raises(ValueError, match="BatchNorm 'bn7': axis=3 is out of range"):
        BatchNorm(axis=3, name="bn7").build((4, 5))
    with pytest.raises(ValueError, match="channel axis -1 .* must be known"):
        BatchNorm(name="bn8").build((4, None))
    with pytest.raises(ValueError, match="fused=True needs epsilon >= 1.001e-05"):
        BatchNorm(epsilon=1e-6, fused=True).build((4, 5))
    with pytest.raises(ValueError, match="fused=True needs the channel axis last"):
        BatchNorm(axis=1, fused=True).build((4, 5, 6))


def test_small_epsilon_takes_the_exact_portable_path(rng):
    x = _data(rng, (6, 3, 3, 2), scale=1e-3)
    layer = BatchNorm(epsilon=1e-8)
    y = np.asarray(layer(x, training=True))
    y_ref, _, _ = references.batch_norm(x, epsilon=1e-8)
    np.testing.assert_allclose(y, y_ref, atol=1e-4)


def _op_types(fn, *args):
    return {op.type for op in fn.get_concrete_function(*args).graph.get_operations()}


@pytest.mark.parametrize("fused, jit, training, expect_fused", [
    (None, False, False, True), (None, False, True, False), (None, True, True, False),
    (True, True, True, True), (True, False, True, True), (False, False, False, False),
], ids=["auto-inference", "auto-training-on-cpu", "auto-under-xla", "forced-under-xla",
        "forced-training", "portable"])
def test_fused_kernel_where_it_is_fastest_and_exact(rng, fused, jit, training, expect_fused):
    """The fused kernel runs in inference; training on a CPU and anything
    XLA compiles take the portable maths (faster there, and on a CPU more
    accurate); fused=True forces the kernel.  Every choice gives keras'
    output and input gradient."""
    x = tf.constant(_data(rng, (4, 5, 5, 3)))
    upstream = tf.constant(_data(rng, (4, 5, 5, 3)))
    layer = BatchNorm(fused=fused)
    layer.build(x.shape)
    layer.moving_mean.assign(rng.normal(0, 0.2, 3).astype("float32"))

    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
        return y, tape.gradient(y, x, upstream)

    compiled = tf.function(step, jit_compile=jit)
    assert ("FusedBatchNormV3" in _op_types(compiled, x)) is expect_fused
    y, dx = compiled(x)
    theirs = keras.layers.BatchNormalization()
    theirs.build(x.shape)
    theirs.set_weights(layer.get_weights())
    with tf.GradientTape() as tape:
        tape.watch(x)
        y_keras = theirs(x, training=training)
    np.testing.assert_allclose(y, y_keras, atol=1e-5)
    np.testing.assert_allclose(dx, tape.gradient(y_keras, x, upstream), atol=1e-5, rtol=1e-5)
    assert np.abs(np.asarray(dx)).max() > 0.1


# -- batch renormalization ----------------------------------------------------------
RENORM_CASES = [
    pytest.param({}, -1, (16, 7), id="no-clipping"),
    pytest.param({"rmax": 1.2, "rmin": 0.9, "dmax": 0.3}, -1, (6, 5, 5, 8), id="clipped"),
    pytest.param({"rmin": 0.5}, 1, (6, 8, 5, 5), id="axis1-rmin-only"),
]


@pytest.mark.parametrize("fused", PATHS)
@pytest.mark.parametrize("clipping, axis, shape", RENORM_CASES)
def test_renorm_matches_float64_reference_over_steps(rng, fused, clipping, axis, shape):
    """Four training steps: every output and the five running statistics."""
    layer = BatchNorm(axis=axis, momentum=0.8, renorm=True, renorm_momentum=0.7,
                      renorm_clipping=clipping, fused=fused)
    layer.build(shape)
    _randomize_affine(layer, rng)
    # Batches that drift, so that r and d move away from 1 and 0 (and clip).
    batches = [_data(rng, shape, loc=0.5 * i, scale=1.0 + 0.5 * i) for i in range(4)]
    outputs, state = references.batch_renorm(
        batches, axis=axis, gamma=layer.gamma.numpy(), beta=layer.beta.numpy(), momentum=0.8,
        renorm_momentum=0.7, clipping=clipping,
    )
    for x, expected in zip(batches, outputs):
        np.testing.assert_allclose(np.asarray(layer(x, training=True)), expected, atol=2e-5)
    names = ("moving_mean", "moving_variance", "moving_stddev", "renorm_mean", "renorm_stddev")
    for name, expected in zip(names, state):
        np.testing.assert_allclose(getattr(layer, name).numpy(), expected, atol=2e-5, err_msg=name)
    # Inference is plain BatchNorm with the moving statistics.
    x = _data(rng, shape)
    y_ref, _, _ = references.batch_norm(
        x, axis, layer.gamma.numpy(), layer.beta.numpy(), mean=state[0], var=state[1]
    )
    np.testing.assert_allclose(np.asarray(layer(x, training=False)), y_ref, atol=2e-5)


@pytest.mark.parametrize("fused", PATHS)
def test_renorm_ramp_relaxes_the_clipping_from_plain_bn(rng, fused):
    """Ioffe's schedule: r clipped to 1 and d to 0 (plain BN) before the ramp,
    linear over it, renorm_clipping after; checked step by step against the
    float64 reference with that clipping, and through a .keras round trip."""
    clipping = {"rmax": 1.5, "rmin": 0.5, "dmax": 0.4}
    ramp = {"rmax": (1, 5), "dmax": (2, 4)}

    def clipping_at(step):
        fr = min(max((step - 1) / 4, 0.0), 1.0)
        fd = min(max((step - 2) / 2, 0.0), 1.0)
        return {"rmax": 1 + 0.5 * fr, "rmin": 1 - 0.5 * fr, "dmax": 0.4 * fd}

    shape = (6, 5, 5, 8)
    layer = BatchNorm(momentum=0.8, renorm=True, renorm_momentum=0.7, renorm_clipping=clipping,
                      renorm_ramp=ramp, fused=fused)
    layer.build(shape)
    _randomize_affine(layer, rng)
    batches = [_data(rng, shape, loc=0.5 * i, scale=1.0 + 0.5 * i) for i in range(7)]
    outputs, state = references.batch_renorm(
        batches, gamma=layer.gamma.numpy(), beta=layer.beta.numpy(), momentum=0.8, renorm_momentum=0.7,
        clipping_at=clipping_at,
    )
    plain, _ = references.batch_renorm(batches[:1], gamma=layer.gamma.numpy(), beta=layer.beta.numpy(),
                                       clipping={"rmax": 1.0, "rmin": 1.0, "dmax": 0.0})
    for step, (x, expected) in enumerate(zip(batches, outputs)):
        y = np.asarray(layer(x, training=True))
        np.testing.assert_allclose(y, expected, atol=2e-5, err_msg=f"step {step}")
        if step == 0:  # plain BN: the batch's own statistics
            np.testing.assert_allclose(y, plain[0], atol=2e-5)
            np.testing.assert_allclose(y, references.batch_norm(
                x, gamma=layer.gamma.numpy(), beta=layer.beta.numpy())[0], atol=2e-5)
    assert float(layer.renorm_step.numpy()) == len(batches)
    layer(batches[0], training=False)  # inference does not count
    assert float(layer.renorm_step.numpy()) == len(batches)
    config = layer.get_config()
    assert config["renorm_ramp"] == {"rmax": [1.0, 5.0], "dmax": [2.0, 4.0]}
    assert "renorm_ramp" not in BatchNorm(renorm=True).get_config()
    again = BatchNorm.from_config(config)
    again.build(shape)
    again.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(again(batches[0], training=False)),
                               np.asarray(layer(batches[0], training=False)), atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"renorm_ramp": {"rmax": (0, 10)}}, "needs renorm=True"),
    ({"renorm": True, "renorm_clipping": {"rmax": 3.0}, "renorm_ramp": {"dmax": (0, 10)}},
     "renorm_clipping['dmax'], which is not set"),
    ({"renorm": True, "renorm_clipping": {"rmax": 3.0}, "renorm_ramp": {"rmax": (10, 5)}}, "0 <= start <= end"),
    ({"renorm": True, "renorm_clipping": {"rmax": 3.0}, "renorm_ramp": {"r": (0, 5)}}, "'rmax' and/or 'dmax'"),
])
def test_bad_renorm_ramps_are_named(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        BatchNorm(**kwargs)


def test_renorm_is_keras_renorm_weights_outputs_and_gradients(rng):
    """Same weights in the same order, both ways; the same training step."""
    shape = (8, 4, 4, 6)
    kwargs = dict(renorm=True, renorm_clipping={"rmax": 1.5, "rmin": 0.7, "dmax": 0.5},
                  renorm_momentum=0.9, momentum=0.95)
    ours, theirs = BatchNorm(**kwargs), keras.layers.BatchNormalization(**kwargs)
    ours.build(shape)
    theirs.build(shape)
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights] == [
        "gamma", "beta", "moving_mean", "moving_variance", "moving_stddev", "renorm_mean", "renorm_stddev"
    ]
    assert [w.trainable for w in ours.weights] == [w.trainable for w in theirs.weights]
    values = [rng.uniform(0.5, 2.0, 6).astype("float32") for _ in ours.weights]
    theirs.set_weights(values)
    ours.set_weights(theirs.get_weights())
    x = tf.constant(_data(rng, shape, loc=1.0, scale=2.0))
    upstream = tf.constant(_data(rng, shape))
    grads = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
        grads.append((y, *tape.gradient(y, [x, layer.gamma.value, layer.beta.value], upstream)))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    back = keras.layers.BatchNormalization(**kwargs)
    back.build(shape)
    back.set_weights(ours.get_weights())


def test_renorm_trains_a_model_and_round_trips_through_a_keras_file(rng, tmp_path):
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = BatchNorm(renorm=True, renorm_clipping={"rmax": 2.0, "rmin": 0.5, "dmax": 1.0})(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    data = _data(rng, (16, 6, 6, 3))
    history = model.fit(data, rng.integers(0, 2, 16), batch_size=4, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    model.save(tmp_path / "renorm.keras")
    restored = keras.saving.load_model(tmp_path / "renorm.keras")
    np.testing.assert_array_equal(np.asarray(restored(data)), np.asarray(model(data)))


# -- configs both ways --------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [
    {},
    {"axis": 1, "momentum": 0.9, "epsilon": 1e-5, "center": False, "synchronized": True},
    {"renorm": True, "renorm_clipping": {"rmax": 3.0, "rmin": 0.3, "dmax": 5.0}, "renorm_momentum": 0.95},
], ids=["default", "options", "renorm"])
def test_configs_move_both_ways_with_keras(kwargs):
    """keras' layer reads xbn's config and xbn reads keras', as weights do."""
    ours = BatchNorm(**kwargs)
    theirs = keras.layers.BatchNormalization.from_config(ours.get_config())
    back = BatchNorm.from_config(theirs.get_config())
    assert back.get_config() == ours.get_config()
    shared = set(theirs.get_config()) & set(ours.get_config())
    assert {k: theirs.get_config()[k] for k in shared} == {k: ours.get_config()[k] for k in shared}
    assert set(ours.get_config()) - set(theirs.get_config()) == set()


def test_fused_enters_the_config_only_when_set():
    assert "fused" not in BatchNorm().get_config()
    config = BatchNorm(fused=False).get_config()
    assert config["fused"] is False
    assert BatchNorm.from_config(config).fused is False
