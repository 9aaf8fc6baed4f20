"""The extension points: the norm table, block types, the variants' rules
and the official XBNBlock models built from them."""

import keras
import numpy as np
import pytest

from xbn.layers import BatchNorm, GroupNorm
from xbn.layers.norms import NormSpec, is_batch_norm, make_norm, norm_kinds, register_norm
from xbn.models import get_model, list_models, model_facts
from xbn.models.blocks import BASIC, BOTTLENECK, PadShortcut
from xbn.models.registry import twin


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# The official XBNBlock code's and torchvision's trainable parameters (1000 classes).
OFFICIAL = [
    ("resnet18", {}, 11_689_512),
    ("resnet18_xbn", {}, 11_689_512),
    ("resnet34", {}, 21_797_672),
    ("resnet50_xbn", {"layout": "torchvision"}, 25_557_032),
    ("resnet101_xbn", {"layout": "torchvision"}, 44_549_160),
    ("resnext101_32x8d", {}, 88_791_336),
]


@pytest.mark.parametrize("name, kwargs, count", OFFICIAL)
def test_trainable_parameters_equal_the_official_models(name, kwargs, count):
    model = get_model(name, include_top=True, **kwargs)
    assert _trainable(model) == count


def test_torchvision_layout_is_torchs():
    model = get_model("resnet50", layout="torchvision", include_top=False, input_shape=(64, 64, 3))
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and not any(c.use_bias for c in convs)
    bns = [layer for layer in model.layers if isinstance(layer, BatchNorm)]
    assert {(b.epsilon, b.momentum) for b in bns} == {(1e-5, 0.9)}
    # The stride sits on the 3x3 conv.
    assert model.get_layer("conv3_block1_2_conv").strides == (2, 2)
    assert model.get_layer("conv3_block1_1_conv").strides == (1, 1)
    keras_layout = get_model("resnet50", include_top=False, input_shape=(64, 64, 3))
    assert keras_layout.get_layer("conv3_block1_1_conv").strides == (2, 2)


def test_basic_block_xbn_puts_groupnorm_after_the_first_3x3_and_in_the_stem():
    model = get_model("resnet18_xbn", include_top=False, input_shape=(64, 64, 3))
    gns = {layer.name for layer in model.layers if isinstance(layer, GroupNorm)}
    assert gns == {"conv1_gn"} | {f"conv{s}_block{b}_1_gn" for s in (2, 3, 4, 5) for b in (1, 2)}
    assert BASIC.xbn_role == "p1" and BOTTLENECK.xbn_role == "p2"
    # 64 groups, capped at the channels.
    assert model.get_layer("conv2_block1_1_gn").groups == 64


def test_norm_kinds_and_their_batch_statistics():
    assert {"bn", "brn", "gn", "none"} <= set(norm_kinds())
    assert is_batch_norm(make_norm(NormSpec("bn"), 8, "x_bn"))
    renorm = make_norm(NormSpec("brn", renorm_momentum=0.9), 8, "y_bn")
    assert is_batch_norm(renorm) and renorm.renorm and renorm.renorm_momentum == 0.9
    assert not is_batch_norm(make_norm(NormSpec("gn", groups=4), 8, "z_bn"))
    assert isinstance(make_norm(NormSpec("none"), 8, "w_bn"), keras.layers.Identity)
    assert is_batch_norm(keras.layers.BatchNormalization())
    with pytest.raises(ValueError, match="the norm kind 'gn' takes no option 'momentum'; its options are"):
        NormSpec("gn", momentum=0.9)
    with pytest.raises(ValueError, match="`kind` must be one of"):
        NormSpec("ln")
    with pytest.raises(ValueError, match="already registered"):
        register_norm("bn", None, options={}, batch_statistics=True, layer_class=BatchNorm)


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2_xbn"])
def test_bn_kind_and_options_reach_every_batchnorm_position(name):
    kwargs = model_facts(name).small_args
    base = get_model(name, include_top=False, input_shape=(32, 32, 3), **kwargs)
    renorm = get_model(name, include_top=False, input_shape=(32, 32, 3), bn_kind="brn",
                       bn_options={"momentum": 0.5, "renorm_clipping": {"rmax": 2.0}}, **kwargs)
    none = get_model(name, include_top=False, input_shape=(32, 32, 3), bn_kind="none", **kwargs)
    bns = [layer for layer in renorm.layers if is_batch_norm(layer)]
    assert len(bns) == sum(is_batch_norm(layer) for layer in base.layers) > 0
    assert all(layer.renorm and layer.momentum == 0.5 and layer.renorm_clipping["rmax"] == 2.0 for layer in bns)
    assert not any(is_batch_norm(layer) for layer in none.layers)
    # GroupNorms of the XBN rule stay.
    assert sum(isinstance(layer, GroupNorm) for layer in none.layers) == sum(
        isinstance(layer, GroupNorm) for layer in base.layers
    )
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    assert np.all(np.isfinite(np.asarray(renorm(x, training=True))))


def test_twins_come_from_the_registry():
    assert twin("resnet50", "xbn") == "resnet50_xbn"
    assert twin("resnet101", "gnws") is None
    assert model_facts("resnet50").keras_application == "ResNet50"
    assert model_facts("resnet18").keras_application is None
    assert "resnet18_gnws" in list_models(family="resnet", variant="gnws")


def test_pad_shortcut_is_option_a():
    x = np.arange(2 * 4 * 4 * 3, dtype="float32").reshape(2, 4, 4, 3)
    out = np.asarray(PadShortcut(5, 2)(x))
    assert out.shape == (2, 2, 2, 8)
    np.testing.assert_array_equal(out[..., 2:5], x[:, ::2, ::2, :])
    assert not out[..., :2].any() and not out[..., 5:].any()
    layer = PadShortcut.from_config(PadShortcut(5, 2).get_config())
    assert (layer.extra, layer.stride) == (5, 2)
