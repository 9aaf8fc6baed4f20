"""Feature backbones (issue 39): ``features_only=True`` on every family gives
the full model's intermediate activations, keyed as keras-hub's
``pyramid_outputs``, with timm's ``feature_info``, at any input size."""

import keras
import numpy as np
import pytest
from conftest import with_moving_statistics

from xbn.models import get_model, list_models, model_facts, transfer_weights

# One model of every family and variant kind, at a size their strides divide.
CASES = [
    ("resnet18", {}, ["P2", "P3", "P4", "P5"], [4, 8, 16, 32]),
    ("resnet50_xbn", {}, ["P2", "P3", "P4", "P5"], [4, 8, 16, 32]),
    ("resnext50_32x4d", {}, ["P2", "P3", "P4", "P5"], [4, 8, 16, 32]),
    ("resnet20_gnws", {}, ["P0", "P1", "P2"], [1, 2, 4]),
    ("mobilenetv2_xbn", {"alpha": 0.35}, ["P1", "P2", "P3", "P4", "P5"], [2, 4, 8, 16, 32]),
    ("shufflenetv2", {"alpha": 0.5, "layout": "torchvision"}, ["P2", "P3", "P4", "P5"], [4, 8, 16, 32]),
]


@pytest.mark.parametrize("name, kwargs, keys, strides", CASES, ids=[c[0] for c in CASES])
def test_feature_maps_are_the_full_models_activations(name, kwargs, keys, strides):
    keras.utils.set_random_seed(0)
    full = with_moving_statistics(get_model(name, input_shape=(96, 64, 3), classes=7, **kwargs))
    features = get_model(name, features_only=True, **kwargs)
    assert features.input_shape == (None, None, None, 3)  # any size
    report = transfer_weights(full, features)  # weights load into it by name
    assert not report.left_initial and report.unused == ["predictions"]
    info = features.feature_info
    assert [f["name"] for f in info] == keys and [f["stride"] for f in info] == strides
    probe = keras.Model(full.input, [full.get_layer(f["layer"]).output for f in info])
    x = np.random.default_rng(1).normal(0, 1, (2, 96, 64, 3)).astype("float32")
    want = probe(x, training=False)
    got = features(x, training=False)
    assert list(got) == keys
    for f, expected in zip(info, want):
        assert got[f["name"]].shape == (2, 96 // f["stride"], 64 // f["stride"], f["channels"])
        np.testing.assert_allclose(np.asarray(got[f["name"]]), np.asarray(expected), rtol=1e-5, atol=1e-5)


def test_every_family_and_form_builds_as_a_backbone():
    """Every builder takes ``features_only`` (the registry test holds every
    signature to it); the shallowest model of each family and form builds."""
    chosen = {}
    for name in list_models():  # natural order: the shallowest first
        facts = model_facts(name)
        chosen.setdefault((facts.family, facts.variant), name)
    for name in chosen.values():
        kwargs = model_facts(name).small_args
        model = get_model(name, features_only=True, input_shape=(64, 64, 3), **kwargs)
        info = model.feature_info
        assert info and info[-1]["stride"] == (4 if model_facts(name).family == "resnet_cifar" else 32), name
        assert [f["name"] for f in info] == sorted(model.output, key=lambda k: int(k[1:])), name


def test_a_saved_backbone_keeps_its_maps_and_arguments(tmp_path):
    model = get_model("resnet20_xbn", features_only=True, xbn_groups=8)
    path = tmp_path / "backbone.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.feature_info == model.feature_info
    assert loaded.xbn_args["xbn_groups"] == 8 and loaded.xbn_args["features_only"] is True
    x = np.random.default_rng(2).normal(0, 1, (1, 40, 24, 3)).astype("float32")
    for key in model.output:
        np.testing.assert_array_equal(np.asarray(loaded(x)[key]), np.asarray(model(x)[key]))
