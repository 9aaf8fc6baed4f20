"""ShuffleNetV2 in the official XBNBlock code's layout, its XBN and GN+WS forms,
and the official checkpoints' names (reference: tests/models/torch_shufflenet.py)."""

import keras
import numpy as np
import pytest
import torch
from torch_shufflenet import reference

from xbn.layers import GroupNorm
from xbn.layers.norms import is_batch_norm
from xbn.models import get_model, list_models, load_torch_weights

# The official models' trainable parameters with 1000 classes.
OFFICIAL = {0.5: 1_365_792, 1.0: 2_278_760, 1.5: 3_506_720, 2.0: 7_402_600}


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_registered_in_three_forms():
    assert list_models(family="shufflenetv2") == ["shufflenetv2", "shufflenetv2_gnws", "shufflenetv2_xbn"]


@pytest.mark.parametrize("alpha", OFFICIAL)
def test_parameters_are_the_official_models(alpha):
    for name in ("shufflenetv2", "shufflenetv2_xbn"):  # GroupNorm has BatchNorm's affine weights
        assert _trainable(get_model(name, alpha=alpha)) == OFFICIAL[alpha]


def test_xbn_puts_a_group_norm_after_every_depthwise_conv_and_nowhere_else():
    model = get_model("shufflenetv2_xbn", alpha=1.0)
    depthwise = [layer for layer in model.layers if isinstance(layer, keras.layers.DepthwiseConv2D)]
    group_norms = [layer for layer in model.layers if isinstance(layer, GroupNorm)]
    assert len(depthwise) == len(group_norms) == 16 + 3  # one per unit, and the 3 projection branches
    for conv in depthwise:
        assert isinstance(model.get_layer(conv.name.replace("_conv", "_gn")), GroupNorm)
    # 29 groups (the official 1.0x script) where 29 divides the channels, else the largest divisor.
    assert {layer.groups for layer in group_norms if layer.gamma.shape[0] % 29 == 0} == {29}
    half = get_model("shufflenetv2_xbn", alpha=0.5)
    assert {layer.groups for layer in half.layers if isinstance(layer, GroupNorm)} == {24}
    assert sum(is_batch_norm(layer) for layer in model.layers) == 2 + 2 * 16 + 3


def test_unknown_widths_are_refused():
    with pytest.raises(ValueError, match="alpha` must be one of 0.5, 1.0, 1.5, 2.0"):
        get_model("shufflenetv2", alpha=0.75)


@pytest.mark.parametrize("xbn", [False, True], ids=["vanilla", "xbn"])
def test_official_checkpoints_answer_as_pytorch(xbn):
    torch_model = reference(0.5, num_classes=10, xbn=xbn)
    model = get_model("shufflenetv2_xbn" if xbn else "shufflenetv2", alpha=0.5, input_shape=(64, 64, 3),
                      classes=10, classifier_activation=None)
    state = {f"module.{k}": v for k, v in torch_model.state_dict().items()}
    report = load_torch_weights(model, {"model": state})
    assert report.complete and len(report.loaded) == len(model.weights)
    x = np.random.default_rng(0).normal(0, 1, (2, 64, 64, 3)).astype("float32")
    with torch.no_grad():
        want = torch_model(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    got = np.asarray(model(x, training=False), np.float64)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
