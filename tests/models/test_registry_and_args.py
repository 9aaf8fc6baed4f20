"""The registry, model facts, preprocessing, and builder argument checks."""

import keras
import numpy as np
import pytest
from keras.applications import imagenet_utils

from xbn.layers.norms import gn_name, resolve_groups
from xbn.models import (
    get_builder,
    get_model,
    list_models,
    mobilenetv2,
    mobilenetv2_xbn,
    model_facts,
    preprocess_input,
    resnet50_xbn,
)
from xbn.models.summary import count_macs

EXPECTED = {
    "resnet18", "resnet18_xbn", "resnet18_gnws", "resnet34", "resnet34_xbn", "resnet34_gnws",
    "resnet50", "resnet50_xbn", "resnet50_gnws", "resnet101", "resnet101_xbn",
    "resnet152", "resnet152_xbn", "resnext50_32x4d", "resnext50_32x4d_xbn",
    "resnext101_32x8d", "resnext101_32x8d_xbn",
    "mobilenetv2", "mobilenetv2_xbn", "mobilenetv2_gnws",
    "shufflenetv2", "shufflenetv2_xbn", "shufflenetv2_gnws",
    *(f"resnet{depth}{form}" for depth in (20, 32, 44, 56, 110) for form in ("", "_xbn", "_gnws")),
}


def test_registry_lists_every_model_in_natural_order():
    names = list_models()
    assert set(names) == EXPECTED
    assert names.index("resnet50") < names.index("resnet101") < names.index("resnet152")
    assert names.index("resnet20") < names.index("resnet56") < names.index("resnet110")


def test_from_xbn_models_import_resnet50_xbn_just_works():
    from xbn.models import resnet50_xbn as builder

    assert builder is resnet50_xbn
    assert builder.facts.variant == "xbn"


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError) as info:
        get_model("resnet51")
    assert "Unknown model 'resnet51'" in str(info.value)
    for name in EXPECTED:
        assert name in str(info.value)


@pytest.mark.parametrize(
    "name, mode, family",
    [("resnet50", "caffe", "resnet"), ("resnext50_32x4d_xbn", "torch", "resnext"),
     ("resnet18_xbn", "torch", "resnet"),
     ("mobilenetv2_xbn", "tf", "mobilenetv2")],
)
def test_facts(name, mode, family):
    facts = model_facts(name)
    assert (facts.preprocessing, facts.family, facts.default_size) == (mode, family, 224)


def test_facts_of_a_renamed_model_come_from_the_build():
    model = mobilenetv2(alpha=0.35, input_shape=(32, 32, 3), include_top=False, name="mine")
    assert model_facts(model).name == "mobilenetv2"
    stranger = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)], name="stranger")
    with pytest.raises(ValueError, match="'stranger' was not built by an xbn builder"):
        model_facts(stranger)


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_preprocessing_matches_keras_applications(mode):
    from xbn.models.preprocessing import preprocess_images

    x = np.random.default_rng(0).uniform(0, 255, (2, 5, 5, 3)).astype("float32")
    expected = imagenet_utils.preprocess_input(x.copy(), mode=mode)
    np.testing.assert_allclose(preprocess_images(x, mode), expected, rtol=1e-6, atol=1e-4)


def test_preprocess_input_by_name_and_by_model():
    x = np.full((1, 2, 2, 3), 255.0, "float32")
    np.testing.assert_allclose(preprocess_input("mobilenetv2_xbn", x), 1.0)
    model = mobilenetv2(alpha=0.35, input_shape=(32, 32, 3), include_top=False)
    np.testing.assert_allclose(preprocess_input(model, x), 1.0)
    bgr = preprocess_input("resnet50", x)
    np.testing.assert_allclose(bgr[0, 0, 0], [255 - 103.939, 255 - 116.779, 255 - 123.68], rtol=1e-6)


def test_group_resolution_and_names():
    assert [resolve_groups(16, c) for c in (16, 24, 40, 8, 7)] == [16, 12, 10, 8, 7]
    assert resolve_groups(64, 2048) == 64
    assert gn_name("conv2_block1_2_bn") == "conv2_block1_2_gn"
    assert gn_name("block_3_depthwise_BN") == "block_3_depthwise_GN"
    assert gn_name("bn_Conv1") == "gn_Conv1"


def test_resnet50_flops_are_keras_v1_figures():
    model = get_model("resnet50")
    assert count_macs(model) == pytest.approx(3.86e9, rel=0.01)


