"""xbn.surgery: xbn's layers and the XBN rule in any functional keras model."""

import keras
import numpy as np
import pytest
from conftest import with_moving_statistics

from xbn.layers import BatchNorm, Conv2D, GroupNorm
from xbn.models import get_model
from xbn.surgery import to_xbn, to_xbn_layers


def _structure(model):
    """(name, class) of every layer but the input, and GroupNorms' groups."""
    # keras leaves MobileNetV2's pooling layer unnamed; xbn's is "avg_pool".
    layers = [("avg_pool" if layer.name.startswith("global_average_pooling2d") else layer.name,
               type(layer).__name__) for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    groups = {layer.name: layer.groups for layer in model.layers if isinstance(layer, GroupNorm)}
    return layers, groups, model.count_params()


@pytest.fixture(scope="module")
def mobilenet():
    return keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=10, alpha=0.5)


def test_xbn_layers_give_the_same_outputs_with_the_same_weights():
    source = keras.applications.MobileNetV2(weights=None, input_shape=(64, 64, 3), classes=10, alpha=0.5,
                                            classifier_activation=None)
    with_moving_statistics(source)
    model, report = to_xbn_layers(source)
    assert report.counts() == {"Conv2D -> Conv2D": 35, "BatchNormalization -> BatchNorm": 52}
    assert all(type(layer) in (BatchNorm, Conv2D) for layer in model.layers
               if isinstance(layer, (keras.layers.BatchNormalization, keras.layers.Conv2D))
               and not isinstance(layer, keras.layers.DepthwiseConv2D))
    x = np.random.default_rng(0).uniform(-1, 1, (8, 64, 64, 3)).astype("float32")
    # Inference: the same arithmetic.  Training: batch statistics through 52
    # BatchNorms, whose float32 roundings differ between keras' decomposed
    # layer and the fused kernel; the bound is the one every whole-network
    # comparison of xbn uses (1e-4 of the output scale).
    for training, bound in ((False, 1e-6), (True, 1e-4)):
        want = np.asarray(source(x, training=training))
        got = np.asarray(model(x, training=training))
        assert np.abs(want).max() > 0.1
        assert np.abs(got - want).max() <= bound * np.abs(want).max()


def test_the_xbn_rule_on_keras_resnet50_gives_resnet50_xbn():
    source = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10)
    model, report = to_xbn(source)
    assert _structure(model) == _structure(get_model("resnet50_xbn", input_shape=(64, 64, 3), classes=10))
    assert report.counts()["BatchNormalization -> GroupNorm"] == 1 + 16  # the stem and each block's 3x3
    assert report.kept["conv2_block1_1_bn"] == "after the 1x1 Conv2D 'conv2_block1_1_conv'"
    # Every other weight is the source's.
    np.testing.assert_array_equal(model.get_layer("conv3_block2_2_conv").kernel,
                                  source.get_layer("conv3_block2_2_conv").kernel)


def test_the_xbn_rule_on_keras_mobilenetv2_gives_mobilenetv2_xbn(mobilenet):
    model, report = to_xbn(mobilenet, groups=16, stem="bn")
    assert _structure(model) == _structure(get_model("mobilenetv2_xbn", input_shape=(32, 32, 3), classes=10,
                                                     alpha=0.5))
    assert report.kept["bn_Conv1"] == 'the stem (stem="bn")'


@pytest.mark.parametrize("name, replaced", [("EfficientNetB0", 17), ("DenseNet121", 1), ("ResNet50V2", 16)])
def test_other_keras_applications(name, replaced):
    """Where the rule finds BatchNorms after spatial convs (the README's table):
    EfficientNetB0's stem and its 16 depthwise convs; DenseNet121's stem only
    (its 3x3 convs feed concatenations, its BatchNorms pre-activate); each of
    ResNet50V2's 16 blocks' 3x3 conv (its stem conv feeds the max-pool)."""
    source = getattr(keras.applications, name)(weights=None, input_shape=(32, 32, 3), classes=10)
    model, report = to_xbn(source, groups=8)
    assert report.counts()["BatchNormalization -> GroupNorm"] == replaced
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    out = np.asarray(model(x, training=True))
    assert out.shape == (2, 10) and np.all(np.isfinite(out))


def test_what_cannot_be_rewritten_is_refused_by_name():
    class Subclassed(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="subclassed model"):
        to_xbn_layers(Subclassed())
    inputs = keras.Input((8, 8, 3))
    shared = keras.layers.Conv2D(3, 3, padding="same", name="shared")
    model = keras.Model(inputs, shared(shared(inputs)))
    with pytest.raises(ValueError, match="layer 'shared' is used 2 times"):
        to_xbn_layers(model)
    inner = keras.Sequential([keras.layers.Conv2D(3, 1)], name="inner")
    with pytest.raises(ValueError, match="layer 'inner' is a nested model"):
        to_xbn(keras.Model(inputs, inner(inputs)))
    flat = keras.Model(inputs, keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 1)(inputs)))
    with pytest.raises(ValueError, match="no BatchNormalization right after a spatial convolution"):
        to_xbn(flat)
    with pytest.raises(ValueError, match="stem"):
        to_xbn(flat, stem="ln")


