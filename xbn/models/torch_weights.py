"""PyTorch checkpoints into xbn models: the official XBNBlock code's, torchvision's and timm's.

The official XBNBlock code (github.com/huangleiBuaa/XBNBlock) publishes the
only trained XBN weights there are, as PyTorch checkpoints of its ResNet and
ResNeXt; torchvision's ResNets name their tensors the same way.  Both load
into xbn's models built with ``layout="torchvision"`` (stride on the 3x3
conv, convolutions without bias, BatchNorm epsilon 1e-5), whose weight
shapes equal theirs.

Names map module by module::

    conv1 / bn1                        conv1_conv / conv1_bn (conv1_gn in XBN)
    layer{S}.{B}.conv{K} / .bn{K}      conv{S+1}_block{B+1}_{K}_conv / _{K}_bn (or _gn)
    layer{S}.{B}.downsample.0 / .1     conv{S+1}_block{B+1}_0_conv / _0_bn
    fc (linear in CIFAR ResNet code)   predictions

the official ShuffleNetV2's (Megvii's layout) ``first_conv``,
``features.{I}.branch_main/branch_proj.{J}``, ``conv_last`` and
``classifier`` to ``stem_*``, ``stage{S}_unit{U}_main_*/proj_*``, ``last_*``
and ``predictions``; torchvision's ShuffleNetV2 (``layout="torchvision"``)
``conv1``, ``stage{S}.{I}.branch2/branch1.{J}``, ``conv5`` and ``fc`` to the
same; torchvision's MobileNetV2 (``layout="torchvision"``) ``features.0``,
``features.{N}.conv.{J}``, ``features.18`` and ``classifier.1`` to
keras.applications' names (``Conv1``, ``block_{N-1}_expand/depthwise/project``,
``Conv_1``, ``predictions``).  A BatchNorm's name is its keras.applications
name; in XBN and GN+WS forms the GroupNorm at that place takes it (``_gn``,
``_GN``, ``gn_``).  Tensors by kind: convolution kernels from PyTorch's ``(out, in/groups,
h, w)`` to keras' ``(h, w, in/groups, out)`` (depthwise ones to ``(h, w,
channels, 1)``), the classifier's transposed,
BatchNorm's ``weight, bias, running_mean, running_var`` to ``gamma, beta,
moving_mean, moving_variance`` and GroupNorm's ``weight, bias`` to ``gamma,
beta``.  ``num_batches_tracked`` carries nothing keras keeps.

PyTorch is imported only to read a checkpoint file (``pip install
'xbn[torch]'``); a state dict of NumPy arrays needs no PyTorch at all.
"""

import dataclasses
import os
import re
from pathlib import Path

import numpy as np

from xbn.errors import UsageError

# The families whose PyTorch names this module maps (see _LAYER_NAMES below).
FAMILIES = ("resnet", "resnext", "resnet_cifar", "shufflenetv2", "mobilenetv2")
_KERAS_NAMES = {
    "weight": ("kernel", "gamma"),
    "bias": ("bias", "beta"),
    "running_mean": ("moving_mean",),
    "running_var": ("moving_variance",),
}


@dataclasses.dataclass
class TorchLoadReport:
    """What :func:`load_torch_weights` did.

    Attributes:
        loaded: ``{keras weight path: checkpoint tensor name}``.
        unused: checkpoint tensors no weight of the model took.
        missing: model weights no checkpoint tensor set (they keep their
            initial values).
        mismatched: ``{keras weight path: reason}`` where names matched and
            shapes did not.
    """

    loaded: dict
    unused: list
    missing: list
    mismatched: dict

    @property
    def complete(self):
        return not (self.unused or self.missing or self.mismatched)

    def summary(self):
        parts = [f"{len(self.loaded)} tensors loaded"]
        for what, items in (("unused", self.unused), ("missing", self.missing),
                            ("mismatched", list(self.mismatched))):
            if items:
                parts.append(f"{len(items)} {what} ({_shown(items)})")
        return "; ".join(parts)


