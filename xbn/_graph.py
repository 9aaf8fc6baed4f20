"""The one place that reads keras' private graph bookkeeping.

A functional keras model records, per layer, the calls that built the graph
(``layer._inbound_nodes``: one node per call, with its input tensors) and,
per tensor, the operation that made it (``tensor._keras_history``).  keras
has no public API for walking that graph, and these attributes have moved
between keras versions before, so folding, surgery and the BN statistics
ask this module, and ``tests/test_graph.py`` names the keras version when
it stops answering.
"""

import keras


def call_count(layer):
    """How many times ``layer`` is called in the graphs it belongs to
    (more than once: a shared layer)."""
    return len(getattr(layer, "_inbound_nodes", ()))


def producer(tensor):
    """The layer (operation) whose output ``tensor`` is."""
    return tensor._keras_history.operation


def input_layer(layer):
    """The layer whose output is the first input of ``layer``'s first call,
    or ``None`` (an input layer, or a layer never called)."""
    nodes = getattr(layer, "_inbound_nodes", ())
    if not nodes or not nodes[0].input_tensors:
        return None
    return producer(nodes[0].input_tensors[0])


def consumers(model):
    """``{layer name: [layers taking its output]}`` inside ``model``."""
    found = {layer.name: [] for layer in model.layers}
    for layer in model.layers:
        for node in getattr(layer, "_inbound_nodes", ()):
            for tensor in node.input_tensors:
                found.setdefault(producer(tensor).name, []).append(layer)
    return found


def output_layer_names(model):
    """Names of the layers whose outputs are ``model``'s outputs."""
    return {producer(tensor).name for tensor in keras.tree.flatten(model.outputs)}


def is_functional(model):
    """Whether ``model`` is a functional keras model (``keras.Model(inputs,
    outputs)``, or a subclass keras built the same way, such as the zoo's)."""
    return any(cls.__name__ == "Functional" for cls in type(model).__mro__)