def _sequential(built=True):
    layers = [keras.layers.Conv2D(8, 3, padding="same", use_bias=False), keras.layers.BatchNormalization(),
              keras.layers.ReLU(), keras.layers.Conv2D(8, 1), keras.layers.BatchNormalization(),
              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)]
    return keras.Sequential(([keras.Input((12, 12, 3))] if built else []) + layers, name="seq")


def test_a_built_sequential_model_is_rewritten_as_its_functional_equivalent():
    """keras' clone_model refused it ('call_function' is not supported with Sequential models)."""
    model = _sequential()
    x = np.random.default_rng(0).normal(0, 1, (2, 12, 12, 3)).astype("float32")
    same, report = to_xbn_layers(model)
    np.testing.assert_allclose(np.asarray(same(x)), np.asarray(model(x)), atol=1e-5)
    assert report.counts()["BatchNormalization -> BatchNorm"] == 2
    xbn, report = to_xbn(model)
    kinds = [type(layer) for layer in xbn.layers]
    assert kinds.count(GroupNorm) == 1 and kinds.count(BatchNorm) == 1  # after the 3x3; the 1x1's kept
    assert list(report.kept) == [model.layers[4].name]
    assert xbn.name == "seq" and xbn(x).shape == (2, 3)


def test_an_unbuilt_sequential_model_gets_one_true_refusal():
    for rewrite in (to_xbn, to_xbn_layers):
        with pytest.raises(ValueError, match=r"the Sequential model 'seq' is not built.*keras.Input"):
            rewrite(_sequential(built=False))


def _channel_moments(values):
    values = np.asarray(values, np.float64).reshape(-1, values.shape[-1])
    return values.mean(axis=0), values.std(axis=0)


def test_calibration_matches_each_groupnorm_to_the_batchnorm_it_replaces():
    """Issue 39: each new GroupNorm's output has, channel by channel, the mean
    and spread the trained BatchNorm gives its output while it normalizes
    with the statistics of the images (beta, and |gamma| shrunk by the
    epsilon), in a float64 NumPy reference of both, so the layers after it
    get what they were trained on; uncalibrated, the network computes
    something else."""
    keras.utils.set_random_seed(5)
    source = with_moving_statistics(get_model("resnet20", input_shape=(32, 32, 3), classes=10,
                                              classifier_activation=None), seed=3)
    for layer in source.layers:  # trained-looking scales (some negative) and offsets
        if isinstance(layer, BatchNorm):
            c = layer.gamma.shape[0]
            layer.gamma.assign(np.random.default_rng(c).uniform(-0.5, 2.0, c).astype("float32"))
            layer.beta.assign(np.random.default_rng(c + 1).normal(0, 0.5, c).astype("float32"))
    images = np.random.default_rng(0).normal(0, 1, (96, 32, 32, 3)).astype("float32")
    plain, _ = to_xbn(source, groups=16)
    lines = []
    model, report = to_xbn(source, groups=16, calibration=images, batch_size=40, progress=lines.append)
    calibration = report.calibration
    assert calibration.images == 96 and len(calibration.layers) == 19 == len(lines)  # every 3x3 conv's
    assert calibration.layers["conv1_gn"] == "conv1_bn" and "GroupNorm(s) calibrated on 96 images" in report.summary()
    pairs = list(calibration.layers.items())
    outputs = keras.Model(model.input, [[model.get_layer(g).input, model.get_layer(g).output] for g, _ in pairs])
    for (gn, bn_name), (x, got) in zip(pairs, outputs.predict(images, verbose=0)):
        bn = source.get_layer(bn_name)
        gamma, beta = (np.asarray(v, np.float64) for v in (bn.gamma, bn.beta))
        variance = _channel_moments(x)[1] ** 2
        got_mean, got_std = _channel_moments(got)
        np.testing.assert_allclose(got_mean, beta, atol=1e-4 * max(1.0, np.abs(gamma).max()), err_msg=gn)
        np.testing.assert_allclose(got_std, np.abs(gamma) * np.sqrt(variance / (variance + bn.epsilon)),
                                   rtol=1e-4, atol=1e-6, err_msg=gn)
    # The sign of a negative scale carries over: the output correlates as the BatchNorm's does.
    first = keras.Model(model.input, model.get_layer("conv1_gn").output).predict(images, verbose=0)
    source_first = keras.Model(source.input, source.get_layer("conv1_bn").output).predict(images, verbose=0)
    correlation = [np.corrcoef(first[..., c].ravel(), source_first[..., c].ravel())[0, 1] for c in range(16)]
    assert min(correlation) > 0.9
    assert not np.allclose(np.asarray(plain.get_layer("conv1_gn").gamma), np.asarray(model.get_layer("conv1_gn").gamma))
    with pytest.raises(ValueError, match="no GroupNorm of 'resnet20' takes the place of a BatchNorm"):
        from xbn.surgery import calibrate_xbn

        calibrate_xbn(source, source, images)
