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
  layer.  Every weight of the layers that stay is carried over.  The new
  GroupNorms start as GroupNorms do (scale 1, offset 0), which changes what
  a *trained* network computes; given ``calibration`` images they are
  calibrated instead (:func:`calibrate_xbn`).
- :func:`calibrate_xbn`: each GroupNorm of an XBN network that took a
  BatchNorm's place gets the scale and offset that make its output match,
  channel by channel, the mean and spread the trained BatchNorm gives its
  output (``beta`` and ``|gamma|``) on a few hundred images: a trained
  BatchNorm network becomes an XBN network whose layers hand on what they
  did, without training from scratch.

The rewrites return the new model and a :class:`SurgeryReport` of what
changed, and refuse, naming the layer, what they cannot rewrite: subclassed
models, nested models, and layers used more than once.
"""

import dataclasses
import inspect

import keras
import numpy as np

from xbn import _checks, _graph
from xbn.errors import UsageError
from xbn.layers import BatchNorm, Conv2D, GroupNorm
from xbn.layers.norms import NormSpec, gn_name, is_batch_norm, make_norm
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
        calibration: the :class:`CalibrationReport`, where the new
            GroupNorms were calibrated.
    """

    replaced: list
    kept: dict = dataclasses.field(default_factory=dict)
    calibration: object = None

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
        if self.calibration is not None:
            parts.append(self.calibration.summary())
        return ", ".join(parts)


