"""Input preprocessing, as ``keras.applications`` does it, by model facts.

Images arrive as RGB values in ``[0, 255]``; each family expects them
transformed its own way:

- ``"caffe"`` (ResNet, ResNeXt): RGB -> BGR, then the ImageNet mean
  ``(103.939, 116.779, 123.68)`` subtracted per BGR channel, no scaling;
- ``"tf"`` (MobileNetV2): scaled to ``[-1, 1]`` by ``x / 127.5 - 1``;
- ``"torch"``: scaled to ``[0, 1]``, then normalized with the ImageNet mean
  ``(0.485, 0.456, 0.406)`` and standard deviation ``(0.229, 0.224, 0.225)``.

The implementation uses ``keras.ops`` for arrays of keras' backend, and
TensorFlow's own ops for TensorFlow tensors (inside ``tf.data`` and an
exported serving graph, which are TensorFlow code whatever keras' backend
is).
"""

import keras
import numpy as np

from xbn.errors import UsageError
from xbn.models.registry import PREPROCESSING_MODES, model_facts

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)


def preprocess_images(x, mode, data_format=None):
    """Apply preprocessing ``mode`` to RGB images ``x`` in ``[0, 255]``.

    Returns float32 values: a NumPy array for NumPy input, else a tensor.
    """
    if mode not in PREPROCESSING_MODES:
        raise UsageError(
            f"preprocess_images: mode must be one of {PREPROCESSING_MODES}; got {mode!r}."
        )
    data_format = data_format or keras.config.image_data_format()
    axis = 1 if data_format == "channels_first" else -1
    if type(x).__module__.startswith("tensorflow") and keras.backend.backend() != "tensorflow":
        return _tf_preprocess(x, mode, axis)
    numpy_in = isinstance(x, np.ndarray)
    x = keras.ops.cast(keras.ops.convert_to_tensor(x), "float32")
    if x.shape[axis] != 3:
        raise UsageError(
            f"preprocess_images: expected 3 (RGB) channels on axis {axis}; got an input "
            f"of shape {tuple(x.shape)}."
        )
    shape = [1] * len(x.shape)
    shape[axis] = 3
    if mode == "tf":
        out = x / 127.5 - 1.0
    elif mode == "torch":
        mean = keras.ops.reshape(keras.ops.convert_to_tensor(TORCH_MEAN, "float32"), shape)
        std = keras.ops.reshape(keras.ops.convert_to_tensor(TORCH_STD, "float32"), shape)
        out = (x / 255.0 - mean) / std
    else:
        bgr = keras.ops.flip(x, axis=axis)
        mean = keras.ops.reshape(keras.ops.convert_to_tensor(CAFFE_MEAN_BGR, "float32"), shape)
        out = bgr - mean
    return keras.ops.convert_to_numpy(out) if numpy_in else out


def _tf_preprocess(x, mode, axis):
    """:func:`preprocess_images` of a TensorFlow tensor, in TensorFlow's ops
    (a tf.data map or a SavedModel under keras' JAX or PyTorch backend)."""
    import tensorflow as tf

    x = tf.cast(x, tf.float32)
    if x.shape[axis] != 3:
        raise UsageError(
            f"preprocess_images: expected 3 (RGB) channels on axis {axis}; got an input of shape {tuple(x.shape)}."
        )
    shape = [1] * len(x.shape)
    shape[axis] = 3
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "torch":
        return (x / 255.0 - tf.reshape(TORCH_MEAN, shape)) / tf.reshape(TORCH_STD, shape)
    return tf.reverse(x, [axis]) - tf.reshape(CAFFE_MEAN_BGR, shape)


def preprocess_input(model_or_name, x):
    """Preprocess RGB images ``x`` in ``[0, 255]`` the way a zoo model expects.

    Args:
        model_or_name: a registered model name or a model built by xbn.
        x: images, ``(batch, height, width, 3)`` (channels-last).

    >>> import numpy as np
    >>> from xbn.models import preprocess_input
    >>> preprocess_input("mobilenetv2", np.full((1, 2, 2, 3), 255.0))[0, 0, 0].tolist()
    [1.0, 1.0, 1.0]
    """
    return preprocess_images(x, model_facts(model_or_name).preprocessing)
