"""Vanilla models are layer for layer keras.applications' own."""

import warnings

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.legacy.saving import legacy_h5_format

from conftest import dtype_policy

from xbn.layers import BatchNorm
from xbn.models import (
    load_weights,
    mobilenetv2,
    mobilenetv2_xbn,
    resnet50,
    resnet50_xbn,
    transfer_weights,
)

SIZE = 64  # small inputs: the architecture does not depend on the size

PAIRS = {
    "resnet50": (keras.applications.ResNet50, resnet50),
    "mobilenetv2": (keras.applications.MobileNetV2, mobilenetv2),
}


def _randomize_bn(model, seed):
    """Non-trivial BN statistics so the inference path is really compared."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, (keras.layers.BatchNormalization, BatchNorm)):
            c = layer.gamma.shape[0]
            layer.set_weights(
                [rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c), rng.normal(0, 0.1, c),
                 rng.uniform(0.5, 2.0, c)]
            )


@pytest.fixture(scope="module", params=sorted(PAIRS))
def pair(request):
    """(name, keras.applications model, xbn model) at 64x64 with logits."""
    keras_builder, xbn_builder = PAIRS[request.param]
    kwargs = {"weights": None, "input_shape": (SIZE, SIZE, 3), "classifier_activation": None}
    theirs = keras_builder(**kwargs)
    _randomize_bn(theirs, seed=1)
    ours = xbn_builder(**kwargs)
    return request.param, theirs, ours


@pytest.mark.parametrize(
    "keras_builder, xbn_builder, expected",
    [
        (keras.applications.ResNet50, resnet50, 25_636_712),
        (keras.applications.MobileNetV2, mobilenetv2, 3_538_984),
    ],
    ids=["resnet50", "mobilenetv2"],
)
def test_parameter_counts_at_224_with_1000_classes(keras_builder, xbn_builder, expected):
    ours = xbn_builder()
    assert ours.count_params() == expected
    assert keras_builder(weights=None).count_params() == expected


def test_same_layer_names_types_and_weight_shapes(pair):
    _, theirs, ours = pair
    # Every layer after the (auto-named, weightless) input layer.
    assert [layer.name for layer in ours.layers[1:]] == [
        # keras leaves MobileNetV2's pooling layer unnamed; ours is "avg_pool"
        "avg_pool" if layer.name.startswith("global_average_pooling2d") else layer.name
        for layer in theirs.layers[1:]
    ]
    for mine, keras_layer in zip(ours.layers, theirs.layers):
        if isinstance(keras_layer, keras.layers.BatchNormalization):
            assert isinstance(mine, BatchNorm)
        else:  # the same class, or xbn's subclass of it (Conv2D)
            assert isinstance(mine, type(keras_layer)), (mine.name, type(mine), type(keras_layer))
        assert [tuple(w.shape) for w in mine.weights] == [tuple(w.shape) for w in keras_layer.weights]
        assert [w.name for w in mine.weights] == [w.name for w in keras_layer.weights]
        if isinstance(keras_layer, keras.layers.BatchNormalization):
            assert mine.epsilon == keras_layer.epsilon
            assert mine.momentum == keras_layer.momentum


def _inputs(seed=3):
    return np.random.default_rng(seed).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype("float32")


def _assert_same_predictions(a, b):
    a, b = np.asarray(a), np.asarray(b)
    scale = np.abs(a).max()
    assert scale > 0.1  # a degenerate network would compare trivially
    np.testing.assert_allclose(b, a, atol=1e-5 * max(1.0, scale), rtol=0)
    probs_a, probs_b = (np.asarray(keras.ops.softmax(t)) for t in (a, b))
    assert np.abs(probs_a - probs_b).max() <= 1e-5


def test_weights_copied_layer_by_layer_give_the_same_predictions(pair):
    _, theirs, ours = pair
    report = transfer_weights(theirs, ours)
    assert report.left_initial == [] and report.unused == [] and report.mismatched == {}
    x = _inputs()
    _assert_same_predictions(theirs(x, training=False), ours(x, training=False))


def _training_gradients(model, x, labels):
    with tf.GradientTape() as tape:
        logits = model(x.astype(model.dtype), training=True)
        loss = tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        )
    grads = tape.gradient(loss, model.trainable_variables)
    return {v.path: np.asarray(g, np.float64) for v, g in zip(model.trainable_variables, grads)}


def test_training_gradients_are_as_accurate_as_keras(pair):
    """Fused BN and the faster conv gradient give keras' training gradients,
    variable by variable.

    The reference is keras.applications' own network in float64, with the
    same (seeded) weights.  At batch 4 the deep BNs normalize over few values
    and the stem's max-pooling routes gradients by near-ties, so float32
    gradients of these networks are ill-conditioned: keras' own differ from
    float64 by up to 4% on some variables.  No variable of xbn's twin may be
    more than 3x further from float64 than keras' own float32 gradient
    (plus a floor of 1e-5 of the largest gradient, for the conv biases right
    before a BatchNorm, whose exact gradient is zero), and every BatchNorm
    gamma and beta gradient above that floor must be within 10% of float64:
    a wrong BN gradient anywhere is caught, however small its share of all
    weights.
    """
    name, theirs, ours = pair
    saved = theirs.get_weights(), ours.get_weights()  # the module's models stay as they were
    try:
        keras.utils.set_random_seed(0)
        with dtype_policy("float64"):
            exact = PAIRS[name][0](weights=None, input_shape=(SIZE, SIZE, 3), classifier_activation=None)
        _randomize_bn(exact, seed=2)
        theirs.set_weights(exact.get_weights())
        transfer_weights(theirs, ours)
        rng = np.random.default_rng(5)
        x = rng.uniform(-1, 1, (4, SIZE, SIZE, 3)).astype("float32")
        labels = rng.integers(0, 1000, 4)
        reference = _training_gradients(exact, x, labels)
        keras_grads, our_grads = (_training_gradients(m, x, labels) for m in (theirs, ours))
    finally:
        theirs.set_weights(saved[0])
        ours.set_weights(saved[1])
    assert list(our_grads) == list(reference)  # the same variables in the same order
    floor = 1e-5 * max(np.linalg.norm(r) for r in reference.values())
    worse = []
    for path, ref in reference.items():
        ours_error = np.linalg.norm(our_grads[path] - ref)
        keras_error = np.linalg.norm(keras_grads[path] - ref)
        if ours_error > 3 * keras_error + floor:
            worse.append((path, ours_error, keras_error))
        # (Some betas have an exact gradient of zero too: a projection BN
        # whose output a conv and another BN follow, with no residual.)
        if path.endswith(("gamma", "beta")) and np.linalg.norm(ref) > floor:
            assert ours_error <= 0.1 * np.linalg.norm(ref), (path, ours_error, np.linalg.norm(ref))
    assert not worse, worse[:5]


@pytest.mark.parametrize("fmt", ["keras3-weights", "legacy-h5", "keras-file"])
def test_weights_argument_reads_keras_weight_files(pair, tmp_path, fmt):
    """keras' ImageNet files are legacy HDF5; a user passes the path as weights=."""
    name, theirs, _ = pair
    if fmt == "keras3-weights":
        path = tmp_path / "m.weights.h5"
        theirs.save_weights(path)
    elif fmt == "legacy-h5":
        path = tmp_path / f"{name}_weights_tf_dim_ordering_tf_kernels.h5"
        with h5py.File(path, "w") as handle:
            legacy_h5_format.save_weights_to_hdf5_group(handle, theirs)
    else:
        path = tmp_path / "m.keras"
        theirs.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete load warns about nothing
        ours = PAIRS[name][1](
            weights=str(path), input_shape=(SIZE, SIZE, 3), classifier_activation=None
        )
    assert ours.xbn_weights_report.left_initial == []
    x = _inputs(seed=4)
    _assert_same_predictions(theirs(x, training=False), ours(x, training=False))


