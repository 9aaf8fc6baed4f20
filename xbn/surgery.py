"""XBN for any Keras CNN: rewrite a functional model's layers.

- :func:`to_xbn_layers`: the same network with keras' ``BatchNormalization``,
  ``GroupNormalization`` and ``Conv2D`` replaced by xbn's drop-ins
  (:mod:`xbn.layers`), every weight carried over: the same outputs, a faster
  training step (see ``xbn-bench``).
- :func:`to_xbn`: the XBNBlock rule (Huang et al., CVPR 2022) applied to any
  functional model: the BatchNorm right after each *spatial* convolution
  (kernel larger than 1x1, depthwise included) becomes a GroupNorm, the first
  one (the stem's) too unless ``stem="bn"``; BatchNorms after 1x1
  convolutions stay.  From ``keras.applications.ResNet50`` it gives
  :func:`xbn.models.resnet50_xbn`, from ``keras.applications.MobileNetV2``
  (``groups=16, stem="bn"``) :func:`xbn.models.mobilenetv2_xbn`, layer for
  layer.  Every weight of the layers that stay is carried over; the new
  GroupNorms start as GroupNorms do (scale 1, offset 0).

Both return the new model and a :class:`SurgeryReport` of what changed, and
refuse, naming the layer, what they cannot rewrite: subclassed models, nested
models, and layers used more than once.
"""

import dataclasses
import inspect

import keras

from xbn import _checks, _graph
from xbn.layers import BatchNorm, Conv2D, GroupNorm
from xbn.layers.norms import NormSpec, make_norm
from xbn.models.variants import GN_EPSILON

# keras' layers and their xbn drop-ins (exact classes: a subclass of keras'
# layer may change its behaviour, and is left alone).
DROP_INS = {
    keras.layers.BatchNormalization: BatchNorm,
    keras.layers.GroupNormalization: GroupNorm,
    keras.layers.Conv2D: Conv2D,
}
XBN_GROUPS = 64
STEMS = ("gn", "bn")


@dataclasses.dataclass
class SurgeryReport:
    """What a rewrite changed.

    Attributes:
        replaced: ``(old name, old class, new name, new class)`` per layer.
        kept: ``{layer name: why}`` for BatchNorms the XBN rule left alone.
    """

    replaced: list
    kept: dict = dataclasses.field(default_factory=dict)

    def counts(self):
        """``{"BatchNormalization -> GroupNorm": n, ...}``."""
        counts = {}
        for _, old, _, new in self.replaced:
            key = f"{old} -> {new}"
            counts[key] = counts.get(key, 0) + 1
        return counts

    def summary(self):
        parts = [f"{n} {key}" for key, n in self.counts().items()] or ["nothing replaced"]
        if self.kept:
            parts.append(f"{len(self.kept)} BatchNorm(s) kept")
        return ", ".join(parts)


def _check_model(model, owner):
    """``model`` as a functional model to rewrite: itself, or a Sequential's
    functional equivalent; refuses what has no graph to rewrite."""
    if not isinstance(model, keras.Model) or not (_graph.is_functional(model) or isinstance(model, keras.Sequential)):
        raise ValueError(
            f"{owner}: {getattr(model, 'name', model)!r} is a subclassed model ({type(model).__name__}); only "
            "functional and Sequential models have a graph to rewrite. Rebuild it with the functional API."
        )
    if isinstance(model, keras.Sequential):
        model = _functional(model, owner)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            raise ValueError(
                f"{owner}: layer {layer.name!r} is a nested model; rewrite it on its own, or build the "
                "model from its layers."
            )
        if _graph.call_count(layer) > 1:
            raise ValueError(
                f"{owner}: layer {layer.name!r} is used {_graph.call_count(layer)} times (shared weights); "
                "rewriting it would have to change every use at once, which is not supported."
            )
    return model


def _functional(sequential, owner):
    """A built Sequential's functional equivalent: the same layers' configs
    on a graph from its input, with its weights (the rewrite then returns a
    functional model)."""
    try:
        shape = sequential.input_shape
    except (AttributeError, ValueError):
        shape = None
    if shape is None:
        raise ValueError(
            f"{owner}: the Sequential model {sequential.name!r} is not built, so its layers have no shapes to "
            "rewrite; start it with keras.Input(shape=...) or call model.build((None, height, width, channels)) "
            "first."
        )
    inputs = keras.Input(batch_shape=shape, name=f"{sequential.name}_input")
    x = inputs
    for layer in sequential.layers:
        x = layer.__class__.from_config(layer.get_config())(x)
    model = keras.Model(inputs, x, name=sequential.name)
    for old, new in zip(sequential.layers, model.layers[1:]):
        new.set_weights(old.get_weights())
    return model


