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
"""

from xbn.models.mobilenet_v2 import mobilenetv2, mobilenetv2_gnws, mobilenetv2_xbn
from xbn.models.preprocessing import preprocess_input
from xbn.models.registry import ModelFacts, get_model, list_models, model_facts
from xbn.models.resnet import (
    resnet50,
    resnet50_gnws,
    resnet50_xbn,
    resnet101,
    resnet101_xbn,
    resnet152,
    resnet152_xbn,
    resnext50_32x4d,
    resnext50_32x4d_xbn,
)
from xbn.models.weights import TransferReport, load_weights, read_weights, transfer_weights

__all__ = [
    "ModelFacts",
    "TransferReport",
    "get_model",
    "list_models",
    "load_weights",
    "mobilenetv2",
    "mobilenetv2_gnws",
    "mobilenetv2_xbn",
    "model_facts",
    "preprocess_input",
    "read_weights",
    "resnet50",
    "resnet50_gnws",
    "resnet50_xbn",
    "resnet101",
    "resnet101_xbn",
    "resnet152",
    "resnet152_xbn",
    "resnext50_32x4d",
    "resnext50_32x4d_xbn",
    "transfer_weights",
]
