"""The SavedModel's serving signatures (see :mod:`xbn.export.savedmodel`).

``serving_default`` takes float32 RGB images at the model's input size;
``serve_bytes`` takes encoded image files of any size and decodes, resizes
and crops them in the graph, refusing what is not an image (by the same
signatures as :mod:`xbn.data.images`) and images over ``max_pixels`` before
decoding them.
"""

import functools
import operator

import keras

from xbn.data.images import format_flags
from xbn.export.verify import compare, has_logits, image_size, probabilities

# serve_bytes refuses images over this many pixels before decoding them (a
# 0.8 MB PNG can decode to 16000 x 16000: 768 MB of pixels, seconds of work);
# 50 megapixels is every camera's full size but the largest (a 45 MP one).
MAX_PIXELS = 50_000_000


def header_size(encoded, flags=None):
    """``(height, width)`` of an encoded image from its header, without decoding it.

    JPEG through TensorFlow's own header parser; PNG (IHDR: big-endian
    width, height at bytes 16 and 20), GIF (little-endian 16-bit width,
    height at bytes 6 and 8) and BMP (little-endian 32-bit width, height at
    bytes 18 and 22; a negative height means top-down rows) from their fixed
    header fields.  ``flags``: its :func:`~xbn.data.images.format_flags`,
    when the caller has them already.
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

    flags = format_flags(encoded) if flags is None else flags
    return tf.case([
        (flags["jpeg"], lambda: tf.cast(tf.io.extract_jpeg_shape(encoded)[:2], tf.int64)),
        (flags["png"], lambda: tf.stack([number(20, 4, False), number(16, 4, False)])),
        (flags["gif"], lambda: tf.stack([number(8, 2, True), number(6, 2, True)])),
    ], default=bmp, exclusive=True)


def serving_functions(model, class_names, preprocessing, eval_crop, top_k, max_pixels=MAX_PIXELS):
    """``(size, serve_images, serve_bytes)``: the image side and the two
    serving functions (un-traced), for ``ExportArchive`` endpoints."""
    serving = _Serving(model, class_names, preprocessing, eval_crop, top_k, max_pixels)
    return serving.size, serving.serve_images, serving.serve_bytes


def _checked(tensor, check):
    """``tensor``, made to wait for ``check``: nothing consumes an
    assertion's result, so a traced function may run the model before it
    and fail there with a less helpful message."""
    import tensorflow as tf

    with tf.control_dependencies([check]):
        return tf.identity(tensor)


class _Serving:
    """The serving functions of one model: both inputs end in :meth:`head`.

    Every check runs inside the traced graph, so that a served model
    refuses bad requests with a message that names the image and the fix.
    """

    def __init__(self, model, class_names, preprocessing, eval_crop, top_k, max_pixels):
        import tensorflow as tf

        self.model, self.preprocessing, self.eval_crop = model, preprocessing, eval_crop
        self.max_pixels = max_pixels
        self.size = image_size(model)
        self.logits_out = has_logits(model)
        self.names = tf.constant(list(class_names))
        self.k = min(top_k, len(class_names))

    def head(self, images):
        """Probabilities, top-k indices and labels (and logits) of a float batch."""
        import tensorflow as tf

        from xbn.models.preprocessing import preprocess_images

        images = _checked(images, tf.debugging.assert_greater(
            tf.shape(images)[0], 0, message="empty batch: send at least one image"
        ))
        outputs = tf.cast(self.model(preprocess_images(images, self.preprocessing), training=False), tf.float32)
        probabilities = tf.nn.softmax(outputs) if self.logits_out else outputs
        top = tf.math.top_k(probabilities, self.k)
        result = {
            "probabilities": probabilities,
            "top_k_indices": top.indices,
            "top_k_labels": tf.gather(self.names, top.indices),
        }
        if self.logits_out:
            result["logits"] = outputs
        return result

    def serve_images(self, images):
        """``serving_default``: float32 ``[batch, size, size, 3]`` RGB 0..255."""
        import tensorflow as tf

        size = self.size
        # The signature declares [batch, size, size, 3], but a signature call
        # does not enforce it, and the static shape lets TensorFlow fold
        # away any check on tf.shape().  The element count is a run-time
        # quantity: it equals batch * size * size * 3 only for such a batch.
        shape = tf.shape(images)
        expected = tf.cast(shape[0], tf.int64) * size * size * 3
        images = _checked(images, tf.debugging.assert_equal(
            tf.size(images, out_type=tf.int64), expected,
            message=f"images must be float32 [batch, {size}, {size}, 3] (RGB values 0..255)",
        ))
        # NaN or inf pixels would give confident, meaningless probabilities.
        return self.head(_checked(images, tf.debugging.Assert(
            tf.reduce_all(tf.math.is_finite(images)),
            ["images hold NaN or infinite values; send RGB values 0..255"],
        )))

    def decode_one(self, element):
        """One ``(index, encoded image)`` of a bytes request, checked, decoded and cropped."""
        import tensorflow as tf

        from xbn.data.pipeline import eval_image

        index, encoded = element
        flags = format_flags(encoded)
        known = functools.reduce(operator.or_, flags.values())
        # (No brackets or quotes in the messages: TensorFlow prints each datum
        # in brackets and escapes quotes.)
        encoded = _checked(encoded, tf.debugging.Assert(
            tf.strings.length(encoded) > 0,
            ["image", index, "of image_bytes is empty (0 bytes)"],
        ))
        encoded = _checked(encoded, tf.debugging.Assert(
            known,
            ["image", index, "of image_bytes is not a JPEG, PNG, BMP or GIF file"],
        ))
        height_width = header_size(encoded, flags)
        pixels = height_width[0] * height_width[1]
        encoded = _checked(encoded, tf.debugging.Assert(
            pixels <= self.max_pixels,
            ["image", index, "of image_bytes is", height_width[0], "x", height_width[1],
             f"pixels, over the limit of {self.max_pixels} pixels of this export; send a smaller image "
             "(the limit is set by xbn-export --max-pixels)"],
        ))
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        return eval_image(image, self.size, self.eval_crop)

    def serve_bytes(self, image_bytes):
        """``serving_bytes``: a batch of encoded JPEG, PNG, BMP or GIF images."""
        import tensorflow as tf

        image_bytes = _checked(image_bytes, tf.debugging.assert_greater(
            tf.size(image_bytes), 0, message="empty batch: send at least one image"
        ))
        indices = tf.range(tf.size(image_bytes))
        images = tf.map_fn(
            self.decode_one, (indices, image_bytes),
            fn_output_signature=tf.TensorSpec([self.size, self.size, 3], tf.float32),
        )
        return self.head(images)


def write_saved_model(model, directory, class_names, preprocessing, eval_crop, top_k, max_pixels):
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


def verify_saved_model(directory, images, expected, source, log, limit):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(directory))
    result = loaded.signatures["serving_default"](images=tf.constant(images))
    differences = []
    if "logits" in result:
        differences.append(compare("SavedModel logits", expected, result["logits"].numpy(), log, limit))
    differences.append(compare(
        "SavedModel probabilities", probabilities(source, expected), result["probabilities"].numpy(), log, limit
    ))
    return max(differences)
