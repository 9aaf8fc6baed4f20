"""Where the GroupNorms go in each XBN and GN+WS configuration."""

import warnings

import keras
import numpy as np
import pytest

from xbn.layers import BatchNorm, Conv2D, GroupNorm, WSConv2D
from xbn.models import (
    mobilenetv2,
    mobilenetv2_gnws,
    mobilenetv2_xbn,
    resnet50,
    resnet50_gnws,
    resnet50_xbn,
    resnext50_32x4d,
    resnext50_32x4d_xbn,
    transfer_weights,
)
from xbn.models.mobilenet_v2 import BLOCKS

SHAPE = (64, 64, 3)
RESNET50_BLOCKS = {"conv2": 3, "conv3": 4, "conv4": 6, "conv5": 3}
BOTTLENECK_WIDTH = {"conv2": 64, "conv3": 128, "conv4": 256, "conv5": 512}


def _blocks():
    for stage, count in RESNET50_BLOCKS.items():
        for block in range(1, count + 1):
            yield stage, f"{stage}_block{block}"


def _norms(model):
    return {layer.name: layer for layer in model.layers if isinstance(layer, (BatchNorm, GroupNorm))}


@pytest.fixture(scope="module")
def vanilla():
    return resnet50(input_shape=SHAPE, include_top=False)


@pytest.mark.parametrize(
    "position, suffix, width",
    [("p1", "1", 1), ("p2", "2", 1), ("p3", "3", 4)],
)
def test_resnet50_xbn_positions(position, suffix, width):
    model = resnet50_xbn(input_shape=SHAPE, include_top=False, xbn_position=position)
    norms = _norms(model)
    expected_gn = {"conv1_gn"} | {f"{b}_{suffix}_gn" for _, b in _blocks()}
    assert {n for n, layer in norms.items() if isinstance(layer, GroupNorm)} == expected_gn
    for stage, block in _blocks():
        gn = norms[f"{block}_{suffix}_gn"]
        channels = BOTTLENECK_WIDTH[stage] * width
        assert gn.get_config()["groups"] == min(64, channels)
        assert gn.epsilon == 1e-5
        # The other positions and the shortcut keep their keras names and BN.
        for other in {"1", "2", "3"} - {suffix}:
            assert isinstance(norms[f"{block}_{other}_bn"], BatchNorm)
        if block.endswith("block1"):
            assert isinstance(norms[f"{block}_0_bn"], BatchNorm)
    assert norms["conv1_gn"].get_config()["groups"] == 64
    assert len([layer for layer in norms.values() if isinstance(layer, GroupNorm)]) == 17


def test_seed_004_variant_is_32_groups_and_a_bn_stem():
    model = resnet50_xbn(input_shape=SHAPE, include_top=False, xbn_groups=32, stem_norm="bn")
    norms = _norms(model)
    assert isinstance(norms["conv1_bn"], BatchNorm)
    gns = [layer for layer in norms.values() if isinstance(layer, GroupNorm)]
    assert len(gns) == 16
    assert {layer.get_config()["groups"] for layer in gns} == {32}


def test_xbn_trainable_count_equals_vanilla_and_shared_weights_transfer(vanilla):
    model = resnet50_xbn(input_shape=SHAPE, include_top=False)
    def count(m):
        return sum(int(np.prod(w.shape)) for w in m.trainable_weights)

    assert count(model) == count(vanilla)
    report = transfer_weights(vanilla, model)
    assert sorted(report.left_initial) == sorted(
        n for n, layer in _norms(model).items() if isinstance(layer, GroupNorm)
    )


def test_resnet50_gnws_is_group_norm_and_weight_standardization_throughout():
    model = resnet50_gnws(input_shape=SHAPE, include_top=False)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 53
    assert all(isinstance(layer, WSConv2D) for layer in convs)
    norms = _norms(model)
    assert len(norms) == 53
    assert all(isinstance(layer, GroupNorm) and layer.get_config()["groups"] == 32 for layer in norms.values())


def test_gnws_group_count_is_an_argument():
    model = resnet50_gnws(input_shape=SHAPE, include_top=False, gn_groups=16)
    assert {layer.get_config()["groups"] for layer in _norms(model).values()} == {16}
    with pytest.raises(ValueError, match="resnet50_gnws: argument `gn_groups` must be an integer >= 1"):
        resnet50_gnws(input_shape=SHAPE, include_top=False, gn_groups=0)


