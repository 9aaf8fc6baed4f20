"""BatchNorm folding: exact where it folds, honest where it cannot."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from xbn.fold import FoldedBatchNorm, fold_batchnorm
from xbn.layers import BatchNorm, GroupNorm, WSConv2D
from xbn.models import get_model

SIZE = 64


def _randomize_bn(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, (BatchNorm, keras.layers.BatchNormalization)):
            c = layer.moving_mean.shape[0]
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
            if layer.center:
                layer.beta.assign(rng.normal(0, 0.2, c).astype("float32"))
            layer.moving_mean.assign(rng.normal(0, 0.2, c).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, c).astype("float32"))


def _inputs():
    """Random inputs and scikit-image's bundled photos, preprocessed 'tf'-style."""
    import skimage.data

    rng = np.random.default_rng(1)
    photos = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.rocket()]
    real = np.stack([tf.image.resize(p, [SIZE, SIZE]).numpy() for p in photos]) / 127.5 - 1
    noise = rng.uniform(-1, 1, (2, SIZE, SIZE, 3))
    return np.concatenate([real, noise]).astype("float32")


def _assert_same(model, folded):
    x = _inputs()
    a = np.asarray(model(x, training=False))
    b = np.asarray(folded(x, training=False))
    scale = np.abs(a).max()
    assert scale > 0.1
    assert np.abs(a - b).max() <= 1e-4 * scale


@pytest.fixture(scope="module", params=["resnet50", "mobilenetv2", "resnet50_xbn", "mobilenetv2_xbn"])
def zoo(request):
    kwargs = {"alpha": 0.5} if request.param.startswith("mobilenet") else {}
    model = get_model(request.param, input_shape=(SIZE, SIZE, 3), classes=10, classifier_activation=None, **kwargs)
    _randomize_bn(model)
    before = [np.array(w) for w in model.get_weights()]
    folded, report = fold_batchnorm(model)
    return request.param, model, folded, report, before


def test_zoo_models_fold_exactly(zoo):
    name, model, folded, report, before = zoo
    _assert_same(model, folded)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)  # the source is untouched


def test_vanilla_keeps_no_bn_and_xbn_keeps_only_its_group_norms(zoo):
    name, model, folded, report, _ = zoo
    assert report.kept == {}
    assert not any(isinstance(layer, (BatchNorm, keras.layers.BatchNormalization)) for layer in folded.layers)
    gns = [layer.name for layer in folded.layers if isinstance(layer, GroupNorm)]
    assert gns == [layer.name for layer in model.layers if isinstance(layer, GroupNorm)]
    assert bool(gns) == name.endswith("_xbn")
    bns = [layer for layer in model.layers if isinstance(layer, BatchNorm)]
    assert len(report.folded) == len(bns)
    assert all(isinstance(folded.get_layer(f"{bn.name}_folded"), FoldedBatchNorm) for bn in bns)


def test_keras_applications_models_fold_too():
    model = keras.applications.MobileNetV2(
        weights=None, alpha=0.35, input_shape=(SIZE, SIZE, 3), classifier_activation=None
    )
    _randomize_bn(model, seed=2)
    folded, report = fold_batchnorm(model)
    assert len(report.folded) == 52 and report.kept == {}
    _assert_same(model, folded)


def test_gnws_becomes_plain_convs_with_standardized_kernels():
    model = get_model("resnet50_gnws", input_shape=(SIZE, SIZE, 3), classes=10)
    folded, report = fold_batchnorm(model)
    assert len(report.standardized) == 53 and not report.folded
    assert not any(isinstance(layer, WSConv2D) for layer in folded.layers)
    conv = folded.get_layer("conv2_block1_2_conv")
    np.testing.assert_allclose(
        conv.kernel.numpy(), model.get_layer("conv2_block1_2_conv").standardized_kernel(), atol=1e-7
    )
    _assert_same(model, folded)


def test_fold_formula_against_float64(rng):
    inputs = keras.Input((6, 6, 3))
    conv = keras.layers.Conv2D(4, 3, name="c")
    dw = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, use_bias=False, name="dw")
    bn1 = BatchNorm(name="bn1", epsilon=1e-3)
    bn2 = BatchNorm(name="bn2", epsilon=1e-2, center=False)
    model = keras.Model(inputs, bn2(dw(keras.layers.ReLU()(bn1(conv(inputs))))))
    _randomize_bn(model, seed=5)
    conv.set_weights([rng.normal(0, 1, (3, 3, 3, 4)), rng.normal(0, 1, 4)])
    folded, report = fold_batchnorm(model)
    assert report.folded == [("c", "bn1"), ("dw", "bn2")]
    g, b, m, v = (np.asarray(w, np.float64) for w in bn1.get_weights())
    s = g / np.sqrt(v + 1e-3)
    w, bias = (np.asarray(t, np.float64) for t in conv.get_weights())
    np.testing.assert_allclose(folded.get_layer("c").kernel.numpy(), w * s, rtol=1e-6)
    np.testing.assert_allclose(folded.get_layer("c").bias.numpy(), (bias - m) * s + b, rtol=1e-6, atol=1e-6)
    g2, m2, v2 = (np.asarray(t, np.float64)
                  for t in (bn2.gamma.numpy(), bn2.moving_mean.numpy(), bn2.moving_variance.numpy()))
    s2 = (g2 / np.sqrt(v2 + 1e-2)).reshape(4, 2)  # channel c*2+m
    np.testing.assert_allclose(folded.get_layer("dw").kernel.numpy(), dw.kernel.numpy() * s2, rtol=1e-6)
    x = rng.normal(0, 1, (2, 6, 6, 3)).astype("float32")
    np.testing.assert_allclose(folded(x), model(x, training=False), atol=1e-5)


def test_what_cannot_fold_stays_and_is_reported(rng):
    inputs = keras.Input((8, 8, 3))
    first = BatchNorm(name="bn_first")(inputs)  # before any conv
    a = keras.layers.Conv2D(4, 1, name="shared_out")(first)
    bn_a = BatchNorm(name="bn_a")(a)
    side = keras.layers.ReLU(name="side")(a)  # the conv output also feeds this
    b = keras.layers.Conv2D(4, 1, activation="relu", name="activated")(first)
    bn_b = BatchNorm(name="bn_b")(b)
    c = keras.layers.Conv2D(4, 1, name="ok")(first)
    bn_c = BatchNorm(name="bn_c")(c)
    outputs = keras.layers.Add()([bn_a, side, bn_b, bn_c])
    model = keras.Model(inputs, outputs)
    _randomize_bn(model, seed=3)
    folded, report = fold_batchnorm(model)
    assert report.folded == [("ok", "bn_c")]
    assert "not a convolution" in report.kept["bn_first"]
    assert "also feeds ['side']" in report.kept["bn_a"]
    assert "has an activation" in report.kept["bn_b"]
    x = rng.normal(0, 1, (2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(folded(x), model(x, training=False), atol=1e-5)


def test_folded_model_saves_and_reloads(zoo, tmp_path):
    _, _, folded, _, _ = zoo
    path = tmp_path / "folded.keras"
    folded.save(path)
    restored = keras.saving.load_model(path)
    x = _inputs()[:2]
    np.testing.assert_array_equal(np.asarray(restored(x)), np.asarray(folded(x)))


def test_subclassed_models_are_refused():
    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="subclassed model"):
        fold_batchnorm(Net())


def test_the_folded_copy_is_frozen(zoo):
    _, model, folded, _, _ = zoo
    assert folded.trainable is False and folded.trainable_weights == []
    assert model.trainable and model.trainable_weights  # the source is untouched
