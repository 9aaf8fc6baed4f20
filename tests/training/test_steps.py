"""The inference functions the evaluation and the study score with, against NumPy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from xbn.training.steps import accuracy_function, prediction_function


class _Traces(keras.layers.Layer):
    """Counts how often the model is traced (a Python side effect runs only then)."""

    count = 0

    def call(self, x):
        type(self).count += 1
        return x


@pytest.fixture
def model_and_data():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(23, 4, 4, 3)).astype("float32")
    labels = rng.integers(0, 5, size=23).astype("int32")
    inputs = keras.Input((4, 4, 3))
    x = _Traces()(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(5)(x))
    _Traces.count = 0
    return model, images, labels


def _batches(images, labels, size):
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(size)


def test_accuracy_matches_numpy_for_every_batch_size_and_traces_at_most_twice(model_and_data):
    model, images, labels = model_and_data
    logits = np.asarray(model(images, training=False), np.float64)
    _Traces.count = 0
    order = np.argsort(-logits, axis=-1)
    expected_top1 = np.mean(order[:, 0] == labels)
    expected_top3 = np.mean([label in row[:3] for label, row in zip(labels, order)])
    accuracy = accuracy_function(model, 3)
    for size in (8, 5, 4, 23, 1):  # last batches of 7, 3, 3, none, none
        result = accuracy(_batches(images, labels, size))
        assert result["examples"] == 23
        assert result["top1"] == pytest.approx(expected_top1)
        assert result["topk"] == pytest.approx(expected_top3)
    assert _Traces.count == 2  # the first batch size, then one trace with the batch size left open


def test_predictions_are_numpy_s_argmax_in_order_and_follow_changed_weights(model_and_data):
    model, images, labels = model_and_data
    expected = np.argmax(np.asarray(model(images, training=False)), -1)
    _Traces.count = 0
    predict = prediction_function(model)
    classes, got_labels = predict(_batches(images, labels, 8))
    np.testing.assert_array_equal(classes, expected)
    np.testing.assert_array_equal(got_labels, labels)
    # Weights changed in place (as precise BN changes moving statistics) are
    # read at the next call, through the same trace.
    dense = model.layers[-1]
    dense.kernel.assign(np.zeros(dense.kernel.shape, "float32"))
    dense.bias.assign(np.eye(5, dtype="float32")[3])
    classes, _ = predict(_batches(images, labels, 8))
    np.testing.assert_array_equal(classes, np.full(23, 3))
    assert _Traces.count == 2  # batches of 8, then of any size: the same two traces served both calls
