"""SavedModel export: signatures, plain-TF loading, bad input, atomicity, formats."""

import json
import os
import subprocess
import sys
import textwrap

import datasets
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import with_moving_statistics

from xbn.export import INFO_FILE, ExportError, export_model, savedmodel
from xbn.models import mobilenetv2_xbn
from xbn.models.preprocessing import preprocess_images
from xbn.training.trained import export_source

SIZE = 32
CLASSES = ["zero", "one", "two"]


def _model(seed=0):
    model = mobilenetv2_xbn(alpha=0.35, input_shape=(SIZE, SIZE, 3), classes=3, classifier_activation=None)
    return with_moving_statistics(model, seed)


def _tiny():
    """Conv + BN + GroupNorm: exports in seconds, for the mechanics tests."""
    from xbn.layers import BatchNorm, GroupNorm

    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    x = keras.layers.ReLU()(BatchNorm(name="bn")(x))
    x = GroupNorm(groups=4, name="gn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="predictions")(x), name="tiny")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = _model()
    out = tmp_path_factory.mktemp("exports") / "mnv2"
    lines = []
    export_model(model, out, class_names=CLASSES, preprocessing="tf", model_name="mobilenetv2_xbn",
                 eval_crop=1.0, log=lines.append)
    return model, out, tf.saved_model.load(str(out)), lines


def _images(n, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3)).astype("float32")


def _expected(model, images):
    return np.asarray(model(preprocess_images(images, "tf"), training=False))


def test_serving_default_matches_the_model_with_a_dynamic_batch(exported):
    model, _, loaded, lines = exported
    serve = loaded.signatures["serving_default"]
    for n in (1, 3):
        images = _images(n, seed=n)
        out = serve(images=tf.constant(images))
        assert set(out) == {"probabilities", "top_k_indices", "top_k_labels", "logits"}
        logits = _expected(model, images)
        np.testing.assert_allclose(out["logits"], logits, atol=1e-4 * max(1, np.abs(logits).max()))
        np.testing.assert_allclose(out["probabilities"].numpy().sum(1), 1, rtol=1e-5)
        top = np.argsort(-logits, axis=1)[:, :3]
        np.testing.assert_array_equal(out["top_k_indices"].numpy(), top)
        labels = [[CLASSES[i] for i in row] for row in top]
        assert [[label.decode() for label in row] for row in out["top_k_labels"].numpy()] == labels
    assert any("matches the source model" in line for line in lines)


def test_serve_bytes_decodes_any_size_in_the_graph(exported):
    model, _, loaded, _ = exported
    images = _images(2, seed=7).astype("uint8")
    encoded = [datasets.encode(images[0], "png"), datasets.encode(images[1], "bmp")]
    out = loaded.signatures["serve_bytes"](image_bytes=tf.constant(encoded))
    logits = _expected(model, images.astype("float32"))
    np.testing.assert_allclose(out["logits"], logits, atol=1e-3 * max(1, np.abs(logits).max()))
    photo = datasets.photos()["coffee"]  # 400x600 JPEG
    big = loaded.signatures["serve_bytes"](image_bytes=tf.constant([datasets.encode(photo, "jpg")]))
    assert big["probabilities"].shape == (1, 3)


