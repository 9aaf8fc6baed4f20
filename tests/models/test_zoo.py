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
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    assert model.name == name
    assert model.xbn_facts == model_facts(name)
    if model_facts(name).variant == "gnws":
        # Batch-free throughout: training and inference compute the same.
        np.testing.assert_allclose(train, infer, atol=1e-6)


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


@pytest.mark.parametrize("name", list_models())
def test_headless_with_pooling(name):
    kwargs = {"alpha": 0.35} if model_facts(name).family == "mobilenetv2" else {}
    model = get_model(name, include_top=False, pooling="avg", **kwargs)
    assert model.input_shape == (None, None, None, 3)
    out = model(np.zeros((1, 40, 48, 3), "float32"), training=False)
    assert len(out.shape) == 2
