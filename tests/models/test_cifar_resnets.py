"""The CIFAR ResNets of He et al. (2016, section 4.2) and their XBN and GN+WS forms."""

import keras
import numpy as np
import pytest

from xbn.layers import GroupNorm, WSConv2D
from xbn.layers.norms import is_batch_norm
from xbn.models import get_model, list_models, model_facts
from xbn.models.blocks import PadShortcut

# He et al.'s table 6 gives 0.27M, 0.46M, 0.66M, 0.85M and 1.7M parameters;
# the exact trainable counts with 10 classes and option-A shortcuts:
PARAMETERS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_the_family_is_registered_in_three_forms():
    names = list_models(family="resnet_cifar")
    assert names == [f"resnet{d}{v}" for d in PARAMETERS for v in ("", "_gnws", "_xbn")]
    for name in names:
        facts = model_facts(name)
        assert (facts.default_size, facts.preprocessing) == (32, "torch")


@pytest.mark.parametrize("depth", PARAMETERS)
def test_depth_and_parameters_are_the_papers(depth):
    model = get_model(f"resnet{depth}", input_shape=(32, 32, 3), classes=10)
    assert _trainable(model) == PARAMETERS[depth]
    norms = [layer for layer in model.layers if is_batch_norm(layer)]
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    # 6n+2 weighted layers: 6n+1 convs (no projection shortcut) and the classifier.
    assert len(convs) + 1 == depth and len(norms) == depth - 1
    assert not any(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers)
    # Option A: the two downsampling shortcuts pad channels, nothing is learned there.
    assert sum(isinstance(layer, PadShortcut) for layer in model.layers) == 2
    # Stages at 32, 16 and 8 pixels, 16, 32 and 64 channels.
    shapes = {layer.name.split("_")[0]: layer.output.shape[1:] for layer in model.layers
              if layer.name.endswith("_out")}
    assert (shapes["conv2"], shapes["conv3"], shapes["conv4"]) == ((32, 32, 16), (16, 16, 32), (8, 8, 64))


def test_xbn_puts_a_group_norm_after_each_blocks_first_conv_and_in_the_stem():
    model = get_model("resnet56_xbn", input_shape=(32, 32, 3), classes=10)
    group_norms = [layer.name for layer in model.layers if isinstance(layer, GroupNorm)]
    assert group_norms[0] == "conv1_gn" and len(group_norms) == 1 + 27
    assert all(name.endswith("_1_gn") for name in group_norms[1:])
    assert sum(is_batch_norm(layer) for layer in model.layers) == 27  # each block's second norm
    assert _trainable(model) == PARAMETERS[56]  # GroupNorm has BatchNorm's affine weights


def test_gnws_is_batch_free():
    model = get_model("resnet20_gnws", input_shape=(32, 32, 3), classes=10)
    assert not any(is_batch_norm(layer) for layer in model.layers)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(isinstance(layer, WSConv2D) for layer in convs)
