"""SavedModel export with image-in / labels-out signatures.

The SavedModel is written with ``keras.export.ExportArchive`` and has two
signatures, both returning ``probabilities``, ``top_k_indices``,
``top_k_labels`` and, for models that output logits, ``logits``:

``serving_default``
    ``images``: float32 ``[batch, height, width, 3]`` RGB values in
    ``[0, 255]`` at the model's input size; the model's preprocessing runs in
    the graph.
``serve_bytes``
    ``image_bytes``: string ``[batch]`` of encoded JPEG/PNG/BMP/GIF files of
    any size; decoding, resizing (shorter side to ``size / eval_crop``),
    center cropping and preprocessing run in the graph.

The batch dimension is dynamic.  Bad input (an empty batch, a byte string
that is not an image) fails with a message from the signature, and the
serving process carries on.  What clients need to know (class names, input
size, preprocessing, crop) is also written to ``assets.extra/xbn.json``.

The export is atomic: it is built in a temporary folder beside the
destination, reloaded with plain ``tf.saved_model.load`` and compared with
the source model on real and random images, and only then renamed into
place.  Any failure leaves nothing behind.
"""

import json
from pathlib import Path

import keras
import numpy as np

import xbn
from xbn import _files

INFO_FILE = Path("assets.extra") / "xbn.json"
FORMATS = ("saved_model", "litert", "onnx")
TOLERANCE = 1e-4  # float32: relative to the output scale
# serve_bytes refuses images over this many pixels before decoding them (a
# 0.8 MB PNG can decode to 16000 x 16000: 768 MB of pixels, seconds of work);
# 50 megapixels is every camera's full size but the largest (a 45 MP one).
MAX_PIXELS = 50_000_000
# Machine epsilon of the compute dtypes of keras' policies.
_EPSILON = {"float32": 2.0**-23, "float16": 2.0**-10, "bfloat16": 2.0**-7, "float64": 2.0**-52}


class ExportError(ValueError):
    """The export could not be written or did not reproduce the model."""


def _has_logits(model):
    """True unless the model's last layer applies a softmax."""
    activation = getattr(model.layers[-1], "activation", None)
    name = getattr(activation, "__name__", "")
    return name != "softmax"


def _image_size(model):
    first = keras.config.image_data_format() == "channels_first"
    shape = model.input_shape[1:]
    side = shape[1:] if first else shape[:2]
    if None in side or side[0] != side[1]:
        raise ExportError(
            f"export: the model {model.name!r} must have a static square input to export "
            f"(it has {model.input_shape}); rebuild it with input_shape=(S, S, 3)."
        )
    return int(side[0])


def compute_dtype(model):
    """The dtype most of the model computes in (``float16`` under ``mixed_float16``)."""
    import collections

    dtypes = collections.Counter(
        keras.backend.standardize_dtype(layer.compute_dtype) for layer in model.layers if layer.weights
    )
    return dtypes.most_common(1)[0][0] if dtypes else "float32"


def tolerance(model):
    """What an export of ``model`` can promise: the largest difference from
    the source model, relative to the output scale, that is rounding.

    ``1e-4`` in float32.  In float16 or bfloat16, every layer's output is
    rounded to the compute dtype, and folding BatchNorm moves those
    roundings; over ``L`` convolutions and dense layers they add up to about
    ``sqrt(L)`` times the dtype's epsilon (mixed-float16 MobileNetV2: 4e-3,
    bfloat16: 4.5e-2, with 53 such layers), so the bound is twice that.
    """
    import math

    dtype = compute_dtype(model)
    depth = sum(
        1 for layer in model.layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense))
    )
    return max(TOLERANCE, 2.0 * math.sqrt(max(depth, 1)) * _EPSILON.get(dtype, _EPSILON["float32"]))


def _header_size(encoded):
    """``(height, width)`` of an encoded image from its header, without decoding it.

    JPEG through TensorFlow's own header parser; PNG (IHDR: big-endian
    width, height at bytes 16 and 20), GIF (little-endian 16-bit width,
    height at bytes 6 and 8) and BMP (little-endian 32-bit width, height at
    bytes 18 and 22; a negative height means top-down rows) from their fixed
    header fields.
    """
    import tensorflow as tf

    def number(offset, size, little):
        raw = tf.cast(tf.io.decode_raw(tf.strings.substr(encoded, offset, size), tf.uint8), tf.int64)
        weights = tf.constant([256**i for i in (range(size) if little else reversed(range(size)))], tf.int64)
        return tf.reduce_sum(raw * weights)

    def bmp():
        height = number(22, 4, True)
        height = tf.where(height >= 2**31, 2**32 - height, height)  # top-down rows
        return tf.stack([height, number(18, 4, True)])

    is_jpeg = tf.strings.substr(encoded, 0, 3) == b"\xff\xd8\xff"
    is_png = tf.strings.substr(encoded, 0, 8) == b"\x89PNG\r\n\x1a\n"
    is_gif = tf.strings.substr(encoded, 0, 3) == b"GIF"
    return tf.case([
        (is_jpeg, lambda: tf.cast(tf.io.extract_jpeg_shape(encoded)[:2], tf.int64)),
        (is_png, lambda: tf.stack([number(20, 4, False), number(16, 4, False)])),
        (is_gif, lambda: tf.stack([number(8, 2, True), number(6, 2, True)])),
    ], default=bmp, exclusive=True)


