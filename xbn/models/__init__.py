"""The xbn model zoo: ResNet, ResNeXt, the CIFAR ResNets, MobileNetV2 and
ShuffleNetV2, each in vanilla, XBN and GN+WS form, with trained weights by name.

>>> from xbn.models import resnet50_xbn, list_models
>>> "resnet50_xbn" in list_models()
True

Every builder takes the ``keras.applications`` signature (``include_top,
weights, input_tensor, input_shape, pooling, classes,
classifier_activation, name``; MobileNetV2 starts with ``input_shape,
alpha``) in the same meaning, and ``features_only=True`` for a feature
backbone.  ``weights`` is ``None``, a weights name (``"imagenet"``,
``"torchvision"``, ...: :func:`list_weights`) or a file on disk.  Vanilla
models are layer for layer ``keras.applications``' own, so weights move
between them, and into the XBN twins for every layer they share, by name
(:func:`load_weights`, :func:`transfer_weights`).

The builders are imported here by name, so that editors, type checkers and
``help(xbn.models)`` see them; ``tests/models/test_registry_and_args.py``
checks that this list is exactly the registry.
"""

from xbn.models.loading import load_model
from xbn.models.mobilenet_v2 import (
    mobilenetv2,
    mobilenetv2_gnws,
    mobilenetv2_xbn,
)
from xbn.models.preprocessing import preprocess_input
from xbn.models.pretrained import (
    WeightsEntry,
    decode_predictions,
    imagenet_class_names,
    list_weights,
    register_weights,
    unregister_weights,
)
from xbn.models.registry import (
    ModelFacts,
    get_builder,
    get_model,
    list_models,
    model_facts,
    register_model,
)
from xbn.models.resnet import (
    resnet18,
    resnet18_gnws,
    resnet18_xbn,
    resnet20,
    resnet20_gnws,
    resnet20_xbn,
    resnet32,
    resnet32_gnws,
    resnet32_xbn,
    resnet34,
    resnet34_gnws,
    resnet34_xbn,
    resnet44,
    resnet44_gnws,
    resnet44_xbn,
    resnet50,
    resnet50_gnws,
    resnet50_xbn,
    resnet56,
    resnet56_gnws,
    resnet56_xbn,
    resnet101,
    resnet101_xbn,
    resnet110,
    resnet110_gnws,
    resnet110_xbn,
    resnet152,
    resnet152_xbn,
    resnext50_32x4d,
    resnext50_32x4d_xbn,
    resnext101_32x8d,
    resnext101_32x8d_xbn,
)
from xbn.models.shufflenet_v2 import (
    shufflenetv2,
    shufflenetv2_gnws,
    shufflenetv2_xbn,
)
from xbn.models.torch_weights import TorchLoadReport, load_torch_weights, model_from_torch
from xbn.models.weights import TransferReport, load_weights, read_weights, transfer_weights

# The modules that register the zoo's families (one line per family).
FAMILY_MODULES = ("xbn.models.resnet", "xbn.models.mobilenet_v2", "xbn.models.shufflenet_v2")

__all__ = [
    "FAMILY_MODULES",
    "ModelFacts",
    "TorchLoadReport",
    "TransferReport",
    "WeightsEntry",
    "decode_predictions",
    "get_builder",
    "get_model",
    "imagenet_class_names",
    "list_models",
    "list_weights",
    "load_model",
    "load_torch_weights",
    "load_weights",
    "model_facts",
    "model_from_torch",
    "preprocess_input",
    "read_weights",
    "register_model",
    "register_weights",
    "transfer_weights",
    "unregister_weights",
    "resnet18",
    "resnet18_xbn",
    "resnet18_gnws",
    "resnet34",
    "resnet34_xbn",
    "resnet34_gnws",
    "resnet50",
    "resnet50_xbn",
    "resnet50_gnws",
    "resnet101",
    "resnet101_xbn",
    "resnet152",
    "resnet152_xbn",
    "resnext50_32x4d",
    "resnext50_32x4d_xbn",
    "resnext101_32x8d",
    "resnext101_32x8d_xbn",
    "resnet20",
    "resnet20_xbn",
    "resnet20_gnws",
    "resnet32",
    "resnet32_xbn",
    "resnet32_gnws",
    "resnet44",
    "resnet44_xbn",
    "resnet44_gnws",
    "resnet56",
    "resnet56_xbn",
    "resnet56_gnws",
    "resnet110",
    "resnet110_xbn",
    "resnet110_gnws",
    "mobilenetv2",
    "mobilenetv2_xbn",
    "mobilenetv2_gnws",
    "shufflenetv2",
    "shufflenetv2_xbn",
    "shufflenetv2_gnws",
]