def test_bad_input_gets_a_clear_error_and_serving_goes_on(exported):
    _, _, loaded, _ = exported
    serve, serve_bytes = loaded.signatures["serving_default"], loaded.signatures["serve_bytes"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty batch"):
        serve(images=tf.zeros((0, SIZE, SIZE, 3)))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"\[1\] \[of image_bytes is not a JPEG, PNG, BMP or GIF file"):
        serve_bytes(image_bytes=tf.constant([datasets.encode(_images(1)[0].astype("uint8")), b"plain text"]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty batch"):
        serve_bytes(image_bytes=tf.constant([], tf.string))
    message = rf"images must be float32 \[batch, {SIZE}, {SIZE}, 3\]"
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        serve(images=tf.zeros((1, SIZE, SIZE, 4)))  # a channel too many
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        serve(images=tf.zeros((SIZE, SIZE, 3)))  # no batch axis
    assert serve(images=tf.constant(_images(1)))["probabilities"].shape == (1, 3)


def test_loads_in_a_process_that_never_imports_xbn(exported):
    _, out, _, _ = exported
    png = datasets.encode(_images(1)[0].astype("uint8"))
    script = textwrap.dedent(f"""
        import sys, tensorflow as tf
        loaded = tf.saved_model.load({str(out)!r})
        out = loaded.signatures["serving_default"](images=tf.zeros((2, {SIZE}, {SIZE}, 3)))
        b = loaded.signatures["serve_bytes"](image_bytes=tf.constant([{png!r}]))
        assert not any(m == "xbn" or m.startswith("xbn.") for m in sys.modules), "xbn was imported"
        print(sorted(out), out["top_k_labels"].numpy()[0][0].decode(), b["probabilities"].shape)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, cwd="/")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "['logits', 'probabilities', 'top_k_indices', 'top_k_labels']" in result.stdout
    assert "(1, 3)" in result.stdout


def test_saved_model_cli_lists_both_signatures(exported):
    _, out, _, _ = exported
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run([cli, "show", "--dir", str(out), "--all"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout
    assert "signature_def['serving_default']" in text and "signature_def['serve_bytes']" in text
    assert f"shape: (-1, {SIZE}, {SIZE}, 3)" in text
    assert "dtype: DT_STRING" in text and "shape: (-1, 3)" in text


def test_info_file_carries_what_clients_need(exported):
    _, out, _, _ = exported
    info = json.loads((out / INFO_FILE).read_text())
    assert info["class_names"] == CLASSES and info["image_size"] == SIZE
    assert info["preprocessing"] == "tf" and info["folded"] is True
    assert "folded 35 BatchNorm" in info["fold_report"]


def test_existing_destination_needs_overwrite(tmp_path):
    model = _tiny()
    target = tmp_path / "export"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(FileExistsError, match="pass `overwrite`"):
        export_model(model, target, class_names=CLASSES, preprocessing="tf", log=lambda m: None)
    assert (target / "keep.txt").read_text() == "old"
    export_model(model, target, class_names=CLASSES, preprocessing="tf", overwrite=True,
                 fold=False, log=lambda m: None)
    assert not (target / "keep.txt").exists()
    assert json.loads((target / INFO_FILE).read_text())["folded"] is False


def test_a_mismatch_after_reloading_leaves_nothing_behind(tmp_path, monkeypatch):
    model = _tiny()
    real_reference = savedmodel.reference
    monkeypatch.setattr(savedmodel, "reference", lambda m, p, x: real_reference(m, p, x) + 1.0)
    with pytest.raises(ExportError, match="differs from the source model .* nothing was written"):
        export_model(model, tmp_path / "bad", class_names=CLASSES, preprocessing="tf", log=lambda m: None)
    assert os.listdir(tmp_path) == []


def test_class_names_must_match_the_outputs(tmp_path):
    with pytest.raises(ExportError, match="2 class names for a model with 3 outputs"):
        export_model(_tiny(), tmp_path / "x", class_names=["a", "b"], preprocessing="tf")


@pytest.mark.parametrize("fmt, filename", [("litert", "model.tflite"), ("onnx", "model.onnx")])
def test_litert_and_onnx_are_checked_the_same_way(exported, tmp_path, fmt, filename):
    lines = []
    export_model(exported[0], tmp_path / fmt, class_names=CLASSES, preprocessing="tf", fmt=fmt, log=lines.append)
    assert (tmp_path / fmt / filename).stat().st_size > 100_000
    assert any("probabilities matches the source model" in line for line in lines)


def test_missing_onnx_converter_names_the_extra(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tf2onnx(name, *args, **kwargs):
        if name == "tf2onnx":
            raise ImportError("No module named 'tf2onnx'", name="tf2onnx")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tf2onnx)
    with pytest.raises(ExportError, match=r"pip install 'xbn\[onnx\]'"):
        export_model(_tiny(), tmp_path / "o", class_names=CLASSES, preprocessing="tf", fmt="onnx")
    assert not (tmp_path / "o").exists()


def test_export_source_from_keras_file_and_registered_name(exported, tmp_path):
    model = exported[0]
    keras_file = tmp_path / "m.keras"
    model.save(keras_file)
    names = tmp_path / "classes.txt"
    names.write_text("\n".join(CLASSES) + "\n")
    out = export_source(str(keras_file), tmp_path / "from_keras", class_names=str(names), log=lambda m: None)
    assert json.loads((out / INFO_FILE).read_text())["class_names"] == CLASSES

    from xbn.models import mobilenetv2

    vanilla = mobilenetv2(alpha=0.35, input_shape=(SIZE, SIZE, 3), classes=3)
    weights = tmp_path / "v.weights.h5"
    vanilla.save_weights(weights)
    with pytest.raises(ValueError, match="does not fit 'mobilenetv2' .* `model_args` alpha=0.35"):
        export_source("mobilenetv2", tmp_path / "half", weights=str(weights), image_size=SIZE)
    assert not (tmp_path / "half").exists()
    out = export_source("mobilenetv2", tmp_path / "from_name", weights=str(weights), image_size=SIZE,
                        model_args={"alpha": 0.35}, log=lambda m: None)
    info = json.loads((out / INFO_FILE).read_text())
    assert info["class_names"] == ["class_0", "class_1", "class_2"]
    assert "logits" not in info["outputs"]  # a softmax top has no logits
    with pytest.raises(ValueError, match="needs `weights` NAME\\|PATH"):
        export_source("mobilenetv2", tmp_path / "nope")
    with pytest.raises(ValueError, match="neither a run folder, a .keras file nor a registered model"):
        export_source("resnet9000", tmp_path / "nope")


# -- what the precision can promise -----------------------------------------------------
@pytest.mark.parametrize("policy, dtype", [("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")])
def test_a_mixed_precision_model_exports_within_what_its_precision_allows(tmp_path, policy, dtype):
    """Folding moves the roundings of a float16/bfloat16 network: 4e-3 and 4.5e-2
    of the output scale for MobileNetV2, which a float32 tolerance of 1e-4
    refused (an xbn-train --mixed-precision run could never be exported)."""
    from conftest import dtype_policy

    with dtype_policy(policy):
        model = _model(seed=3)
    limit = savedmodel.tolerance(model)
    assert savedmodel.compute_dtype(model) == dtype
    assert limit == pytest.approx(2 * np.sqrt(53) * {"float16": 2**-10, "bfloat16": 2**-7}[dtype])
    _, info = export_model(model, tmp_path / dtype, class_names=CLASSES, preprocessing="tf", log=lambda m: None)
    assert info["precision"] == dtype and info["tolerance"] == limit
    assert 0 < info["difference"] <= limit


def test_float32_keeps_the_strict_tolerance():
    assert savedmodel.tolerance(_model()) == savedmodel.TOLERANCE


# -- serving refuses what it cannot answer ---------------------------------------------------
def test_nan_or_inf_pixels_are_refused(exported):
    _, _, loaded, _ = exported
    serve = loaded.signatures["serving_default"]
    for bad in (np.nan, np.inf):
        images = _images(2)
        images[1, 3, 4, 0] = bad
        with pytest.raises(tf.errors.InvalidArgumentError, match="images hold NaN or infinite values"):
            serve(images=tf.constant(images))
    assert serve(images=tf.constant(_images(1)))["probabilities"].shape == (1, 3)


def _png_header(width, height):
    """The first bytes of a PNG that claims a size (its pixels need not follow)."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\x00" * 64


@pytest.mark.parametrize("fmt", ["png", "jpg", "gif", "bmp"])
def test_image_sizes_are_read_from_the_header_without_decoding(fmt):
    image = np.zeros((37, 53, 3), np.uint8)
    encoded = tf.constant(datasets.encode(image, fmt))
    np.testing.assert_array_equal(savedmodel.header_size(encoded), [37, 53])


def test_images_over_the_pixel_limit_are_refused_before_decoding(tmp_path):
    """A 0.8 MB PNG can decode to 16000 x 16000 (768 MB): the header says so first."""
    out = tmp_path / "capped"
    export_model(_tiny(), out, class_names=CLASSES, preprocessing="tf", max_pixels=1000, log=lambda m: None)
    assert json.loads((out / INFO_FILE).read_text())["max_pixels"] == 1000
    serve_bytes = tf.saved_model.load(str(out)).signatures["serve_bytes"]
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"\[16000\] \[x\] \[16000\] \[pixels, over the limit of 1000 pixels of this export"):
        serve_bytes(image_bytes=tf.constant([_png_header(16000, 16000)]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[32\] \[x\] \[32\] \[pixels, over the limit"):
        serve_bytes(image_bytes=tf.constant([datasets.encode(_images(1, seed=2)[0].astype("uint8"))]))  # 1024 pixels
    small = datasets.encode(_images(1, seed=2)[0].astype("uint8")[:20, :20])  # 400 pixels
    assert serve_bytes(image_bytes=tf.constant([small]))["probabilities"].shape == (1, 3)


def test_the_default_pixel_limit_takes_large_photos():
    assert savedmodel.MAX_PIXELS >= 6000 * 4000 * 2 and savedmodel.MAX_PIXELS < 16000 * 16000


def test_a_full_disk_at_export_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    from xbn import _files

    monkeypatch.setattr(_files.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 2**20}))
    with pytest.raises(_files.DiskFullError, match=r"not enough space in .* for the export out: it needs about "
                                                  r".* MB and 1.0 MB are free. Nothing was written"):
        export_model(_tiny(), tmp_path / "out", class_names=CLASSES, preprocessing="tf", log=lambda m: None)
    assert os.listdir(tmp_path) == []