def serving_functions(model, class_names, preprocessing, eval_crop, top_k, max_pixels=MAX_PIXELS):
    """The two serving functions (un-traced), for ``ExportArchive`` endpoints."""
    import tensorflow as tf

    from xbn.data.pipeline import eval_image
    from xbn.models.preprocessing import preprocess_images

    size = _image_size(model)
    logits_out = _has_logits(model)
    names = tf.constant(list(class_names))
    k = min(top_k, len(class_names))

    def checked(tensor, check):
        # Nothing consumes an assertion's result, so a traced function may
        # run the model before it and fail there with a less helpful
        # message; make every use of the tensor wait for the check.
        with tf.control_dependencies([check]):
            return tf.identity(tensor)

    def head(images):
        images = checked(images, tf.debugging.assert_greater(
            tf.shape(images)[0], 0, message="empty batch: send at least one image"
        ))
        outputs = tf.cast(model(preprocess_images(images, preprocessing), training=False), tf.float32)
        probabilities = tf.nn.softmax(outputs) if logits_out else outputs
        top = tf.math.top_k(probabilities, k)
        result = {
            "probabilities": probabilities,
            "top_k_indices": top.indices,
            "top_k_labels": tf.gather(names, top.indices),
        }
        if logits_out:
            result["logits"] = outputs
        return result

    def serve_images(images):
        # The signature declares [batch, size, size, 3], but a signature call
        # does not enforce it, and the static shape lets TensorFlow fold
        # away any check on tf.shape().  The element count is a run-time
        # quantity: it equals batch * size * size * 3 only for such a batch.
        shape = tf.shape(images)
        expected = tf.cast(shape[0], tf.int64) * size * size * 3
        images = checked(images, tf.debugging.assert_equal(
            tf.size(images, out_type=tf.int64), expected,
            message=f"images must be float32 [batch, {size}, {size}, 3] (RGB values 0..255)",
        ))
        # NaN or inf pixels would give confident, meaningless probabilities.
        return head(checked(images, tf.debugging.Assert(
            tf.reduce_all(tf.math.is_finite(images)),
            ["images hold NaN or infinite values; send RGB values 0..255"],
        )))

    def decode_one(element):
        index, encoded = element
        jpeg = tf.strings.substr(encoded, 0, 3) == b"\xff\xd8\xff"
        png = tf.strings.substr(encoded, 0, 8) == b"\x89PNG\r\n\x1a\n"
        gif = tf.reduce_any(tf.strings.substr(encoded, 0, 6) == [b"GIF87a", b"GIF89a"])
        bmp = tf.strings.substr(encoded, 0, 2) == b"BM"
        # (No brackets or quotes in the messages: TensorFlow prints each datum
        # in brackets and escapes quotes.)
        encoded = checked(encoded, tf.debugging.Assert(
            jpeg | png | gif | bmp,
            ["image", index, "of image_bytes is not a JPEG, PNG, BMP or GIF file"],
        ))
        height_width = _header_size(encoded)
        pixels = height_width[0] * height_width[1]
        encoded = checked(encoded, tf.debugging.Assert(
            pixels <= max_pixels,
            ["image", index, "of image_bytes is", height_width[0], "x", height_width[1],
             f"pixels, over the limit of {max_pixels} pixels of this export; send a smaller image "
             "(the limit is set by xbn-export --max-pixels)"],
        ))
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        return eval_image(image, size, eval_crop)

    def serve_bytes(image_bytes):
        image_bytes = checked(image_bytes, tf.debugging.assert_greater(
            tf.size(image_bytes), 0, message="empty batch: send at least one image"
        ))
        indices = tf.range(tf.size(image_bytes))
        images = tf.map_fn(
            decode_one, (indices, image_bytes),
            fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
        )
        return head(images)

    return size, serve_images, serve_bytes


