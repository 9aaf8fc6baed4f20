"""What every builder shares: argument checks, the input, the top, weights.

This is keras.applications' ``obtain_input_shape`` and the code around it,
written once for every family, with errors that say what was expected.
"""

import os
import warnings

import keras

from xbn import _checks

MIN_SIZE = 32
POOLINGS = (None, "avg", "max")


def channel_axis():
    """-1 for ``channels_last`` (the default), 1 for ``channels_first``."""
    return 1 if keras.config.image_data_format() == "channels_first" else -1


def check_common_args(
    owner, include_top, weights, input_tensor, input_shape, pooling, classes,
    classifier_activation, default_size, min_size=MIN_SIZE,
):
    """Validate the keras.applications arguments; return the input shape.

    The returned shape is a 3-tuple in the current image data format; its
    spatial sides are ``None`` (any size) when ``include_top=False`` and no
    shape was given, else the given sides or ``default_size``.
    """
    _checks.check_bool(owner, "include_top", include_top)
    _checks.check_choice(owner, "pooling", pooling, POOLINGS)
    _checks.check_int(owner, "classes", classes, minimum=1)
    _check_weights(owner, weights)
    if classifier_activation is not None and not (
        isinstance(classifier_activation, str) or callable(classifier_activation)
    ):
        raise TypeError(
            f"{owner}: `classifier_activation` must be None, an activation name or a "
            f"callable. Received: classifier_activation={classifier_activation!r}"
        )
    first = keras.config.image_data_format() == "channels_first"
    input_shape = _given_shape(owner, input_tensor, input_shape, first)
    if input_shape is None:
        sides = (default_size, default_size) if include_top else (None, None)
        input_shape = (3, *sides) if first else (*sides, 3)
    sides = input_shape[1:] if first else input_shape[:2]
    channels = input_shape[0] if first else input_shape[2]
    if channels is None:
        raise ValueError(f"{owner}: the channel count of `input_shape` {input_shape} must be known.")
    if any(s is not None and s < min_size for s in sides):
        raise ValueError(
            f"{owner}: input sides must be at least {min_size} pixels. Received: "
            f"input_shape={input_shape}"
        )
    if include_top and None in sides:
        raise ValueError(
            f"{owner}: include_top=True needs a static input size, e.g. "
            f"input_shape=({default_size}, {default_size}, 3). Received: "
            f"input_shape={input_shape}"
        )
    return input_shape


def _check_weights(owner, weights):
    """``weights``: ``None`` or the path of a weights file on disk (never a download)."""
    if weights is None:
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            f"{owner}: `weights` must be None or the path of a weights file on disk "
            f"(.weights.h5, .h5 or .keras). Received: weights={weights!r}"
        )
    if str(weights) == "imagenet":
        raise ValueError(
            f"{owner}: weights='imagenet' would download a file, and xbn never "
            "downloads. Pass the path of keras' ImageNet weight file on disk instead "
            "(e.g. ~/.keras/models/resnet50_weights_tf_dim_ordering_tf_kernels.h5)."
        )
    if not os.path.isfile(weights):
        raise FileNotFoundError(
            f"{owner}: the weights file {os.fspath(weights)!r} does not exist. "
            "Give the path of a .weights.h5, .h5 or .keras file, or weights=None."
        )


def _given_shape(owner, input_tensor, input_shape, first):
    """The input shape ``input_shape`` and ``input_tensor`` give (checked to
    agree), or ``None`` where neither does."""
    tensor_shape = None
    if input_tensor is not None:
        if not hasattr(input_tensor, "shape") or len(input_tensor.shape) != 4:
            raise ValueError(
                f"{owner}: `input_tensor` must be a 4-D image tensor (batch, height, "
                f"width, channels). Received: {input_tensor!r}"
            )
        tensor_shape = tuple(input_tensor.shape[1:])
    if input_shape is None:
        return tensor_shape
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or not all(d is None or (isinstance(d, int) and d > 0) for d in input_shape):
        raise ValueError(
            f"{owner}: `input_shape` must be a tuple of three positive integers "
            f"(height, width, channels){' in channels_first order' if first else ''}; "
            f"None is allowed for the sides. Received: input_shape={input_shape!r}"
        )
    if tensor_shape is not None and tensor_shape != input_shape:
        raise ValueError(
            f"{owner}: `input_shape` {input_shape} and the shape of `input_tensor` "
            f"{tensor_shape} disagree; give one of them, or make them equal."
        )
    return input_shape


