"""Pooled BatchNorm input statistics and precise BN, against float64 NumPy."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from bn_nets import data, net, randomize_moving, reference
from conftest import LOGICAL_CPUS

from xbn.diagnostics import collect_statistics, estimation_shift, recalibrate_bn
from xbn.layers import BatchNorm
from xbn.training import mirrored_strategy


@pytest.mark.parametrize("keras_bn", [False, True])
def test_pooled_inference_statistics_equal_the_whole_data_in_float64(rng, keras_bn):
    model = net(keras_bn=keras_bn)
    randomize_moving(model, rng)
    x = data(rng)
    # Uneven batches (16, 16, 5): pooling must weight them by their sizes.
    stats, examples = collect_statistics(model, tf.data.Dataset.from_tensor_slices(x).batch(16))
    assert examples == 37 and list(stats) == ["bn1", "bn2"]
    for (mean, var), name in zip(reference(model, x, training=False), ("bn1", "bn2")):
        got_mean, got_var, count = stats[name]
        np.testing.assert_allclose(got_mean, mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got_var, var, rtol=1e-5)
    assert stats["bn1"][2] == 37 * 64 and stats["bn2"][2] == 37 * 9


def test_training_mode_pass_normalizes_each_batch_with_its_own_statistics(rng):
    """In training mode bn2's input depends on bn1's per-batch statistics."""
    model = net()
    x = data(rng, 32)
    stats, _ = collect_statistics(model, tf.data.Dataset.from_tensor_slices(x).batch(16), training=True)
    halves = [reference(model, x[i:i + 16], training=True)[1] for i in (0, 16)]
    mean = (halves[0][0] + halves[1][0]) / 2
    var = (halves[0][1] + halves[1][1]) / 2 + ((halves[0][0] - halves[1][0]) / 2) ** 2
    np.testing.assert_allclose(stats["bn2"][0], mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats["bn2"][1], var, rtol=1e-5)


def test_two_replicas_pool_the_same_statistics_as_one_device(rng):
    x = data(rng, 40)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(20)
    single_model = net()
    randomize_moving(single_model, rng)
    single, _ = collect_statistics(single_model, dataset)
    strategy = mirrored_strategy(LOGICAL_CPUS)
    with strategy.scope():
        model = net()
    model.set_weights(single_model.get_weights())
    stats, examples = collect_statistics(model, dataset, strategy=strategy)
    assert examples == 40
    for name in ("bn1", "bn2"):
        np.testing.assert_allclose(stats[name][0], single[name][0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(stats[name][1], single[name][1], rtol=1e-5)


def test_recalibration_sets_population_statistics_and_zeroes_the_shift(rng):
    model = net()
    randomize_moving(model, rng)
    x = data(rng)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(16)
    before = estimation_shift(model, dataset)
    assert min(layer.mean_shift for layer in before.layers) > 0.1
    report = recalibrate_bn(model, dataset, steps=3, tolerance=1e-5)
    assert report.layers == ["bn1", "bn2"] and report.examples == 37
    assert report.converged and report.last_change < 1e-5 and 2 <= report.passes <= 4
    for (mean, var), name in zip(reference(model, x, training=False), ("bn1", "bn2")):
        layer = model.get_layer(name)
        np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(layer.moving_variance.numpy(), var, rtol=1e-5)
    after = estimation_shift(model, dataset)
    assert max(layer.mean_shift for layer in after.layers) < 1e-4
    assert max(layer.var_shift for layer in after.layers) < 1e-4


def _deep_chain(depth=8):
    """An untrained conv-BN chain: inference-mode statistics drift with depth."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = inputs
    for i in range(depth):
        x = keras.layers.Conv2D(4, 3, padding="same", name=f"c{i}")(x)
        x = keras.layers.ReLU()(BatchNorm(name=f"bn{i}")(x))
    return keras.Model(inputs, x)


def test_depth_order_settles_every_layer_of_an_untrained_chain(rng):
    model = _deep_chain()
    dataset = tf.data.Dataset.from_tensor_slices(data(rng, 24)).batch(8)
    messages = []
    report = recalibrate_bn(model, dataset, steps=3, tolerance=1e-4, progress=messages.append)
    assert report.converged and report.passes <= 2 + 8
    assert messages[-1] == f"precise BN: all 8 layers settled after {report.passes} passes"
    shift = estimation_shift(model, dataset)
    assert max(layer.mean_shift for layer in shift.layers) < 1e-3
    assert max(layer.var_shift for layer in shift.layers) < 1e-3