# -- bad arguments ---------------------------------------------------------------
BAD = [
    ({"input_shape": (31, 64, 3)}, ValueError, "at least 32 pixels"),
    ({"input_shape": (64, 64)}, ValueError, "tuple of three positive integers"),
    ({"input_shape": (None, None, 3)}, ValueError, "include_top=True needs a static input size"),
    ({"weights": "imagenet21k"}, FileNotFoundError, "`weights` 'imagenet21k' is neither a weights name of "
                                                    "mobilenetv2_xbn (it has no named weights) nor a file on disk"),
    ({"weights": "/no/such/file.h5"}, FileNotFoundError, "'/no/such/file.h5' is neither a weights name"),
    ({"weights": 3}, TypeError, "`weights` must be None, a weights name (it has no named weights) or the path"),
    ({"pooling": "mean"}, ValueError, "`pooling` must be one of None, 'avg', 'max'"),
    ({"classes": 0}, ValueError, "`classes` must be an integer >= 1"),
    ({"include_top": "yes"}, TypeError, "`include_top` must be True or False"),
    ({"classifier_activation": 3}, TypeError, "`classifier_activation`"),
]


@pytest.mark.parametrize("kwargs, error, message", BAD)
def test_bad_common_arguments(kwargs, error, message):
    with pytest.raises(error, match="mobilenetv2_xbn") as info:
        mobilenetv2_xbn(alpha=0.35, **kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"xbn_position": "p4"}, "`xbn_position` must be one of 'p1', 'p2', 'p3'"),
     ({"layout": "caffe"}, "`layout` must be one of 'keras', 'torchvision'"),
     ({"bn_kind": "ln"}, "`bn_kind` must be one of 'bn', 'brn', 'gn', 'none'"),
     ({"bn_options": {"groups": 2}}, "bn_options 'groups' is not an option of the norm kind 'bn'"),
     ({"stem_norm": "ln"}, "`stem_norm` must be one of 'gn', 'bn'"),
     ({"xbn_groups": 0}, "`xbn_groups` must be an integer >= 1")],
)
def test_bad_xbn_arguments(kwargs, message):
    with pytest.raises(ValueError, match="resnet50_xbn") as info:
        resnet50_xbn(include_top=False, **kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize("alpha", [0, -0.5])
def test_alpha_must_be_positive(alpha):
    with pytest.raises(ValueError, match="`alpha` must be a finite number > 0.0"):
        mobilenetv2(alpha=alpha)


def test_input_shape_and_input_tensor_must_agree():
    tensor = keras.Input((64, 64, 3))
    with pytest.raises(ValueError, match=r"\(96, 96, 3\) and the shape of `input_tensor` \(64, 64, 3\) disagree"):
        mobilenetv2(alpha=0.35, input_tensor=tensor, input_shape=(96, 96, 3))
    model = mobilenetv2(alpha=0.35, input_tensor=tensor, classes=4)
    assert model.input_shape == (None, 64, 64, 3)
    assert model.inputs[0] is tensor


def test_every_family_declares_its_models_one_way():
    """Issue 22: one public function per model whose signature editors see,
    keras.applications' arguments first and in keras' order (MobileNetV2's
    own order, which keras starts with ``input_shape, alpha``), then the
    width, the layout and the variant's own; the docstring set at
    registration, naming every argument."""
    import inspect

    from xbn.models import get_builder

    resnet = ["include_top", "weights", "input_tensor", "input_shape", "pooling", "classes",
              "classifier_activation", "name"]
    mobilenet = list(inspect.signature(keras.applications.MobileNetV2).parameters)
    assert mobilenet[:2] == ["input_shape", "alpha"]
    keras_resnet = list(inspect.signature(keras.applications.ResNet50).parameters)
    assert keras_resnet == resnet
    for name in list_models():
        builder = get_builder(name)
        params = list(inspect.signature(builder).parameters)
        family = model_facts(name).family
        expected = mobilenet if family == "mobilenetv2" else resnet
        assert params[:len(expected)] == expected, name
        rest = params[len(expected):]
        assert rest[0] == "features_only", name
        if family == "shufflenetv2":
            assert rest[1:3] == ["alpha", "layout"], name
        else:
            assert rest[1] == "layout", name
        for param in params:
            assert param in builder.__doc__, (name, param)


def test_every_builder_is_imported_by_name_where_editors_see_it():
    """Issue 42: ``xbn/models/__init__.py`` names every registered builder in
    an import statement (no ``globals().update``), so an editor, a type
    checker and ``help(xbn.models)`` resolve ``from xbn.models import
    resnet50_xbn``; and each body is the one builder shape."""
    import ast
    import inspect

    import xbn.models

    tree = ast.parse(inspect.getsource(xbn.models))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    assert set(list_models()) <= imported
    assert set(list_models()) <= set(xbn.models.__all__)
    assert "globals" not in inspect.getsource(xbn.models)
    for name in list_models():
        body = ast.parse(inspect.getsource(get_builder(name))).body[0].body
        assert ast.unparse(body[-1]) == f"return build({name}, locals())", name


def test_shufflenetv2_says_where_its_width_went():
    from xbn.models import shufflenetv2

    with pytest.raises(TypeError, match=r"comes after keras' arguments: shufflenetv2\(alpha=0.5\)"):
        shufflenetv2(0.5)
