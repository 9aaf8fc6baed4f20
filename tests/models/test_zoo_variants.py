"""The model battery, per family and variant (on its smallest registered
model: deeper ones repeat the same blocks, and the suite must stay inside its
time budget): a training step that changes every trainable weight with a
finite loss and outputs under ``mixed_float16`` and ``mixed_bfloat16``.  Per
family (its XBN form, which holds both its norms): a SavedModel export
(BatchNorm folded) whose reloaded signature answers as the model does, and
the same weights on the JAX and PyTorch backends giving TensorFlow's
inference outputs (training mode on those backends is checked
layer by layer against float64 references in ``tests/backend_check.py``:
through a whole network at batch 2, BatchNorm's batch statistics of 1x1
feature maps amplify float32 rounding differences).  Every model's own
checks are in ``test_zoo.py``; a model is covered by registering it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import dtype_policy, with_moving_statistics

from xbn.export import export_model
from xbn.models import get_model, list_models, model_facts


def _kwargs(name):
    # MobileNetV2 at alpha 0.5: wide enough that no GroupNorm gets 1 channel.
    return {"alpha": 0.5} if model_facts(name).family == "mobilenetv2" else {}


def _smallest_per_family_and_variant():
    chosen = {}
    for name in list_models():  # natural order: the shallowest first
        facts = model_facts(name)
        chosen.setdefault((facts.family, facts.variant), name)
    return sorted(chosen.values())


def _smallest_xbn_per_family():
    """The XBN form, which holds both of a family's norms (BatchNorm and
    GroupNorm): what the export and the other backends check per family
    (GN+WS's own layer, WSConv2D, runs on JAX and PyTorch in
    tests/backend_check.py and is exported below on the smallest GN+WS model)."""
    return [name for name in _smallest_per_family_and_variant() if model_facts(name).variant == "xbn"]


@pytest.mark.parametrize("name", _smallest_per_family_and_variant())
def test_a_training_step_changes_every_trainable_weight(name):
    model = get_model(name, input_shape=(32, 32, 3), classes=10, **_kwargs(name))
    rng = np.random.default_rng(4)
    x = tf.constant(rng.uniform(0, 1, (4, 32, 32, 3)).astype("float32"))
    y = tf.constant(rng.integers(0, 10, 4))
    before = [np.array(v) for v in model.trainable_variables]
    optimizer = keras.optimizers.SGD(0.1)
    with tf.GradientTape() as tape:
        probabilities = model(x, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, probabilities))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply(grads, model.trainable_variables)
    assert np.isfinite(float(loss))
    unchanged = [
        v.path for v, old in zip(model.trainable_variables, before)
        if np.array_equal(np.array(v), old)
    ]
    assert not unchanged, f"{name}: a training step left {unchanged[:5]} unchanged"


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("name", _smallest_per_family_and_variant())
def test_mixed_precision_outputs_are_finite(name, policy):
    with dtype_policy(policy):
        model = get_model(name, input_shape=(32, 32, 3), classes=10, **_kwargs(name))
        x = np.random.default_rng(6).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
        for training in (True, False):
            out = np.asarray(tf.cast(model(x, training=training), tf.float32))
            assert out.shape == (2, 10) and np.all(np.isfinite(out))
    assert all(v.dtype == "float32" for v in model.weights)


@pytest.mark.parametrize("name", _smallest_xbn_per_family() + ["resnet20_gnws"])
def test_saved_model_export_answers_as_the_model(name, tmp_path):
    model = with_moving_statistics(get_model(
        name, input_shape=(32, 32, 3), classes=10, classifier_activation=None, **_kwargs(name)
    ), 7)
    facts = model_facts(name)
    path, info = export_model(
        model, tmp_path / "export", class_names=[f"c{i}" for i in range(10)],
        preprocessing=facts.preprocessing, model_name=name, log=lambda *a: None,
    )
    assert info["folded"] and info["model"] == name
    images = np.random.default_rng(8).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    from xbn.models.preprocessing import preprocess_images

    expected = np.asarray(model(preprocess_images(images, facts.preprocessing), training=False))
    served = tf.saved_model.load(str(path)).signatures["serving_default"](images=tf.constant(images))
    scale = max(1.0, np.abs(expected).max())
    assert np.abs(served["logits"].numpy() - expected).max() <= 1e-4 * scale
    np.testing.assert_array_equal(served["top_k_labels"].numpy()[:, 0].astype(str),
                                  np.array([f"c{i}" for i in expected.argmax(-1)]))


@pytest.fixture(scope="module")
def backend_cases(tmp_path_factory):
    """The smallest XBN model per family at 32x32, with random moving
    statistics, its weights, inputs and TensorFlow's outputs."""
    folder = tmp_path_factory.mktemp("backends")
    x = np.random.default_rng(9).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    np.save(folder / "inputs.npy", x)
    cases, expected = {}, {}
    for name in _smallest_xbn_per_family():
        kwargs = {"input_shape": [32, 32, 3], "classes": 10, **_kwargs(name)}
        model = with_moving_statistics(get_model(name, **{**kwargs, "input_shape": (32, 32, 3)}), 10)
        model.save_weights(folder / f"{name}.weights.h5")
        cases[name] = kwargs
        expected[name] = np.asarray(model(x, training=False))
    (folder / "cases.json").write_text(json.dumps(cases))
    return folder, expected


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends_compute_what_tensorflow_computes(backend, backend_cases):
    folder, expected = backend_cases
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu"}
    check = Path(__file__).with_name("zoo_backend_check.py")
    result = subprocess.run([sys.executable, str(check), str(folder)], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().splitlines()[-1] == f"ok {backend}"
    for name, want in expected.items():
        got = np.load(folder / f"{name}.npy")
        error = np.abs(got - want).max() / max(1.0, np.abs(want).max())
        assert error <= 1e-4, f"{name} on {backend}: off by {error:.2e} of the output scale"
