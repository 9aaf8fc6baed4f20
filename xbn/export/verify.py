"""What an export must reproduce, and how closely.

An export is compared with its source model on real photos (scikit-image's
samples, when installed) and random images, within what its precision can
promise (:func:`tolerance`); any larger difference is an :class:`ExportError`
and nothing is written.
"""

import keras
import numpy as np

from xbn.errors import UsageError

TOLERANCE = 1e-4  # float32: relative to the output scale

# Machine epsilon of the compute dtypes of keras' policies.
_EPSILON = {"float32": 2.0**-23, "float16": 2.0**-10, "bfloat16": 2.0**-7, "float64": 2.0**-52}


class ExportError(UsageError):
    """The export could not be written or did not reproduce the model."""


def has_logits(model):
    """True unless the model's last layer applies a softmax."""
    activation = getattr(model.layers[-1], "activation", None)
    name = getattr(activation, "__name__", "")
    return name != "softmax"


def image_size(model):
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


def check_batch(model, seed=0):
    """Real photos (scikit-image's samples, when installed) and random images."""
    size = image_size(model)
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


def reference(model, preprocessing, images):
    """What the source model answers: logits or probabilities, float64."""
    from xbn.models.preprocessing import preprocess_images

    return np.asarray(keras.ops.convert_to_numpy(model(preprocess_images(images, preprocessing), training=False)),
                      np.float64)


def compare(name, expected, got, log, limit=TOLERANCE):
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


def probabilities(source, expected):
    return expected if not has_logits(source) else np.asarray(keras.ops.softmax(expected), np.float64)