def _settled_counts(messages):
    return [int(m.split("): ")[1].split("/")[0]) for m in messages if "(inference mode)" in m]


def test_a_chain_deeper_than_the_default_passes_settles_one_layer_a_pass(rng):
    """24 BatchNorms whose inference statistics drift far apart with depth:
    the defaults settle every one of them (up to two passes more than
    layers), and once the Jacobi sweep ends no pass loses a settled layer."""
    model = _deep_chain(24)
    dataset = tf.data.Dataset.from_tensor_slices(data(rng, 24)).batch(8)
    messages = []
    report = recalibrate_bn(model, dataset, steps=3, tolerance=1e-4, progress=messages.append)
    assert report.converged and report.unsettled == [] and report.passes <= 1 + 24 + 2
    counts = _settled_counts(messages)
    worst = counts.index(min(counts[1:]), 1) if len(counts) > 1 else 0
    assert all(b > a for a, b in zip(counts[worst:], counts[worst + 1:]))
    shift = estimation_shift(model, dataset)
    assert max(layer.mean_shift for layer in shift.layers) < 1e-3
    assert max(layer.var_shift for layer in shift.layers) < 1e-3


def test_running_out_of_passes_is_reported(rng):
    model = _deep_chain()
    dataset = tf.data.Dataset.from_tensor_slices(data(rng, 24)).batch(8)
    messages = []
    report = recalibrate_bn(model, dataset, steps=3, max_passes=1, tolerance=1e-4, progress=messages.append)
    assert not report.converged and report.passes == 2 and report.last_change > 1e-4
    # The first layer's input involves no BatchNorm: the training-mode pass
    # settled it; the second is settled by the one inference pass allowed.
    assert "stopped after 2 passes with 2 of 8 layers settled" in messages[-1]
    assert "(max_passes=10, the default, always settles every layer)" in messages[-1]
    assert report.unsettled == [f"bn{i}" for i in range(2, 8)]
    assert report.batches == 3
    # A shallower chain's default is the floor MAX_PASSES (8), not its 3 + 2.
    messages = []
    recalibrate_bn(_deep_chain(3), dataset, steps=3, max_passes=1, tolerance=1e-12, progress=messages.append)
    assert "(max_passes=8, the default, always settles every layer)" in messages[-1]


def test_recalibration_raises_the_accuracy_of_a_briefly_trained_bn_model():
    """Momentum 0.999 after 60 steps: the moving statistics still describe
    the initial network, so inference mode is near chance; precise BN
    recovers (most of) what the network learnt."""
    from xbn.data import Augment, Pipeline, load_source

    keras.utils.set_random_seed(3)
    inputs = keras.Input((16, 16, 3))
    x = inputs
    for i, filters in enumerate((16, 32, 32)):
        x = keras.layers.Conv2D(filters, 3, strides=2 if i else 1, padding="same", use_bias=False)(x)
        x = keras.layers.ReLU()(BatchNorm(momentum=0.999)(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(x))
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    pipeline = Pipeline(load_source("digits"), 16, "tf", 32, augment=Augment(eval_crop=1.0))
    model.fit(pipeline.evaluation("train").repeat(), steps_per_epoch=60, epochs=1, verbose=0, shuffle=False)
    test = pipeline.evaluation("test")
    before = model.evaluate(test, verbose=0, return_dict=True)["accuracy"]
    recalibrate_bn(model, pipeline.evaluation("train"), steps=20)
    after = model.evaluate(test, verbose=0, return_dict=True)["accuracy"]
    assert before < 0.5
    assert after > 0.8
    assert after > before + 0.3


def test_arguments_are_checked():
    model = net()
    data = tf.data.Dataset.from_tensor_slices(np.zeros((4, 8, 8, 3), np.float32)).batch(2)
    with pytest.raises(ValueError, match=r"argument `steps` must be an integer >= 1. Received: steps=0"):
        recalibrate_bn(model, data, steps=0)
    with pytest.raises(ValueError, match=r"argument `max_passes` must be an integer >= 1. Received: max_passes=0"):
        recalibrate_bn(model, data, steps=1, max_passes=0)
    with pytest.raises(ValueError, match="`tolerance` must be a number > 0; got 0"):
        recalibrate_bn(model, data, steps=1, tolerance=0)
    with pytest.raises(ValueError, match=r"argument `steps` must be an integer >= 1. Received: steps=2.5"):
        estimation_shift(model, data, steps=2.5)
    with pytest.raises(ValueError, match="yielded no batch"):
        collect_statistics(model, data.take(0))
