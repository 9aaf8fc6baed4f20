"""The xbn model zoo: ResNet, ResNeXt and MobileNetV2 in vanilla, XBN and GN+WS form.

>>> from xbn.models import resnet50_xbn, list_models
>>> "resnet50_xbn" in list_models()
True

Every builder takes the ``keras.applications`` signature (``include_top,
weights, input_tensor, input_shape, pooling, classes,
classifier_activation, name``; MobileNetV2 adds ``alpha``) in the same
meaning, except that ``weights`` is ``None`` or a path on disk.  Vanilla
models are layer for layer ``keras.applications``' own, so weights move
between them, and into the XBN twins for every layer they share, by name
(:func:`load_weights`, :func:`transfer_weights`).

The builders exported here are exactly the registered models: a family
module registers each with ``@register_model`` and is listed in
:data:`FAMILY_MODULES`; nothing else names them.
"""

import importlib

from xbn.models.loading import load_model
from xbn.models.preprocessing import preprocess_input
from xbn.models.registry import (
    ModelFacts,
    get_builder,
    get_model,
    list_models,
    model_facts,
    register_model,
)
from xbn.models.torch_weights import TorchLoadReport, load_torch_weights, model_from_torch
from xbn.models.weights import TransferReport, load_weights, read_weights, transfer_weights

# The modules that register the zoo's families (one line per family).
FAMILY_MODULES = ("xbn.models.resnet", "xbn.models.mobilenet_v2", "xbn.models.shufflenet_v2")
for _module in FAMILY_MODULES:
    importlib.import_module(_module)

_BUILDERS = {name: get_builder(name) for name in list_models()}
globals().update(_BUILDERS)

__all__ = sorted(
    [
        "FAMILY_MODULES",
        "ModelFacts",
        "TorchLoadReport",
        "TransferReport",
        "get_model",
        "list_models",
        "model_from_torch",
        "load_model",
        "load_torch_weights",
        "load_weights",
        "model_facts",
        "preprocess_input",
        "read_weights",
        "register_model",
        "transfer_weights",
        *_BUILDERS,
    ]
)