def image_input(input_tensor, input_shape):
    """The model's input: ``input_tensor`` if it is a keras tensor, else an Input."""
    if input_tensor is None:
        return keras.Input(shape=input_shape)
    if keras.backend.is_keras_tensor(input_tensor):
        return input_tensor
    return keras.Input(tensor=input_tensor, shape=input_shape)


def classifier_top(x, include_top, pooling, classes, classifier_activation, use_bias=True, dropout=0.0):
    """keras.applications' head: pooling and the ``predictions`` Dense layer
    (with ``dropout`` before it and ``use_bias`` as the family has them)."""
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name="dropout")(x)
        return keras.layers.Dense(classes, activation=classifier_activation, use_bias=use_bias,
                                  name="predictions")(x)
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def _warn_reduced_groups(model):
    """One warning per model where GroupNorms use fewer groups than asked
    because the count does not divide their channels (not where it is
    capped at the channels: one group per channel)."""
    from xbn.layers import GroupNorm

    reduced = {}
    for layer in model.layers:
        requested = getattr(layer, "requested_groups", None) if isinstance(layer, GroupNorm) else None
        channels = layer.gamma.shape[0] if requested and layer.gamma is not None else None
        if requested and channels is not None and channels > requested:
            reduced.setdefault(requested, set()).add((channels, layer.groups))
    for requested, pairs in reduced.items():
        used = ", ".join(f"{g} groups at {c} channels" for c, g in sorted(pairs))
        warnings.warn(
            f"{model.name}: {requested} groups do not divide the channels of some GroupNorms, which use the "
            f"largest divisor not above {requested} instead: {used}. Their configs record both (groups, "
            "requested_groups); ask for a group count that divides the channels to avoid this.",
            UserWarning, stacklevel=3,
        )


@keras.saving.register_keras_serializable(package="xbn")
class ZooModel(keras.Model):
    """A functional model of the zoo that keeps its registered name where
    keras keeps a model's configuration (``get_config()``, so in a
    ``.keras`` file), and serves the registered facts as ``xbn_facts``
    (:func:`xbn.models.model_facts`) after any round trip and under any
    ``name=``.  It is a functional ``keras.Model`` in every other respect
    (keras builds it with ``inputs, outputs``; cloning and saving work as
    for any functional model).

    Args:
        xbn_model: the registered model name (``"resnet50_xbn"``).
        *args, **kwargs: ``keras.Model``'s functional arguments.
    """

    def __init__(self, *args, xbn_model=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.xbn_model = xbn_model
        if xbn_model is not None:
            from xbn.models.registry import list_models, model_facts

            # A file of a model registered elsewhere (an extension, a test's
            # model) still loads where that registration is absent: it then
            # has no facts, as any keras model.
            if xbn_model in list_models():
                self.xbn_facts = model_facts(xbn_model)

    def get_config(self):
        return {**super().get_config(), "xbn_model": self.xbn_model}


def finish_model(img_input, input_tensor, outputs, name, facts, weights):
    """Make the functional :class:`ZooModel`, with its facts, load ``weights``."""
    from xbn.models.weights import load_weights

    inputs = img_input
    if input_tensor is not None:
        inputs = keras.utils.get_source_inputs(input_tensor)
    model = ZooModel(inputs, outputs, name=name, xbn_model=facts.name)
    _warn_reduced_groups(model)
    if weights is not None:
        model.xbn_weights_report = load_weights(model, weights)
    return model
