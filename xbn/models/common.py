"""What every builder shares: the one builder body, argument checks, the
input, the top, feature maps, weights.

:func:`build` is the body of every registered builder; the rest is
keras.applications' ``obtain_input_shape`` and the code around it, written
once for every family, with errors that say what was expected.
"""

import math
import os
import warnings

import keras

from xbn import _checks
from xbn.errors import UsageError, UsageTypeError
from xbn.models import variants
from xbn.models.registry import registration

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
        raise UsageTypeError(
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
        raise UsageError(f"{owner}: the channel count of `input_shape` {input_shape} must be known.")
    if any(s is not None and s < min_size for s in sides):
        raise UsageError(
            f"{owner}: input sides must be at least {min_size} pixels. Received: "
            f"input_shape={input_shape}"
        )
    if include_top and None in sides:
        raise UsageError(
            f"{owner}: include_top=True needs a static input size, e.g. "
            f"input_shape=({default_size}, {default_size}, 3). Received: "
            f"input_shape={input_shape}"
        )
    return input_shape


def _check_weights(owner, weights):
    """``weights``: ``None``, a registered weights name of ``owner``
    (:func:`xbn.models.list_weights`), or the path of a weights file on disk."""
    from xbn.models import pretrained

    if weights is None:
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise UsageTypeError(
            f"{owner}: `weights` must be None, a weights name ({pretrained.names_text(owner)}) or the path of a "
            f"weights file on disk (.weights.h5, .h5 or .keras). Received: weights={weights!r}"
        )
    if pretrained.is_weights_name(owner, weights):
        return
    if not os.path.isfile(weights):
        raise FileNotFoundError(
            f"{owner}: `weights` {os.fspath(weights)!r} is neither a weights name of {owner} "
            f"({pretrained.names_text(owner)}) nor a file on disk. Give a name, the path of a .weights.h5, .h5 "
            "or .keras file, or weights=None."
        )


def _given_shape(owner, input_tensor, input_shape, first):
    """The input shape ``input_shape`` and ``input_tensor`` give (checked to
    agree), or ``None`` where neither does."""
    tensor_shape = None
    if input_tensor is not None:
        if not hasattr(input_tensor, "shape") or len(input_tensor.shape) != 4:
            raise UsageError(
                f"{owner}: `input_tensor` must be a 4-D image tensor (batch, height, "
                f"width, channels). Received: {input_tensor!r}"
            )
        tensor_shape = tuple(input_tensor.shape[1:])
    if input_shape is None:
        return tensor_shape
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or not all(d is None or (isinstance(d, int) and d > 0) for d in input_shape):
        raise UsageError(
            f"{owner}: `input_shape` must be a tuple of three positive integers "
            f"(height, width, channels){' in channels_first order' if first else ''}; "
            f"None is allowed for the sides. Received: input_shape={input_shape!r}"
        )
    if tensor_shape is not None and tensor_shape != input_shape:
        raise UsageError(
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


# keras.applications' arguments, in every builder's signature.
KERAS_ARGS = ("include_top", "weights", "input_tensor", "input_shape", "pooling", "classes", "classifier_activation",
              "name")


def build(builder, args):
    """The body of every registered builder: ``return build(resnet50, locals())``.

    From the builder's arguments (its ``locals()``) and its registration
    (:func:`xbn.models.register_model`: facts, the family's ``Network`` and
    the configuration): named weights' builder arguments, the configuration
    in its ``layout``, the variant's norms
    (:func:`xbn.models.variants.for_variant`), the checked
    keras.applications arguments, the family's trunk, then the top or, with
    ``features_only``, the feature maps keyed ``"P{log2 stride}"`` (keras-hub's
    ``pyramid_outputs``), and the weights.
    """
    from xbn.models import pretrained

    facts, network, config = registration(builder.__name__)
    owner = facts.name
    args = dict(args)
    entry = None
    if pretrained.is_weights_name(owner, args.get("weights")):
        entry = pretrained.weights_entry(owner, args["weights"])
        args = pretrained.builder_arguments(entry, builder, args)
    recorded = {k: _recordable(v) for k, v in args.items() if k != "input_tensor"}
    keras_args = {key: args.pop(key) for key in KERAS_ARGS}
    features_only = _checks.check_bool(owner, "features_only", args.pop("features_only", False))
    config, bn = network.layout(config, args.pop("layout", None), owner)
    norms = variants.for_variant(facts.variant, bn, lambda: network.xbn_roles(config, args, owner), args, owner)
    own = args  # what is left: the family's own arguments (a width)
    include_top = keras_args["include_top"]
    if "alpha" in own and not isinstance(include_top, bool) and isinstance(include_top, (int, float)):
        raise UsageTypeError(
            f"{owner}: `include_top` must be a bool. Received: include_top={include_top!r}. The width is the "
            f"keyword argument `alpha` and comes after keras' arguments: {owner}(alpha={include_top!r})."
        )
    include_top = _checks.check_bool(owner, "include_top", include_top)
    input_shape = check_common_args(
        owner, include_top and not features_only, keras_args["weights"], keras_args["input_tensor"],
        keras_args["input_shape"], keras_args["pooling"], keras_args["classes"],
        keras_args["classifier_activation"], facts.default_size, facts.min_size,
    )
    img_input = image_input(keras_args["input_tensor"], input_shape)
    x, features = network.trunk(img_input, config, norms, owner, **own)
    if features_only:
        outputs = {f"P{int(math.log2(stride))}": tensor for stride, tensor in features.items()}
    else:
        outputs = classifier_top(x, include_top, keras_args["pooling"], keras_args["classes"],
                                 keras_args["classifier_activation"], **network.head(config, own))
    return finish_model(img_input, keras_args["input_tensor"], outputs, keras_args["name"] or owner, facts,
                        keras_args["weights"], recorded, entry, features if features_only else None)


def _recordable(value):
    """A builder argument as a saved model records it (JSON: a callable by its name)."""
    if callable(value):
        return getattr(value, "__name__", type(value).__name__)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return list(value) if isinstance(value, tuple) else value


@keras.saving.register_keras_serializable(package="xbn")
class ZooModel(keras.Model):
    """A functional model of the zoo that keeps what it was built as where
    keras keeps a model's configuration (``get_config()``, so in a
    ``.keras`` file): its registered name, every builder argument, the named
    weights it was built with and, for a feature backbone, its feature maps.
    After any round trip and under any ``name=`` it serves:

    - ``xbn_facts``: the registered facts (:func:`xbn.models.model_facts`),
      with the preprocessing of its named weights where it has them;
    - ``xbn_args``: the builder arguments (``layout``, ``xbn_groups``,
      ``alpha``, ...) as keras-hub's backbones serialize theirs;
    - ``feature_info`` (``features_only=True``): one dict per output,
      ``{"name": "P3", "layer": ..., "channels": ..., "stride": 8}``, as timm's.

    It is a functional ``keras.Model`` in every other respect.

    Args:
        xbn_model: the registered model name (``"resnet50_xbn"``).
        xbn_args: the builder arguments.
        xbn_weights: ``"MODEL/NAME"`` of the named weights it was built with.
        xbn_features: the feature maps of a feature backbone.
        *args, **kwargs: ``keras.Model``'s functional arguments.
    """

    def __init__(self, *args, xbn_model=None, xbn_args=None, xbn_weights=None, xbn_features=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.xbn_model = xbn_model
        self.xbn_args = dict(xbn_args or {})
        self.xbn_weights = xbn_weights
        self._xbn_features = [dict(f) for f in xbn_features or ()]
        if xbn_model is not None:
            from xbn.models.pretrained import entry_from_key
            from xbn.models.registry import list_models, model_facts

            # A file of a model registered elsewhere (an extension, a test's
            # model) still loads where that registration is absent: it then
            # has no facts, as any keras model.
            if xbn_model in list_models():
                facts = model_facts(xbn_model)
                entry = entry_from_key(xbn_weights)
                if entry is not None and entry.preprocessing != facts.preprocessing:
                    import dataclasses

                    facts = dataclasses.replace(facts, preprocessing=entry.preprocessing)
                self.xbn_facts = facts

    @property
    def feature_info(self):
        """The feature maps of a ``features_only`` model (``None`` for a classifier)."""
        return [dict(f) for f in self._xbn_features] or None

    def get_config(self):
        return {**super().get_config(), "xbn_model": self.xbn_model, "xbn_args": dict(self.xbn_args),
                "xbn_weights": self.xbn_weights, "xbn_features": self.feature_info}


def finish_model(img_input, input_tensor, outputs, name, facts, weights, args=None, entry=None, features=None):
    """Make the functional :class:`ZooModel` with its facts and arguments,
    and load ``weights`` (a file, or the named ``entry``).

    ``features``: ``{stride: tensor}`` of a feature backbone (``outputs``
    then maps ``"P{log2 stride}"`` to the same tensors).
    """
    from xbn import _graph
    from xbn.models.weights import load_weights

    inputs = img_input
    if input_tensor is not None:
        inputs = keras.utils.get_source_inputs(input_tensor)
    info = None
    if features is not None:
        axis = channel_axis()
        info = [{"name": f"P{int(math.log2(stride))}", "layer": _graph.producer(tensor).name,
                 "channels": int(tensor.shape[axis]), "stride": int(stride)} for stride, tensor in features.items()]
    model = ZooModel(inputs, outputs, name=name, xbn_model=facts.name, xbn_args=args,
                     xbn_weights=entry.key if entry is not None else None, xbn_features=info)
    _warn_reduced_groups(model)
    if entry is not None:
        from xbn.models import pretrained

        include_top = bool(args.get("include_top")) and features is None
        model.xbn_weights_report = pretrained.load(model, entry, include_top=include_top)
    elif weights is not None:
        model.xbn_weights_report = load_weights(model, weights)
    return model
