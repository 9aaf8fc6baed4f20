"""The shared test battery every xbn layer goes through (keras-hub style).

A layer's test module subclasses :class:`LayerBattery`, sets ``layer_cls``,
``init_kwargs`` and ``input_shape``, and inherits one test per promise made
for all layers:

- ``get_config`` -> ``from_config`` round trip, same outputs;
- a model using the layer saves to ``.keras`` and reloads, with identical
  outputs and no ``custom_objects``;
- training inside ``model.fit`` on a ``tf.data`` pipeline;
- ``jit_compile=True`` gives the outputs of eager execution;
- a ``tf.function`` with an unknown batch size, traced once, serves two
  different batch sizes;
- ``mixed_float16`` and ``mixed_bfloat16``: compute-dtype outputs, float32
  variables, finite values, and a training step.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import dtype_policy


class LayerBattery:
    """Base class; see the module docstring."""

    layer_cls = None
    init_kwargs = {}
    input_shape = (8, 8, 16)  # one sample, no batch axis
    batch_size = 4

    # -- helpers -----------------------------------------------------------
    def make_layer(self, **overrides):
        return self.layer_cls(**{**self.init_kwargs, **overrides})

    def make_model(self, layer=None):
        inputs = keras.Input(self.input_shape)
        x = (layer or self.make_layer())(inputs)
        x = keras.layers.Flatten()(x)
        outputs = keras.layers.Dense(3)(x)
        return keras.Model(inputs, outputs)

    def data(self, n=None, seed=0):
        rng = np.random.default_rng(seed)
        n = n or self.batch_size
        x = rng.normal(0.5, 2.0, (n, *self.input_shape)).astype("float32")
        y = rng.integers(0, 3, n)
        return x, y

    def trained_model(self):
        """A model whose layer has non-initial weights (one fit epoch)."""
        model = self.make_model()
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        x, y = self.data(16)
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        return model

    # -- the battery -------------------------------------------------------
    def test_config_round_trip(self):
        layer = self.make_layer(name="under_test")
        x, _ = self.data()
        expected = np.asarray(layer(x))
        config = layer.get_config()
        clone = self.layer_cls.from_config(config)
        assert clone.get_config() == config
        clone.build(x.shape)
        clone.set_weights(layer.get_weights())
        np.testing.assert_array_equal(np.asarray(clone(x)), expected)

    def test_keras_file_round_trip(self, tmp_path):
        model = self.trained_model()
        x, _ = self.data(seed=1)
        path = tmp_path / "model.keras"
        model.save(path)
        restored = keras.saving.load_model(path)
        assert type(restored.layers[1]) is self.layer_cls
        for a, b in zip(model.get_weights(), restored.get_weights()):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(
            np.asarray(model(x, training=False)), np.asarray(restored(x, training=False))
        )

    def test_fit_on_tf_data(self):
        model = self.make_model()
        model.compile(
            keras.optimizers.SGD(0.05),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        x, y = self.data(32)
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
        before = [np.array(w) for w in model.layers[1].trainable_weights]
        history = model.fit(dataset, epochs=2, verbose=0)
        assert np.all(np.isfinite(history.history["loss"]))
        after = model.layers[1].trainable_weights
        assert before, "the layer under test has no trainable weights"
        assert any(not np.array_equal(b, np.asarray(a)) for b, a in zip(before, after))

    def test_jit_compile_matches_eager(self):
        model = self.trained_model()
        layer = model.layers[1]
        x, y = self.data(8, seed=2)
        eager = np.asarray(layer(x, training=False))
        compiled = tf.function(lambda t: layer(t, training=False), jit_compile=True)
        # XLA may reorder sums: agreement to 1e-5 of the output's scale.
        scale = max(1.0, np.abs(eager).max())
        np.testing.assert_allclose(np.asarray(compiled(x)), eager, rtol=0, atol=1e-5 * scale)
        # A training step under XLA as well.
        model.compile(
            "sgd",
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=True,
        )
        loss = model.train_on_batch(x, y)
        assert np.isfinite(loss)

    def test_tf_function_unknown_batch(self):
        layer = self.make_layer()
        layer.build((None, *self.input_shape))  # variables exist before tracing
        spec = tf.TensorSpec((None, *self.input_shape), tf.float32)
        traces = []

        @tf.function(input_signature=[spec])
        def run(t):
            traces.append(1)
            return layer(t, training=True) if _has_training(layer) else layer(t)

        for n in (2, 5):
            x, _ = self.data(n)
            y = run(x)
            assert y.shape[0] == n
            assert np.all(np.isfinite(np.asarray(y)))
        assert len(traces) == 1

    @pytest.mark.parametrize(
        "policy, compute", [("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")]
    )
    def test_mixed_precision(self, policy, compute):
        with dtype_policy(policy):
            model = self.make_model()
            layer = model.layers[1]
            assert all(w.dtype == "float32" for w in layer.weights)
            x, y = self.data(8)
            out = layer(x, training=True) if _has_training(layer) else layer(x)
            assert keras.backend.standardize_dtype(out.dtype) == compute
            assert np.all(np.isfinite(np.asarray(out, dtype="float32")))
            model.compile(
                "sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            )
            history = model.fit(x, y, epochs=1, verbose=0)
            assert np.isfinite(history.history["loss"][0])


def _has_training(layer):
    import inspect

    return "training" in inspect.signature(layer.call).parameters
