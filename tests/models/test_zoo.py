"""Every registered model builds small, runs both modes, and round-trips."""

import keras
import numpy as np
import pytest

from xbn.models import get_model, list_models, model_facts

SIZE = 64


@pytest.fixture(scope="module", params=list_models())
def topped(request):
    """Each registered model at 64x64 with a 10-class top, built once."""
    kwargs = {"input_shape": (SIZE, SIZE, 3), "classes": 10}
    if model_facts(request.param).family == "mobilenetv2":
        kwargs["alpha"] = 0.5
    return request.param, get_model(request.param, **kwargs)


def test_forward_in_training_and_inference_mode(topped):
    name, model = topped
    x = np.random.default_rng(0).uniform(0, 1, (2, SIZE, SIZE, 3)).astype("float32")
    train = np.asarray(model(x, training=True))
    infer = np.asarray(model(x, training=False))
    for out in (train, infer):
        assert out.shape == (2, 10)
        assert np.all(np.isfinite(out))
    # The network sees its input: two images, two different answers (a
    # degenerate normalization would give the same for both).  In training
    # mode: with untrained moving statistics an inference pass of
    # MobileNetV2 saturates every ReLU6 at 6.
    assert np.abs(train[0] - train[1]).max() > 1e-6
    assert model.name == name
    assert model.xbn_facts == model_facts(name)
    if model_facts(name).variant == "gnws":
        # Batch-free throughout: training and inference compute the same.
        np.testing.assert_allclose(train, infer, atol=1e-6)
    else:
        # Batch statistics in training, moving statistics in inference.
        assert np.abs(train - infer).max() > 1e-4


def test_keras_file_round_trip(topped, tmp_path):
    name, model = topped
    path = tmp_path / f"{name}.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    x = np.random.default_rng(1).uniform(0, 1, (2, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_array_equal(
        np.asarray(model(x, training=False)), np.asarray(restored(x, training=False))
    )
    # The facts follow the name through the file.
    assert model_facts(restored) == model_facts(name)


FEATURES = {"resnet": 2048, "resnext": 2048, "mobilenetv2": 1280}


@pytest.mark.parametrize("name", list_models())
def test_headless_with_pooling(name):
    """pooling="avg" ends the headless network with the spatial mean of its
    last feature map, of the family's width, at any input size."""
    facts = model_facts(name)
    kwargs = {"alpha": 0.35} if facts.family == "mobilenetv2" else {}
    model = get_model(name, include_top=False, pooling="avg", **kwargs)
    assert model.input_shape == (None, None, None, 3)
    x = np.random.default_rng(2).uniform(0, 1, (2, 80, 96, 3)).astype("float32")
    pooled = np.asarray(model(x, training=False))
    features = np.asarray(keras.Model(model.inputs, model.layers[-2].output)(x, training=False))
    assert pooled.shape == (2, FEATURES[facts.family]) and features.shape[1] * features.shape[2] > 1
    np.testing.assert_allclose(pooled, features.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)


def test_max_pooling_takes_the_spatial_maximum():
    model = get_model("mobilenetv2_xbn", include_top=False, pooling="max", alpha=0.35)
    x = np.random.default_rng(3).uniform(0, 1, (1, 64, 64, 3)).astype("float32")
    features = np.asarray(keras.Model(model.inputs, model.layers[-2].output)(x, training=False))
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), features.max(axis=(1, 2)))
