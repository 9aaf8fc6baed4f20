"""torchvision's ShuffleNetV2 and MobileNetV2 checkpoints load by their own
names and answer as PyTorch does (references written with torchvision's
names and layouts: tests/models/torch_torchvision.py)."""

import keras
import numpy as np
import pytest
import torch
import torch_shufflenet
import torch_torchvision

from xbn.models import get_model, load_torch_weights, model_from_torch

SIZE = 64


def _agree(model, torch_model, seed=0):
    """The largest difference of the logits, relative to the largest logit."""
    x = np.random.default_rng(seed).normal(0, 1, (2, SIZE, SIZE, 3)).astype("float32")
    with torch.no_grad():
        want = torch_model(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    got = np.asarray(model(x, training=False), np.float64)
    return float(np.abs(got - want).max() / np.abs(want).max())


# 1.0x is where the layouts' first stride-2 unit differs (58 + 58 channels
# against the official 24 + 92); 0.5x covers the XBN form.
@pytest.mark.parametrize("alpha, xbn", [(0.5, False), (0.5, True), (1.0, False)],
                         ids=["0.5-vanilla", "0.5-xbn", "1.0-vanilla"])
def test_torchvision_shufflenet_v2_loads_by_its_names(alpha, xbn):
    torch_model = torch_torchvision.shufflenet(alpha, num_classes=10, xbn=xbn)
    state = torch_model.state_dict()
    assert "stage2.0.branch1.0.weight" in state and "conv5.1.running_var" in state and "fc.bias" in state
    name = "shufflenetv2_xbn" if xbn else "shufflenetv2"
    model, report = model_from_torch(name, state, image_size=SIZE,
                                     model_args={"alpha": alpha, "classifier_activation": None})
    assert report.complete and len(report.loaded) == len(model.weights)
    assert model.get_layer("stage2_unit2_shuffle") is not None  # the torchvision layout was chosen
    assert _agree(model, torch_model) <= 1e-5


@pytest.mark.parametrize("xbn", [False, True], ids=["vanilla", "xbn"])
def test_torchvision_mobilenet_v2_loads_by_its_names(xbn):
    torch_model = torch_torchvision.mobilenet(0.35, num_classes=10, xbn=xbn)
    state = torch_model.state_dict()
    assert "features.1.conv.0.0.weight" in state and "features.18.1.running_mean" in state
    name = "mobilenetv2_xbn" if xbn else "mobilenetv2"
    model, report = model_from_torch(name, state, image_size=SIZE,
                                     model_args={"alpha": 0.35, "classifier_activation": None})
    assert report.complete and len(report.loaded) == len(model.weights)
    assert _agree(model, torch_model) <= 1e-5


def test_the_layouts_differ_where_torchvision_differs():
    """keras' padding of a stride-2 conv (bottom and right) is not
    torchvision's: the same weights in the keras layout answer otherwise,
    so the layout matters; official ShuffleNetV2 names still choose the
    official layout."""
    torch_model = torch_torchvision.mobilenet(0.35, num_classes=10)
    keras_layout = get_model("mobilenetv2", alpha=0.35, input_shape=(SIZE, SIZE, 3), classes=10,
                             classifier_activation=None)
    report = load_torch_weights(keras_layout, torch_model.state_dict())
    assert report.complete
    right, _ = model_from_torch("mobilenetv2", torch_model.state_dict(), image_size=SIZE,
                                model_args={"alpha": 0.35, "classifier_activation": None})
    # Only the border pixels of four stride-2 convs and the epsilon differ,
    # which average pooling dilutes: 7e-4 here, against float32's 1e-6.
    assert _agree(keras_layout, torch_model) > 100 * _agree(right, torch_model)
    official = torch_shufflenet.reference(0.5, num_classes=10)
    model, report = model_from_torch("shufflenetv2", official.state_dict(), image_size=SIZE,
                                     model_args={"alpha": 0.5, "classifier_activation": None})
    assert report.complete and not any(layer.name.endswith("_shuffle") for layer in model.layers)
    assert _agree(model, official) <= 1e-5


def test_a_torchvision_shufflenet_survives_a_keras_file(tmp_path):
    model = get_model("shufflenetv2_xbn", alpha=0.5, input_shape=(SIZE, SIZE, 3), classes=10, layout="torchvision")
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(1).normal(0, 1, (1, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(again(x, training=False)), np.asarray(model(x, training=False)))


def test_an_unknown_layout_is_refused_in_the_callers_words():
    with pytest.raises(ValueError, match="layout"):
        get_model("shufflenetv2", layout="megvii")
    with pytest.raises(ValueError, match="layout"):
        get_model("mobilenetv2", layout="tf")