def _check_model(model, owner):
    """``model`` as a functional model to rewrite: itself, or a Sequential's
    functional equivalent; refuses what has no graph to rewrite."""
    if not isinstance(model, keras.Model) or not (_graph.is_functional(model) or isinstance(model, keras.Sequential)):
        raise UsageError(
            f"{owner}: {getattr(model, 'name', model)!r} is a subclassed model ({type(model).__name__}); only "
            "functional and Sequential models have a graph to rewrite. Rebuild it with the functional API."
        )
    if isinstance(model, keras.Sequential):
        model = _functional(model, owner)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            raise UsageError(
                f"{owner}: layer {layer.name!r} is a nested model; rewrite it on its own, or build the "
                "model from its layers."
            )
        if _graph.call_count(layer) > 1:
            raise UsageError(
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
        raise UsageError(
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
                raise UsageError(f"layer {layer.name!r} is called with {key}=, which its replacement does not take.")
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


def to_xbn(model, groups=XBN_GROUPS, stem="gn", calibration=None, batch_size=32, progress=None):
    """The XBNBlock rule applied to a functional model (see the module docstring).

    Args:
        model: a functional or Sequential keras model.
        groups: GroupNorm groups (capped at, and reduced to a divisor of, each
            layer's channels): 64 gives ``resnet50_xbn`` from ResNet50, 16
            ``mobilenetv2_xbn`` from MobileNetV2.
        stem: ``"gn"`` makes the first such BatchNorm a GroupNorm too (the
            XBNBlock code's ResNets), ``"bn"`` keeps it (its MobileNetV2).
        calibration: ``None`` (the new GroupNorms start at scale 1, offset
            0), or images in the form ``model`` takes (an array, or a
            ``tf.data.Dataset`` of image batches or ``(images, labels)``
            batches; a few hundred are enough) on which each new GroupNorm
            is calibrated to the BatchNorm it replaces (:func:`calibrate_xbn`).
        batch_size: the batch size for an array of ``calibration`` images.
        progress: ``progress(line)`` for a line per calibrated layer.

    Returns:
        ``(new model, SurgeryReport)``; the report's ``kept`` names every
        BatchNorm left as a BatchNorm and why, its ``calibration`` what the
        calibration did.  Other keras layers become xbn's drop-ins, as
        :func:`to_xbn_layers` does.
    """
    owner = "to_xbn"
    groups = _checks.check_int(owner, "groups", groups, minimum=1)
    _checks.check_choice(owner, "stem", stem, STEMS)
    model = _check_model(model, owner)
    spec = NormSpec("gn", groups=groups, epsilon=GN_EPSILON)
    kept, targets, stem_seen = {}, set(), False
    for layer in model.layers:
        if not is_batch_norm(layer):
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
        raise UsageError(
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
    report = SurgeryReport(replaced, kept)
    if calibration is not None:
        report.calibration = calibrate_xbn(new_model, model, calibration, batch_size, progress)
    return new_model, report


@dataclasses.dataclass
class CalibrationReport:
    """What :func:`calibrate_xbn` did.

    Attributes:
        layers: ``{GroupNorm name: BatchNorm name}`` of the calibrated pairs.
        images: how many calibration images were used.
        flat_channels: ``{GroupNorm name: count}`` of channels whose
            normalized output had no spread on the images (their scale is
            left at 1; only the mean is matched).
    """

    layers: dict
    images: int
    flat_channels: dict = dataclasses.field(default_factory=dict)

    def summary(self):
        flat = sum(self.flat_channels.values())
        note = f" ({flat} channel(s) without spread kept their scale)" if flat else ""
        return f"{len(self.layers)} GroupNorm(s) calibrated on {self.images} images{note}"


class _Moments:
    """Per-channel mean and variance over every axis but the last, merged
    batch by batch in float64 (Chan et al.'s parallel update)."""

    def __init__(self):
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, values):
        values = np.asarray(values, np.float64).reshape(-1, values.shape[-1])
        count, mean = len(values), values.mean(axis=0)
        m2 = ((values - mean) ** 2).sum(axis=0)
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * count / total
        self.m2 = self.m2 + m2 + delta**2 * self.count * count / total
        self.count = total

    @property
    def std(self):
        return np.sqrt(self.m2 / self.count)


def _batches(images, batch_size):
    """The calibration images as a list of NumPy batches (images only)."""
    if isinstance(images, np.ndarray) or (hasattr(images, "shape") and not hasattr(images, "element_spec")):
        array = np.asarray(images)
        if array.ndim != 4 or not len(array):
            raise UsageError(f"calibrate_xbn: `images` must be a batch of images (N, height, width, channels); got "
                             f"an array of shape {array.shape}.")
        return [array[i:i + batch_size] for i in range(0, len(array), batch_size)]
    batches = []
    for element in images:
        batch = element[0] if isinstance(element, (tuple, list)) else element
        batches.append(np.asarray(batch))
    if not batches:
        raise UsageError("calibrate_xbn: `images` gave no batch; pass a few hundred images.")
    return batches


def _channels_last(values, axis):
    return values if axis in (-1, values.ndim - 1) else np.moveaxis(values, axis, -1)


def calibrate_xbn(xbn_model, bn_model, images, batch_size=32, progress=None):
    """Calibrate the GroupNorms of ``xbn_model`` that took BatchNorms' places in ``bn_model``.

    A trained BatchNorm, while training, gives its output the per-channel
    mean ``beta`` and spread ``|gamma| * sqrt(v / (v + epsilon))`` (``v``:
    the variance of its input), whatever its input: that is what the
    layers after it learnt to take.  For each pair, in the order of the
    network, the GroupNorm's scale and offset are set so that its output
    has exactly that mean and spread, channel by channel, over ``images``
    (every image and position): the GroupNorm then hands on what the
    BatchNorm did, normalized per image instead of per batch.  Layers are
    calibrated one after the other, each on the activations the already
    calibrated layers before it give.  The BatchNorm's moving statistics are
    not used: in a network whose estimates are off (the estimation shift
    XBN removes) they would carry the error over.  Every other weight is
    left as it is (``xbn_model`` should hold ``bn_model``'s, as
    :func:`to_xbn` and :func:`xbn.models.transfer_weights` give).

    Args:
        xbn_model: the XBN network (a functional model).
        bn_model: the BatchNorm network it was made from (its BatchNorms'
            ``gamma``, ``beta`` and ``epsilon`` are read).
        images: images in the form the models take: an array, or a
            ``tf.data.Dataset`` of image batches or ``(images, labels)``
            batches.
        batch_size: the batch size for an array.
        progress: ``progress(line)`` for a line per calibrated layer.

    Returns:
        A :class:`CalibrationReport`.
    """
    owner = "calibrate_xbn"
    batch_size = _checks.check_int(owner, "batch_size", batch_size, minimum=1)
    for what, model in (("xbn_model", xbn_model), ("bn_model", bn_model)):
        if not isinstance(model, keras.Model) or not _graph.is_functional(model):
            raise UsageError(f"{owner}: `{what}` must be a functional keras model; got {type(model).__name__}.")
    norms = {layer.name: layer for layer in bn_model.layers if is_batch_norm(layer)}
    pairs = []
    for layer in xbn_model.layers:
        if not isinstance(layer, GroupNorm):
            continue
        source = norms.get(layer.name) or next((bn for name, bn in norms.items() if gn_name(name) == layer.name),
                                               None)
        if source is None:
            continue
        if layer.gamma is None or layer.beta is None:
            raise UsageError(f"{owner}: GroupNorm {layer.name!r} has no scale or offset (scale=False or "
                             "center=False) to calibrate.")
        pairs.append((layer, source))
    if not pairs:
        raise UsageError(f"{owner}: no GroupNorm of {xbn_model.name!r} takes the place of a BatchNorm of "
                         f"{bn_model.name!r} (by name: conv2_block1_2_bn -> conv2_block1_2_gn); nothing to calibrate.")
    batches = _batches(images, batch_size)
    count = sum(len(b) for b in batches)
    inputs = xbn_model.inputs[0] if len(xbn_model.inputs) == 1 else xbn_model.inputs
    flat = {}
    for index, (gn, bn) in enumerate(pairs):
        gamma, beta = gn.gamma, gn.beta
        gamma.assign(np.ones(gamma.shape, gamma.dtype))  # the output is then the normalized input
        beta.assign(np.zeros(beta.shape, beta.dtype))
        raw, normalized = _Moments(), _Moments()
        probe = keras.Model(inputs, [gn.input, gn.output])
        for batch in batches:
            x, z = probe(batch, training=False)
            raw.update(_channels_last(keras.ops.convert_to_numpy(x), gn.axis))
            normalized.update(_channels_last(keras.ops.convert_to_numpy(z), gn.axis))
        bn_gamma = np.asarray(keras.ops.convert_to_numpy(bn.gamma), np.float64) if bn.gamma is not None else 1.0
        bn_beta = np.asarray(keras.ops.convert_to_numpy(bn.beta), np.float64) if bn.beta is not None else 0.0
        variance = raw.std**2
        target = bn_gamma * np.sqrt(variance / (variance + bn.epsilon))  # signed: gamma's sign carries over
        spread = normalized.std
        still = spread < 1e-6
        scale = np.where(still, 1.0, target / np.where(still, 1.0, spread))
        gamma.assign(scale.astype(gamma.dtype))
        beta.assign((bn_beta - scale * normalized.mean).astype(beta.dtype))
        if still.any():
            flat[gn.name] = int(still.sum())
        if progress is not None:
            progress(f"calibrated {gn.name} ({index + 1}/{len(pairs)}) to {bn.name} on {count} images")
    return CalibrationReport({gn.name: bn.name for gn, bn in pairs}, count, flat)