def _shown(items, most=8):
    more = f" and {len(items) - most} more" if len(items) > most else ""
    return ", ".join(items[:most]) + more


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _read_file(path):
    """The state of a checkpoint file, or one line saying what is wrong with the file."""
    where = f"load_torch_weights: {path}"
    if path.is_dir():
        raise UsageError(f"{where} is a folder, not a checkpoint file; name the .pth/.pt/.safetensors file in it.")
    if not path.is_file():
        raise FileNotFoundError(f"{where}: no such file.")
    size = path.stat().st_size
    if size == 0:
        raise UsageError(f"{where} is empty (0 bytes): the save or the copy did not finish; fetch it again.")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if path.suffix == ".safetensors":
        try:
            from safetensors.numpy import load_file
        except ImportError:
            raise ImportError(
                "load_torch_weights: reading a .safetensors file needs the safetensors package; install it "
                "with pip install 'xbn[torch]'."
            ) from None
        try:
            return load_file(str(path))
        except Exception as error:  # noqa: BLE001 - the library's errors are not typed
            raise UsageError(f"{where} is not a readable safetensors file ({_first_line(error)}).") from None
    try:
        import torch
    except ImportError:
        raise ImportError(
            "load_torch_weights: reading a PyTorch checkpoint file needs PyTorch; install it with "
            "pip install 'xbn[torch]' (or pass a state dict of NumPy arrays)."
        ) from None
    import zipfile

    if head.startswith(b"PK") and not zipfile.is_zipfile(path):
        raise UsageError(f"{where} is damaged or truncated: it starts as torch.save's zip archive but its end "
                         f"is missing ({size:,} bytes); fetch or save it again.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - unpickling errors have many types
        text = _ANSI.sub("", str(error))
        if "Unsupported global" in text or "can still be loaded" in text:
            raise UsageError(
                f"{where} holds pickled Python objects, not only tensors (a whole model saved with "
                "torch.save(model)?), which are not loaded unseen. If you trust the file, load it in the code "
                "that defines the model and save model.state_dict() instead."
            ) from None
        reason = "not a torch.save file" if "invalid load key" in text else _first_line(error)
        raise UsageError(f"{where} is not a PyTorch checkpoint of tensors ({reason}).") from None


def _first_line(error):
    """An error's first line, without terminal colour codes, at most 200 characters."""
    text = _ANSI.sub("", str(error)).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def read_torch_state(checkpoint):
    """``{tensor name: numpy array}`` of a PyTorch checkpoint.

    Args:
        checkpoint: a ``.pth``/``.pt`` path (``torch.load`` with
            ``weights_only``), a ``.safetensors`` path (no PyTorch needed),
            or a state dict (tensors or arrays).  A checkpoint of a training script, ``{"state_dict":
            ...}`` or ``{"model": ...}``, is unwrapped, and DataParallel's
            ``module.`` prefix removed.
    """
    state = checkpoint
    if isinstance(checkpoint, (str, os.PathLike)):
        state = _read_file(Path(checkpoint).expanduser())
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state:
        raise UsageError(
            "load_torch_weights: expected a state dict ({name: tensor}) or a checkpoint holding one under "
            f"'state_dict' or 'model'; got {type(state).__name__}."
        )
    arrays = {}
    for name, value in state.items():
        name = name[len("module."):] if name.startswith("module.") else name
        if name.endswith("num_batches_tracked"):
            continue
        if hasattr(value, "detach"):
            value = value.detach().cpu().float().numpy()
        arrays[name] = np.asarray(value)
    return arrays


def _resnet_layer(module, config=None):
    """The keras layer name of a PyTorch ResNet module (a norm by its BatchNorm name)."""
    if module in ("conv1", "bn1"):
        return "conv1_conv" if module == "conv1" else "conv1_bn"
    if module in ("fc", "linear"):  # torchvision / CIFAR ResNet code
        return "predictions"
    match = re.fullmatch(r"layer(\d+)\.(\d+)\.(conv|bn)(\d+)", module)
    if match:
        stage, block, kind, index = match.groups()
        return f"conv{int(stage) + 1}_block{int(block) + 1}_{index}_{'conv' if kind == 'conv' else 'bn'}"
    match = re.fullmatch(r"layer(\d+)\.(\d+)\.downsample\.([01])", module)
    if match:
        stage, block, index = match.groups()
        return f"conv{int(stage) + 1}_block{int(block) + 1}_0_{'conv' if index == '0' else 'bn'}"
    return None


# ShuffleNetV2 (Megvii's layout, the official code's): the modules of a
# unit's branches by their index in the nn.Sequential.
# torchvision's branch2 and branch1 hold the same modules at the same indices.
_SHUFFLE_BRANCHES = {
    ("branch_main", "0"): "main_1_conv", ("branch_main", "1"): "main_1_bn",
    ("branch_main", "3"): "main_dw_conv", ("branch_main", "4"): "main_dw_bn",
    ("branch_main", "5"): "main_2_conv", ("branch_main", "6"): "main_2_bn",
    ("branch_proj", "0"): "proj_dw_conv", ("branch_proj", "1"): "proj_dw_bn",
    ("branch_proj", "2"): "proj_1_conv", ("branch_proj", "3"): "proj_1_bn",
}
_TORCHVISION_BRANCHES = {"branch2": "branch_main", "branch1": "branch_proj"}


def _shufflenet_layer(module, config):
    """The keras layer name of a module of the official ShuffleNetV2 or torchvision's
    (``config``: the model's ``ShuffleNetV2Config``, for its units per stage)."""
    fixed = {"first_conv.0": "stem_conv", "first_conv.1": "stem_bn", "conv_last.0": "last_conv",
             "conv_last.1": "last_bn", "classifier.0": "predictions",
             "conv1.0": "stem_conv", "conv1.1": "stem_bn", "conv5.0": "last_conv", "conv5.1": "last_bn",
             "fc": "predictions"}
    if module in fixed:
        return fixed[module]
    match = re.fullmatch(r"stage(\d)\.(\d+)\.(branch[12])\.(\d+)", module)
    if match:
        stage, unit, branch, index = match.groups()
        part = _SHUFFLE_BRANCHES.get((_TORCHVISION_BRANCHES[branch], index))
        return part and f"stage{stage}_unit{int(unit) + 1}_{part}"
    match = re.fullmatch(r"features\.(\d+)\.(branch_main|branch_proj)\.(\d+)", module)
    if not match or (match.group(2), match.group(3)) not in _SHUFFLE_BRANCHES:
        return None
    index = int(match.group(1))
    for stage, repeats in enumerate(config.repeats):
        if index < repeats:
            return f"stage{stage + 2}_unit{index + 1}_{_SHUFFLE_BRANCHES[match.group(2), match.group(3)]}"
        index -= repeats
    return None


# torchvision's MobileNetV2 blocks: (index in features.N.conv) -> keras suffix;
# block 0 (features.1) has no expansion.
_MOBILENET_FIRST = {"0.0": "depthwise", "0.1": "depthwise_BN", "1": "project", "2": "project_BN"}
_MOBILENET_BLOCK = {"0.0": "expand", "0.1": "expand_BN", "1.0": "depthwise", "1.1": "depthwise_BN",
                    "2": "project", "3": "project_BN"}


def _mobilenet_layer(module, config):
    """The keras layer name of a module of torchvision's MobileNetV2
    (``config``: the model's ``MobileNetV2Config``, for its blocks)."""
    blocks = len(config.blocks)
    last = blocks + 1
    fixed = {"features.0.0": "Conv1", "features.0.1": "bn_Conv1", f"features.{last}.0": "Conv_1",
             f"features.{last}.1": "Conv_1_bn", "classifier.1": "predictions"}
    if module in fixed:
        return fixed[module]
    match = re.fullmatch(r"features\.(\d+)\.conv\.(\d(?:\.\d)?)", module)
    if not match or not 1 <= int(match.group(1)) <= blocks:
        return None
    block, part = int(match.group(1)) - 1, match.group(2)
    if block == 0:
        return f"expanded_conv_{_MOBILENET_FIRST[part]}" if part in _MOBILENET_FIRST else None
    return f"block_{block}_{_MOBILENET_BLOCK[part]}" if part in _MOBILENET_BLOCK else None


_LAYER_NAMES = {"resnet": _resnet_layer, "resnext": _resnet_layer, "resnet_cifar": _resnet_layer,
                "shufflenetv2": _shufflenet_layer, "mobilenetv2": _mobilenet_layer}


def _to_keras(array, keras_name, layer):
    """A PyTorch tensor in keras' layout for ``layer``'s weight ``keras_name``."""
    import keras

    if keras_name == "kernel" and isinstance(layer, keras.layers.DepthwiseConv2D):
        return array.transpose(2, 3, 0, 1)  # (C * m, 1, h, w) -> (h, w, C, m) for m = 1
    if keras_name == "kernel" and array.ndim == 4:
        return array.transpose(2, 3, 1, 0)  # (out, in/groups, h, w) -> (h, w, in/groups, out)
    if keras_name == "kernel" and array.ndim == 2:
        return array.T  # Linear (out, in) -> Dense (in, out)
    return array


def load_torch_weights(model, checkpoint, strict=True):
    """Load a PyTorch checkpoint of the official XBNBlock code or torchvision into ``model``.

    Args:
        model: an xbn ResNet, ResNeXt, CIFAR ResNet, ShuffleNetV2 or
            MobileNetV2 (vanilla, XBN or GN+WS), ResNets and MobileNetV2
            built with ``layout="torchvision"``, ShuffleNetV2 in the
            checkpoint's layout, with the checkpoint's
            number of classes (or ``include_top=False``, which leaves ``fc``
            unused).
        checkpoint: a ``.pth``/``.pt`` file or a state dict (see
            :func:`read_torch_state`).
        strict: refuse (``ValueError``, nothing changed) unless every
            checkpoint tensor is used and every model weight is set.

    Returns:
        A :class:`TorchLoadReport`.
    """
    from xbn.layers.norms import gn_name
    from xbn.models.registry import model_facts, registration

    facts = model_facts(model)
    if facts.family not in FAMILIES:
        raise UsageError(
            f"load_torch_weights: {facts.name} is a {facts.family} model; PyTorch names are mapped for the "
            f"{', '.join(FAMILIES)} families."
        )
    state = read_torch_state(checkpoint)
    config = registration(facts.name)[2]
    layers = {layer.name: layer for layer in model.layers}
    targets = {}  # weight path -> (variable, array, tensor name)
    unused, mismatched = [], {}
    for name, array in state.items():
        module, _, param = name.rpartition(".")
        layer_name = _LAYER_NAMES[facts.family](module, config)
        if layer_name and layer_name not in layers:  # a GroupNorm at a BatchNorm's place
            layer_name = gn_name(layer_name)
        layer = layers.get(layer_name)
        variable = None
        if layer is not None:
            variable = next((getattr(layer, k) for k in _KERAS_NAMES.get(param, ())
                             if getattr(layer, k, None) is not None), None)
        if variable is None:
            unused.append(name)
            continue
        value = _to_keras(array, variable.name, layer)
        if tuple(value.shape) != tuple(variable.shape):
            mismatched[variable.path] = f"{name} has shape {array.shape} (keras {tuple(value.shape)}), " \
                                        f"the model {tuple(variable.shape)}"
            continue
        targets[variable.path] = (variable, value, name)
    missing = [w.path for w in model.weights if w.path not in targets and w.path not in mismatched]
    report = TorchLoadReport({path: t[2] for path, t in targets.items()}, unused, missing, mismatched)
    if strict and not report.complete:
        raise UsageError(f"load_torch_weights: the checkpoint does not fit {facts.name}: {report.summary()}. "
                         f"{_likely_cause(report, model)} Nothing was loaded.")
    for variable, value, _ in targets.values():
        variable.assign(value.astype(variable.dtype))
    return report


def _likely_cause(report, model):
    """A guess at why a checkpoint does not fit, for the error message."""
    if any(path.endswith("_conv/bias") for path in report.missing):
        return "The model's convolutions have biases: build it with layout=\"torchvision\"."
    widths = [text for path, text in report.mismatched.items() if path.startswith("predictions/")]
    others = [path for path in report.mismatched if not path.startswith("predictions/")]
    if widths and not others and len(report.unused) <= len(report.loaded):
        return "The classifiers differ in width: build the model with classes= the checkpoint's."
    if any(name.startswith("fc.") for name in report.unused) and not any(
        layer.name == "predictions" for layer in model.layers
    ):
        return "The model has no top (include_top=False): pass strict=False to leave fc out."
    if report.mismatched or len(report.unused) > len(report.loaded):
        return "It looks like another model (depth, width, groups or family)."
    return "Check that the model and its XBN/GN+WS form are the checkpoint's."


# The classifier's weight in each layout's checkpoints (torchvision, the
# CIFAR ResNet code, the official ShuffleNetV2, torchvision's MobileNetV2).
CLASSIFIERS = ("fc.weight", "linear.weight", "classifier.0.weight", "classifier.1.weight")


def _layout_of(state, family):
    """The layout a checkpoint's names are in: the official ShuffleNetV2's
    (``first_conv``, ``features.N.branch_main``) or torchvision's."""
    if family == "shufflenetv2" and any(k.startswith(("first_conv.", "conv_last.")) for k in state):
        return "official"
    return "torchvision"


def model_from_torch(name, checkpoint, image_size=None, model_args=None, strict=True):
    """The registered model ``name`` built to fit a PyTorch checkpoint, with its weights.

    The number of classes comes from the checkpoint's classifier (``fc``,
    ``linear``, ``classifier.0`` or ``classifier.1``), the layout is the
    checkpoint's (``"torchvision"``, or ``"official"`` for the official
    ShuffleNetV2's names) unless ``model_args`` says otherwise, the input
    side is ``image_size`` or the model's default.

    Returns:
        ``(model, report)``: the keras model (softmax top, as keras.applications'
        builders) and the :class:`TorchLoadReport`.
    """
    import inspect

    from xbn.models.registry import check_arguments, get_builder, get_model, model_facts

    facts = model_facts(name)
    model_args = dict(model_args or {})
    check_arguments(name, model_args, exclude=("input_shape", "classes", "weights"), flag="`model_args`")
    state = read_torch_state(checkpoint)
    if "layout" in inspect.signature(get_builder(name)).parameters:
        model_args.setdefault("layout", _layout_of(state, facts.family))
    classifier = next((state[k] for k in CLASSIFIERS if k in state), None)
    if classifier is None and model_args.get("include_top", True):
        raise UsageError(
            f"model_from_torch: the checkpoint has no classifier (fc.weight); pass include_top=False "
            f"to convert {name}'s features."
        )
    size = image_size or facts.default_size
    kwargs = {"input_shape": (size, size, 3), **model_args}
    if classifier is not None and model_args.get("include_top", True):
        kwargs["classes"] = int(classifier.shape[0])
    else:  # features only: the classifier has no place
        state = {k: v for k, v in state.items() if not k.startswith(("fc.", "linear.", "classifier."))}
    model = get_model(name, **kwargs)
    report = load_torch_weights(model, state, strict=strict)
    return model, report