def _write_saved_model(model, directory, class_names, preprocessing, eval_crop, top_k, max_pixels):
    import tensorflow as tf

    size, serve_images, serve_bytes = serving_functions(
        model, class_names, preprocessing, eval_crop, top_k, max_pixels
    )
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default", serve_images,
        input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")],
    )
    archive.add_endpoint(
        "serve_bytes", serve_bytes,
        input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")],
    )
    archive.write_out(str(directory), verbose=False)


class _Preprocess(keras.layers.Layer):
    """The model's preprocessing as a layer (for the LiteRT/ONNX wrappers)."""

    def __init__(self, mode, **kwargs):
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, images):
        from xbn.models.preprocessing import preprocess_images

        return preprocess_images(images, self.mode)


def _end_to_end(model, preprocessing):
    """RGB 0..255 in, probabilities out: the model wrapped for LiteRT/ONNX."""
    size = _image_size(model)
    inputs = keras.Input((size, size, 3), name="images")
    outputs = model(_Preprocess(preprocessing)(inputs))
    if _has_logits(model):
        outputs = keras.layers.Softmax(name="probabilities")(outputs)
    return keras.Model(inputs, outputs, name=f"{model.name}_serving")


def _check_batch(model, seed=0):
    """Real photos (scikit-image's samples, when installed) and random images."""
    size = _image_size(model)
    rng = np.random.default_rng(seed)
    images = [rng.uniform(0, 255, (size, size, 3)) for _ in range(2)]
    try:
        import skimage.data

        for photo in (skimage.data.astronaut(), skimage.data.coffee()):
            import tensorflow as tf

            images.append(tf.image.resize(photo, [size, size]).numpy())
    except ImportError:
        pass
    return np.stack(images).astype("float32")


def _reference(model, preprocessing, images):
    """What the source model answers: logits or probabilities, float64."""
    from xbn.models.preprocessing import preprocess_images

    return np.asarray(model(preprocess_images(images, preprocessing), training=False), np.float64)


def _compare(name, expected, got, log, limit=TOLERANCE):
    scale = max(1.0, float(np.abs(expected).max()))
    error = float(np.abs(np.asarray(got, np.float64) - expected).max()) / scale
    if not np.isfinite(error) or error > limit:
        raise ExportError(
            f"export: the reloaded {name} differs from the source model by {error:.2e} "
            f"(relative to the output scale; what its precision allows is {limit:.2g}); nothing "
            "was written."
        )
    log(f"export: reloaded {name} matches the source model (max relative difference {error:.1e}, "
        f"allowed {limit:.2g})")
    return error


def export_model(
    model, out, *, class_names, preprocessing, model_name=None, eval_crop=0.875, fold=True,
    overwrite=False, top_k=5, fmt="saved_model", max_pixels=MAX_PIXELS, data=None, log=print,
):
    """Export ``model`` for serving (see the module docstring).

    Args:
        model: a keras model taking preprocessed images, with a static input.
        out: destination folder (replaced only with ``overwrite``).
        class_names: one name per output class.
        preprocessing: the model's preprocessing mode (its facts).
        model_name: registered name, recorded in ``xbn.json``.
        eval_crop: central fraction kept by ``serve_bytes``.
        fold: fold BatchNorm into the convolutions first.
        overwrite: replace an existing ``out``.
        top_k: labels returned per image.
        fmt: ``"saved_model"``, ``"litert"`` or ``"onnx"``.
        max_pixels: ``serve_bytes`` refuses larger images before decoding them.
        data: where the model was trained and held out, ``{"spec",
            "val_split", "split"}`` (recorded so that ``xbn-evaluate`` can
            score the held-out split by default).
        log: progress callback.

    The export is verified against the source model on real and random
    images, within what its precision allows (:func:`tolerance`: 1e-4 of the
    output scale in float32, more under float16 or bfloat16 policies); the
    bound and the difference found are recorded in ``xbn.json``.

    Returns:
        ``(path, info)``: the folder written and its ``xbn.json`` content.
    """
    if fmt not in FORMATS:
        raise ValueError(f"export: --format must be one of {', '.join(FORMATS)}; got {fmt!r}.")
    if not isinstance(max_pixels, int) or isinstance(max_pixels, bool) or max_pixels < 1:
        raise ValueError(f"export: --max-pixels must be a positive integer; got {max_pixels!r}.")
    classes = int(model.output_shape[-1])
    if len(class_names) != classes:
        raise ExportError(
            f"export: {len(class_names)} class names for a model with {classes} outputs; "
            "give one name per class (--class-names FILE, one per line)."
        )
    source = model
    fold_summary = None
    if fold:
        from xbn.fold import fold_batchnorm

        model, report = fold_batchnorm(model)
        fold_summary = report.summary()
        log(f"export: {fold_summary}")
    info = {
        "xbn_version": xbn.__version__,
        "format": fmt,
        "model": model_name or source.name,
        "class_names": list(class_names),
        "image_size": _image_size(model),
        "preprocessing": preprocessing,
        "eval_crop": eval_crop,
        "top_k": min(top_k, classes),
        "outputs": ["probabilities", "top_k_indices", "top_k_labels"] + (["logits"] if _has_logits(source) else []),
        "folded": bool(fold),
        "fold_report": fold_summary,
        "precision": compute_dtype(source),
        "tolerance": tolerance(source),
        "max_pixels": max_pixels,
        "data": data,
    }
    images = _check_batch(source)
    expected = _reference(source, preprocessing, images)
    limit = info["tolerance"]
    weights = sum(np.prod(w.shape) * 4 for w in model.weights)
    _files.ensure_space(
        Path(out).parent, int(2 * weights) + 50 * 2**20, f"the export {Path(out).name}",
        "Nothing was written; free some space and export again.",
    )
    with _files.atomic_directory(out, overwrite=overwrite) as tmp:
        if fmt == "saved_model":
            _write_saved_model(model, tmp, class_names, preprocessing, eval_crop, top_k, max_pixels)
            info["difference"] = _verify_saved_model(tmp, images, expected, source, log, limit)
        elif fmt == "litert":
            info["difference"] = _write_litert(model, preprocessing, tmp, images, expected, source, log, limit)
        else:
            info["difference"] = _write_onnx(model, preprocessing, tmp, images, expected, source, log, limit)
        (tmp / INFO_FILE).parent.mkdir(parents=True, exist_ok=True)
        _files.atomic_write_text(tmp / INFO_FILE, json.dumps(info, indent=2) + "\n")
    log(f"export: wrote {out}")
    return Path(out), info


