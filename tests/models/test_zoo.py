"""The model battery: every registered model goes through it (a model is
covered by registering it; keras-hub's ``run_backbone_test``).

Per model, built once at 64x64: training and inference forward passes.
Per family, variant and layout (:func:`representatives`: the smallest depth
of each; the depths of a family are rows of one table, built by the same
blocks and layers): a ``.keras`` round trip, BatchNorm folding equal to the
model in inference, and the headless network's pooling.  Per family and
variant: see ``test_zoo_variants.py``.
"""

import keras
import numpy as np
import pytest
from conftest import with_moving_statistics

from xbn.fold import fold_batchnorm
from xbn.layers.norms import is_batch_norm
from xbn.models import get_model, list_models, model_facts

SIZE = 64


def _kwargs(name):
    # MobileNetV2 at alpha 0.5: wide enough that no GroupNorm gets 1 channel.
    return {"alpha": 0.5} if model_facts(name).family == "mobilenetv2" else {}


def representatives():
    """The first registered model of each family, variant and layout (told
    apart by preprocessing: ResNet-50/101/152 default to keras' layout,
    ResNet-18/34 to torchvision's): ``resnet18``, ``resnet50``, ``resnet20``,
    ``resnext50_32x4d``, ``mobilenetv2``, ``shufflenetv2`` and their forms."""
    chosen = {}
    for name in list_models():
        facts = model_facts(name)
        chosen.setdefault((facts.family, facts.variant, facts.preprocessing), name)
    return sorted(chosen.values())


def _topped(name):
    # Seeded: the battery's checks hold for one fixed initialization, not
    # for whatever draw a run gets (an unseeded ResNet-110 once gave two
    # images the same answer to 1e-7 in training mode).
    keras.utils.set_random_seed(0)
    return name, get_model(name, input_shape=(SIZE, SIZE, 3), classes=10, **_kwargs(name))


@pytest.fixture(scope="module", params=list_models())
def topped(request):
    """Each registered model at 64x64 with a 10-class top, built once."""
    return _topped(request.param)


@pytest.fixture(scope="module", params=representatives())
def representative(request):
    """Each of :func:`representatives` at 64x64 with a 10-class top, built once."""
    return _topped(request.param)


def test_every_family_variant_and_layout_is_represented():
    chosen = representatives()
    families = {(model_facts(n).family, model_facts(n).variant) for n in list_models()}
    assert {(model_facts(n).family, model_facts(n).variant) for n in chosen} == families
    assert {"resnet18", "resnet50", "resnet50_xbn", "resnet20_gnws", "shufflenetv2_xbn"} <= set(chosen)


def test_forward_in_training_and_inference_mode(topped):
    name, model = topped
    x = np.random.default_rng(0).uniform(0, 1, (2, SIZE, SIZE, 3)).astype("float32")
    train = np.asarray(model(x, training=True))
    infer = np.asarray(model(x, training=False))
    for out in (train, infer):
        assert out.shape == (2, 10)
        assert np.all(np.isfinite(out))
    # The network sees its input: two images, two different answers (a
    # degenerate normalization would give the same for both).  In training
    # mode: with untrained moving statistics an inference pass of
    # MobileNetV2 saturates every ReLU6 at 6.
    assert np.abs(train[0] - train[1]).max() > 1e-6
    assert model.name == name
    assert model.xbn_facts == model_facts(name)
    if model_facts(name).variant == "gnws":
        # Batch-free throughout: training and inference compute the same.
        np.testing.assert_allclose(train, infer, atol=1e-6)
    else:
        # Batch statistics in training, moving statistics in inference.
        assert np.abs(train - infer).max() > 1e-4


def test_keras_file_round_trip(representative, tmp_path):
    name, model = representative
    path = tmp_path / f"{name}.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    x = np.random.default_rng(1).uniform(0, 1, (2, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_array_equal(
        np.asarray(model(x, training=False)), np.asarray(restored(x, training=False))
    )
    # The facts follow the name through the file.
    assert model_facts(restored) == model_facts(name)


def test_batchnorm_folds_into_an_equal_inference_model(representative):
    name, model = representative
    folded, report = fold_batchnorm(with_moving_statistics(model, seed=5))
    x = np.random.default_rng(5).uniform(0, 1, (2, SIZE, SIZE, 3)).astype("float32")
    a = np.asarray(model(x, training=False))
    b = np.asarray(folded(x, training=False))
    assert np.abs(a - b).max() <= 1e-4 * max(np.abs(a).max(), 1e-3)
    assert not any(is_batch_norm(layer) for layer in folded.layers) or report.kept


FEATURES = {"resnet": 2048, "resnext": 2048, "mobilenetv2": 1280, "resnet_cifar": 64, "shufflenetv2": 1024}
BASIC_FEATURES = 512  # ResNet-18/34: basic blocks keep the stage width


@pytest.mark.parametrize("name", representatives())
def test_headless_with_pooling(name):
    """pooling="avg" ends the headless network with the spatial mean of its
    last feature map, of the family's width, at any input size."""
    facts = model_facts(name)
    model = get_model(name, include_top=False, pooling="avg", **facts.small_args)
    assert model.input_shape == (None, None, None, 3)
    x = np.random.default_rng(2).uniform(0, 1, (2, 80, 96, 3)).astype("float32")
    pooled = np.asarray(model(x, training=False))
    features = np.asarray(keras.Model(model.inputs, model.layers[-2].output)(x, training=False))
    width = BASIC_FEATURES if name.startswith(("resnet18", "resnet34")) else FEATURES[facts.family]
    assert pooled.shape == (2, width) and features.shape[1] * features.shape[2] > 1
    np.testing.assert_allclose(pooled, features.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)


def test_max_pooling_takes_the_spatial_maximum():
    model = get_model("mobilenetv2_xbn", include_top=False, pooling="max", alpha=0.35)
    x = np.random.default_rng(3).uniform(0, 1, (1, 64, 64, 3)).astype("float32")
    features = np.asarray(keras.Model(model.inputs, model.layers[-2].output)(x, training=False))
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), features.max(axis=(1, 2)))




def test_facts_travel_in_the_config_under_any_name(tmp_path):
    """The registered name is kept where keras keeps a model's configuration,
    so a model built with ``name=`` keeps its facts through a ``.keras`` file
    (before: an attribute the round trip dropped, and a lookup by name)."""
    model = get_model("resnet20_xbn", input_shape=(16, 16, 3), classes=10, name="my_net")
    assert model.get_config()["xbn_model"] == "resnet20_xbn"
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert restored.name == "my_net" and restored.get_config()["xbn_model"] == "resnet20_xbn"
    assert model_facts(restored) == model_facts("resnet20_xbn")


def test_a_file_of_a_model_no_longer_registered_still_loads(tmp_path):
    """A model registered by an extension (here the tests' tiny network)
    loads where that registration is absent, without facts."""
    import tiny

    with tiny.registered():
        model = get_model("tiny_xbn", input_shape=(32, 32, 3), classes=3)
        model.save(tmp_path / "t.keras")
    restored = keras.saving.load_model(tmp_path / "t.keras")
    assert restored.get_config()["xbn_model"] == "tiny_xbn" and not hasattr(restored, "xbn_facts")
    x = np.random.default_rng(3).uniform(0, 1, (1, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(restored(x, training=False)), np.asarray(model(x, training=False)))
