"""xbn._graph, the one reader of keras' private graph bookkeeping, on a
small functional model whose graph is known: when keras moves
``_inbound_nodes`` or ``_keras_history``, this fails first and names the
keras version."""

import keras

from xbn import _graph

WHERE = f"keras {keras.__version__} moved its graph bookkeeping; update xbn/_graph.py"


def _model():
    inputs = keras.Input((8, 8, 3), name="image")
    conv = keras.layers.Conv2D(4, 3, name="conv")
    x = conv(inputs)
    y = keras.layers.BatchNormalization(name="bn")(x)
    shared = keras.layers.ReLU(name="relu")
    a, b = shared(y), shared(x)
    out = keras.layers.Add(name="add")([a, b])
    return keras.Model(inputs, [out, x], name="walk")


def test_calls_producers_and_consumers_of_a_known_graph():
    model = _model()
    layers = {layer.name: layer for layer in model.layers}
    assert _graph.call_count(layers["bn"]) == 1, WHERE
    assert _graph.call_count(layers["relu"]) == 2, WHERE
    assert _graph.input_layer(layers["bn"]) is layers["conv"], WHERE
    assert _graph.input_layer(layers["conv"]).name == "image", WHERE
    assert _graph.input_layer(layers["image"]) is None, WHERE
    consumers = _graph.consumers(model)
    assert sorted(layer.name for layer in consumers["conv"]) == ["bn", "relu"], WHERE
    assert [layer.name for layer in consumers["relu"]] == ["add", "add"], WHERE
    assert consumers["add"] == [], WHERE
    assert _graph.output_layer_names(model) == {"add", "conv"}, WHERE
    assert _graph.producer(model.outputs[0]) is layers["add"], WHERE
