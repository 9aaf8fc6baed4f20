"""Vanilla models are layer for layer keras.applications' own."""

import warnings

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import dtype_policy
from keras.src.legacy.saving import legacy_h5_format

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


def test_training_gradients_are_keras_gradients(pair):
    """xbn's twin trains with keras' gradients, variable by variable: both
    networks in float64, the same seeded weights and batch, every gradient
    equal to 1e-8 of its norm (a wrong gradient anywhere, a BatchNorm's gamma
    as much as a conv kernel, is off by far more).

    Why float64: in float32 these networks are ill-conditioned at batch 4.
    ReLU6 gates and max-pooling ties flip when a value moves by one rounding,
    and a flip changes every gradient upstream of it: keras' own float32
    ResNet-50 gradients are ~50 (norm) away from float64 and MobileNetV2's
    land on either side of a flip from seed to seed and machine to machine,
    so no float32 comparison holds on every CPU.  The float32 fused path's
    gradients are compared with keras' and with float64 at the layer, where
    there are no gates (tests/layers/test_batch_norm.py, including the
    ill-conditioned case where the gradient cancels).
    """
    name, theirs, ours = pair
    keras.utils.set_random_seed(0)
    kwargs = dict(weights=None, input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    with dtype_policy("float64"):
        exact_keras = PAIRS[name][0](**kwargs)
        exact_ours = PAIRS[name][1](**kwargs)
    _randomize_bn(exact_keras, seed=2)
    report = transfer_weights(exact_keras, exact_ours)
    assert report.left_initial == []
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (4, SIZE, SIZE, 3))
    labels = rng.integers(0, 1000, 4)
    reference = _training_gradients(exact_keras, x, labels)
    grads = _training_gradients(exact_ours, x, labels)
    assert list(grads) == list(reference)  # the same variables in the same order
    floor = 1e-12 * max(np.linalg.norm(r) for r in reference.values())
    for path, ref in reference.items():
        assert np.linalg.norm(grads[path] - ref) <= 1e-8 * np.linalg.norm(ref) + floor, path


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
    group_norms = [layer.name for layer in ours.layers if type(layer).__name__ == "GroupNorm"]
    assert sorted(report.left_initial) == sorted(group_norms)
    replaced = {layer.name for layer in theirs.layers if isinstance(layer, keras.layers.BatchNormalization)} - {
        layer.name for layer in ours.layers
    }
    assert sorted(report.unused) == sorted(replaced)
    assert len(replaced) == len(group_norms)
    shared = [layer for layer in ours.layers if layer.weights and layer.name not in group_norms]
    keras_layers = {layer.name: layer for layer in theirs.layers}
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


def test_weights_of_another_width_are_refused_unless_asked_for(tmp_path):
    """alpha 0.35 weights into an alpha 1.0 network: 2 of 105 layers would load."""
    source = mobilenetv2(alpha=0.35, input_shape=(32, 32, 3), classes=3)
    path = tmp_path / "narrow.weights.h5"
    source.save_weights(path)
    with pytest.raises(ValueError, match=r"only \d+ of the \d+ layers of 'mobilenetv2' with weights found .* "
                                         r"built with other arguments \(alpha, groups, layout\).*strict=False"):
        mobilenetv2(weights=str(path), input_shape=(32, 32, 3), classes=3)
    model = mobilenetv2(input_shape=(32, 32, 3), classes=3)
    with pytest.warns(UserWarning, match="left at their initial values"):
        report = load_weights(model, path, strict=False)
    assert 0 < len(report.loaded) < len(report.left_initial)


def test_load_model_says_which_layers_neither_keras_nor_xbn_provides(tmp_path):
    from xbn.models import load_model

    @keras.saving.register_keras_serializable(package="elsewhere")
    class Foreign(keras.layers.Layer):
        def call(self, x):
            return x

    inputs = keras.Input((4,))
    keras.Model(inputs, Foreign()(inputs)).save(tmp_path / "foreign.keras")
    del keras.saving.get_custom_objects()["elsewhere>Foreign"]
    with pytest.raises(ValueError, match="uses layers that neither keras nor xbn provides .*Foreign"):
        load_model(tmp_path / "foreign.keras")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_model(tmp_path / "missing.keras")