def test_mobilenetv2_gnws_warns_where_32_groups_degenerate_and_fewer_do_not():
    """alpha 0.35 at 32x32: block 13's 56 channels at 1x1 pixel in 28 groups."""
    with pytest.warns(UserWarning, match="'block_13_project_GN': each group normalizes only 2 value"):
        mobilenetv2_gnws(input_shape=(32, 32, 3), alpha=0.35, classes=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = mobilenetv2_gnws(input_shape=(32, 32, 3), alpha=0.35, classes=10, gn_groups=8)
    assert model.get_layer("block_13_project_GN").get_config()["groups"] == 8
    assert max(layer.get_config()["groups"] for layer in _norms(model).values()) == 8


def test_vanilla_convs_take_the_fast_input_gradient_except_the_strided_stem():
    model = resnet50(input_shape=SHAPE, include_top=False)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 53 and all(isinstance(layer, Conv2D) for layer in convs)
    assert [layer.name for layer in convs if not layer.fast_input_gradient] == ["conv1_conv"]  # 7x7, stride 2


def test_resnext_puts_the_group_norm_after_the_grouped_3x3_conv():
    vanilla_x = resnext50_32x4d(input_shape=SHAPE, include_top=False)
    model = resnext50_32x4d_xbn(input_shape=SHAPE, include_top=False)
    conv = model.get_layer("conv2_block1_2_conv")
    assert conv.groups == 32 and conv.filters == 128 and conv.strides == (1, 1)
    assert model.get_layer("conv3_block1_2_conv").strides == (2, 2)
    assert model.get_layer("conv3_block1_1_conv").strides == (1, 1)
    assert not conv.use_bias
    for _, block in _blocks():
        assert isinstance(model.get_layer(f"{block}_2_gn"), GroupNorm)
    def count(m):
        return sum(int(np.prod(w.shape)) for w in m.trainable_weights)

    assert count(model) == count(vanilla_x)


def _depthwise_channels(alpha):
    """Channel count at each depthwise conv of MobileNetV2 (keras' rule)."""
    from xbn.models.mobilenet_v2 import make_divisible

    channels = [make_divisible(32 * alpha, 8)]
    in_channels = channels[0]
    for block_id, (expansion, filters, _) in enumerate(BLOCKS):
        depthwise = in_channels * (expansion if block_id else 1)
        channels.append(depthwise)
        in_channels = make_divisible(int(filters * alpha), 8)
    return channels[1:]


def test_mobilenetv2_xbn_positions_and_group_fallback():
    with pytest.warns(UserWarning, match="16 groups do not divide the channels") as caught:
        model = mobilenetv2_xbn(input_shape=SHAPE, include_top=False, alpha=0.75)
    assert len([w for w in caught if "groups do not divide" in str(w.message)]) == 1
    norms = _norms(model)
    gns = {n: layer for n, layer in norms.items() if isinstance(layer, GroupNorm)}
    expected = ["expanded_conv_depthwise_GN"] + [f"block_{i}_depthwise_GN" for i in range(1, 17)]
    assert sorted(gns) == sorted(expected)
    for name, channels in zip(expected, _depthwise_channels(0.75)):
        groups = gns[name].get_config()["groups"]
        assert channels % groups == 0
        assert groups == max(g for g in range(1, 17) if channels % g == 0)
    # alpha=0.75: the first depthwise conv has 24 channels, 16 do not divide them.
    assert _depthwise_channels(0.75)[0] == 24
    assert gns["expanded_conv_depthwise_GN"].get_config()["groups"] == 12
    assert gns["expanded_conv_depthwise_GN"].get_config()["requested_groups"] == 16
    bn_names = {"bn_Conv1", "Conv_1_bn"} | {f"block_{i}_expand_BN" for i in range(1, 17)}
    bn_names |= {"expanded_conv_project_BN"} | {f"block_{i}_project_BN" for i in range(1, 17)}
    assert {n for n, layer in norms.items() if isinstance(layer, BatchNorm)} == bn_names


def test_mobilenetv2_gnws():
    model = mobilenetv2_gnws(input_shape=SHAPE, include_top=False, alpha=0.35)
    assert all(isinstance(layer, GroupNorm) for layer in _norms(model).values())
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(isinstance(layer, WSConv2D) for layer in convs)


@pytest.mark.parametrize("alpha", [0.1, 0.35, 0.6, 0.75, 1.0, 1.4])
def test_every_alpha_builds_and_trains(alpha):
    """Odd widths (0.6), the 24-channel fallback (0.75), a widened head (1.4)."""
    import tensorflow as tf

    model = mobilenetv2_xbn(input_shape=(32, 32, 3), alpha=alpha, classes=3)
    twin = mobilenetv2(input_shape=(32, 32, 3), alpha=alpha, classes=3)
    def count(m):
        return sum(int(np.prod(w.shape)) for w in m.trainable_weights)

    assert count(model) == count(twin)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (4, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 3, 4)
    before = [np.array(w) for w in model.trainable_weights]
    with tf.GradientTape() as tape:
        loss = keras.losses.sparse_categorical_crossentropy(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_weights)
    assert all(g is not None and np.all(np.isfinite(g)) for g in grads)
    keras.optimizers.SGD(0.1).apply(grads, model.trainable_weights)
    changed = [not np.array_equal(b, np.asarray(w)) for b, w in zip(before, model.trainable_weights)]
    assert all(changed)


def test_a_group_count_that_divides_nothing_warns_once_and_is_recorded(tmp_path):
    """resnet50_xbn(xbn_groups=7) built every GroupNorm with 4 groups and said nothing."""
    with pytest.warns(UserWarning) as caught:
        model = resnet50_xbn(input_shape=(64, 64, 3), include_top=False, xbn_groups=7)
    messages = [str(w.message) for w in caught if "groups do not divide" in str(w.message)]
    assert messages == ["resnet50_xbn: 7 groups do not divide the channels of some GroupNorms, which use the "
                        "largest divisor not above 7 instead: 4 groups at 64 channels, 4 groups at 128 channels, "
                        "4 groups at 256 channels, 4 groups at 512 channels. Their configs record both (groups, "
                        "requested_groups); ask for a group count that divides the channels to avoid this."]
    gns = [layer for layer in model.layers if isinstance(layer, GroupNorm)]
    assert {(g.groups, g.requested_groups) for g in gns} == {(4, 7)}
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    assert {layer.get_config().get("requested_groups") for layer in again.layers if isinstance(layer, GroupNorm)} == {7}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # dividing counts, and counts capped at the channels, are silent
        resnet50_xbn(input_shape=(64, 64, 3), include_top=False)