def _drop_in(layer):
    cls = DROP_INS.get(type(layer))
    return None if cls is None else cls.from_config(layer.get_config())


def _rebuild(model, replace):
    """``model`` cloned with ``replace(layer)`` (a new layer or None to keep
    it), weights carried over by layer name where the shapes agree."""
    replaced = []

    def clone(layer):
        new = replace(layer)
        if new is None:
            return layer.__class__.from_config(layer.get_config())
        replaced.append((layer.name, type(layer).__name__, new.name, type(new).__name__))
        return new

    def call(layer, *args, **kwargs):
        # A GroupNorm in a BatchNorm's place takes no mask: the graph's
        # recorded mask=None is not passed on (a real mask is refused).
        accepted = inspect.signature(layer.call).parameters
        for key in [k for k in kwargs if k not in accepted]:
            if kwargs[key] is not None:
                raise ValueError(f"layer {layer.name!r} is called with {key}=, which its replacement does not take.")
            del kwargs[key]
        return layer(*args, **kwargs)

    new_model = keras.models.clone_model(model, clone_function=clone, call_function=call)
    old = {layer.name: layer for layer in model.layers}
    for layer in new_model.layers:
        source = old.get(layer.name)
        if source is None or not layer.weights:
            continue
        weights = source.get_weights()
        if [w.shape for w in weights] == [tuple(v.shape) for v in layer.weights]:
            layer.set_weights(weights)
    return new_model, replaced


def to_xbn_layers(model):
    """``model`` with keras' BatchNormalization, GroupNormalization and Conv2D
    replaced by xbn's, every weight carried over (see the module docstring).

    Returns:
        ``(new model, SurgeryReport)``.
    """
    model = _check_model(model, "to_xbn_layers")
    new_model, replaced = _rebuild(model, _drop_in)
    return new_model, SurgeryReport(replaced)


def _spatial_conv(layer):
    return isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)) and any(
        k > 1 for k in layer.kernel_size
    )


def to_xbn(model, groups=XBN_GROUPS, stem="gn"):
    """The XBNBlock rule applied to a functional model (see the module docstring).

    Args:
        model: a functional or Sequential keras model.
        groups: GroupNorm groups (capped at, and reduced to a divisor of, each
            layer's channels): 64 gives ``resnet50_xbn`` from ResNet50, 16
            ``mobilenetv2_xbn`` from MobileNetV2.
        stem: ``"gn"`` makes the first such BatchNorm a GroupNorm too (the
            XBNBlock code's ResNets), ``"bn"`` keeps it (its MobileNetV2).

    Returns:
        ``(new model, SurgeryReport)``; the report's ``kept`` names every
        BatchNorm left as a BatchNorm and why.  Other keras layers become xbn's
        drop-ins, as :func:`to_xbn_layers` does.
    """
    owner = "to_xbn"
    groups = _checks.check_int(owner, "groups", groups, minimum=1)
    _checks.check_choice(owner, "stem", stem, STEMS)
    model = _check_model(model, owner)
    spec = NormSpec("gn", groups=groups, epsilon=GN_EPSILON)
    kept, targets, stem_seen = {}, set(), False
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        source = _graph.input_layer(layer)
        if isinstance(source, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)) and not _spatial_conv(source):
            kept[layer.name] = f"after the 1x1 {type(source).__name__} {source.name!r}"
        elif not _spatial_conv(source):
            what = f"{type(source).__name__} {source.name!r}" if source is not None else "nothing"
            kept[layer.name] = f"its input is {what}, not a convolution"
        elif stem == "bn" and not stem_seen:  # the first BatchNorm after a spatial conv
            kept[layer.name] = 'the stem (stem="bn")'
            stem_seen = True
        else:
            targets.add(layer.name)
    if not targets:
        raise ValueError(
            f"{owner}: {model.name!r} has no BatchNormalization right after a spatial convolution "
            "(kernel larger than 1x1), so the XBN rule changes nothing in it."
        )

    def replace(layer):
        if layer.name in targets:
            axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
            channels = layer.gamma.shape[0] if layer.gamma is not None else layer.moving_mean.shape[0]
            return make_norm(spec, channels, layer.name, axis=axis)
        return _drop_in(layer)

    new_model, replaced = _rebuild(model, replace)
    return new_model, SurgeryReport(replaced, kept)