def _probabilities(source, expected):
    return expected if not _has_logits(source) else np.asarray(keras.ops.softmax(expected), np.float64)


def _verify_saved_model(directory, images, expected, source, log, limit):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(directory))
    result = loaded.signatures["serving_default"](images=tf.constant(images))
    differences = []
    if "logits" in result:
        differences.append(_compare("SavedModel logits", expected, result["logits"].numpy(), log, limit))
    differences.append(_compare(
        "SavedModel probabilities", _probabilities(source, expected), result["probabilities"].numpy(), log, limit
    ))
    return max(differences)


def _write_litert(model, preprocessing, directory, images, expected, source, log, limit):
    path = directory / "model.tflite"
    try:
        _end_to_end(model, preprocessing).export(str(path), format="litert", verbose=False)
    except ImportError as error:
        raise ExportError(
            f"export: the LiteRT converter is missing ({error}); install it with "
            "pip install 'xbn[litert]'."
        ) from None
    interpreter = _litert_interpreter(path)
    detail = interpreter.get_input_details()[0]
    got = []
    for image in images:  # one image at a time: the converted batch is 1
        interpreter.resize_tensor_input(detail["index"], [1, *image.shape])
        interpreter.allocate_tensors()
        interpreter.set_tensor(detail["index"], image[None])
        interpreter.invoke()
        got.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0])
    return _compare("LiteRT probabilities", _probabilities(source, expected), np.stack(got), log, limit)


def _litert_interpreter(path):
    """The LiteRT interpreter (``ai-edge-litert``), else TensorFlow's deprecated one."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import warnings

        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "tf.lite.Interpreter is deprecated"
            return tf.lite.Interpreter(model_path=str(path))
    return Interpreter(model_path=str(path))


def _write_onnx(model, preprocessing, directory, images, expected, source, log, limit):
    try:
        import onnxruntime
        import tf2onnx  # noqa: F401
    except ImportError as error:
        raise ExportError(
            f"export: ONNX export needs tf2onnx and onnxruntime ({error.name} is missing); "
            "install them with pip install 'xbn[onnx]'."
        ) from None
    path = directory / "model.onnx"
    wrapper = _end_to_end(model, preprocessing)
    wrapper(images[:1])  # keras' ONNX exporter needs a model that has been called
    wrapper.export(str(path), format="onnx", verbose=False)
    session = onnxruntime.InferenceSession(str(path))
    name = session.get_inputs()[0].name
    got = session.run(None, {name: images})[0]
    return _compare("ONNX probabilities", _probabilities(source, expected), got, log, limit)


def load_info(directory):
    """The ``xbn.json`` of an export folder (raises a clear error if absent)."""
    if not Path(directory).exists():
        raise FileNotFoundError(f"the export folder {directory} does not exist.")
    path = Path(directory) / INFO_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory} is not an xbn export (it has no {INFO_FILE}); create one with xbn-export."
        )
    return json.loads(path.read_text())