@pytest.mark.parametrize(
    "keras_builder, xbn_builder",
    [(keras.applications.ResNet50, resnet50_xbn), (keras.applications.MobileNetV2, mobilenetv2_xbn)],
    ids=["resnet50_xbn", "mobilenetv2_xbn"],
)
def test_keras_weights_load_into_xbn_twin_for_every_shared_layer(tmp_path, keras_builder, xbn_builder):
    theirs = keras_builder(weights=None, input_shape=(SIZE, SIZE, 3))
    path = tmp_path / "vanilla.weights.h5"
    theirs.save_weights(path)
    with pytest.warns(UserWarning, match="left at their initial values"):
        ours = xbn_builder(weights=str(path), input_shape=(SIZE, SIZE, 3))
    report = ours.xbn_weights_report
    group_norms = [l.name for l in ours.layers if type(l).__name__ == "GroupNorm"]
    assert sorted(report.left_initial) == sorted(group_norms)
    replaced = {l.name for l in theirs.layers if isinstance(l, keras.layers.BatchNormalization)} - {
        l.name for l in ours.layers
    }
    assert sorted(report.unused) == sorted(replaced)
    assert len(replaced) == len(group_norms)
    shared = [l for l in ours.layers if l.weights and l.name not in group_norms]
    keras_layers = {l.name: l for l in theirs.layers}
    for layer in shared:
        for a, b in zip(layer.get_weights(), keras_layers[layer.name].get_weights()):
            np.testing.assert_array_equal(a, b)


def test_load_weights_refuses_a_file_of_another_model(tmp_path):
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="unrelated")])
    path = tmp_path / "other.weights.h5"
    other.save_weights(path)
    model = mobilenetv2(alpha=0.35, input_shape=(32, 32, 3), include_top=False)
    with pytest.raises(ValueError, match="no layer of 'mobilenetv2' matches"):
        load_weights(model, path)


def test_load_weights_refuses_a_non_weights_file(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not hdf5")
    model = mobilenetv2(alpha=0.35, input_shape=(32, 32, 3), include_top=False)
    with pytest.raises(ValueError, match="neither an HDF5 weights file"):
        load_weights(model, path)
