"""Folding BatchNorm into the preceding convolution, for deployment.

At inference a BatchNorm is a fixed per-channel affine map,
``y = gamma * (x - mean) / sqrt(var + eps) + beta``.  When it directly follows
a convolution ``x = w * input + b`` it can be merged into it (seeds 000 and
001)::

    s  = gamma / sqrt(var + eps)            per output channel
    w' = w * s
    b' = (b - mean) * s + beta

For a ``DepthwiseConv2D`` the output channel ``c * multiplier + m`` takes the
factor of that channel.  A :class:`~xbn.layers.WSConv2D` becomes a plain
``Conv2D`` holding its standardized kernel (then folded with a following BN
like any conv).  GroupNorm stays: its statistics are computed per sample at
run time and cannot be folded.

A BatchNorm is left in place, and the report says why, when folding would
not be exact: its input is not a convolution's output (it comes first, or
follows an activation or an addition), the convolution has an activation or
is shared, its output also feeds another layer, or the BN normalizes
another axis than the convolution's channels.

>>> import keras
>>> from xbn.fold import fold_batchnorm
>>> from xbn.models import mobilenetv2
>>> folded, report = fold_batchnorm(mobilenetv2(alpha=0.35, input_shape=(32, 32, 3)))
>>> len(report.folded), report.kept
(52, {})
"""

import dataclasses

import keras
import numpy as np

from xbn import _graph
from xbn.errors import UsageError, UsageTypeError
from xbn.layers import WSConv2D
from xbn.layers.norms import is_batch_norm


@dataclasses.dataclass
class FoldReport:
    """What :func:`fold_batchnorm` did.

    Attributes:
        folded: ``[(conv name, bn name)]`` merged pairs.
        kept: ``{bn name: reason}`` for every BatchNorm left in place.
        standardized: WSConv2D layers turned into plain Conv2D.
    """

    folded: list
    kept: dict
    standardized: list

    def summary(self):
        text = f"folded {len(self.folded)} BatchNorm layers into their convolutions"
        if self.standardized:
            text += f", froze {len(self.standardized)} weight-standardized kernels"
        if self.kept:
            text += f"; kept {len(self.kept)} BatchNorm layers ({', '.join(sorted(self.kept)[:4])}...)"
        return text


@keras.saving.register_keras_serializable(package="xbn")
class FoldedBatchNorm(keras.layers.Layer):
    """What remains of a BatchNorm folded into its convolution: nothing.

    A pass-through with BatchNorm's call signature (``training``, ``mask``),
    so that the folded model keeps the source's graph and layer names.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, training=None, mask=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


def _fold_partner(bn, model, consumers):
    """The conv ``bn`` can fold into, or ``(None, reason)``."""
    if _graph.call_count(bn) != 1:
        return None, "it is called more than once"
    source = _graph.input_layer(bn)
    is_conv = isinstance(source, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
    if not is_conv:
        return None, f"its input comes from {source.name!r} ({type(source).__name__}), not a convolution"
    if _graph.call_count(source) != 1:
        return None, f"the convolution {source.name!r} is shared"
    if source.activation not in (None, keras.activations.linear):
        return None, f"the convolution {source.name!r} has an activation"
    others = [layer.name for layer in consumers[source.name] if layer is not bn]
    if others or source.name in _graph.output_layer_names(model):
        return None, f"the output of {source.name!r} also feeds {others or 'the model output'}"
    rank = len(bn.input.shape)
    channel_axis = -1 if source.data_format == "channels_last" else 1
    if bn.axis % rank != channel_axis % rank:
        return None, f"it normalizes axis {bn.axis}, not the channels of {source.name!r}"
    return source, None


def _bn_scale_shift(bn):
    gamma = np.asarray(bn.gamma.numpy(), np.float64) if bn.scale else 1.0
    beta = np.asarray(bn.beta.numpy(), np.float64) if bn.center else 0.0
    mean = np.asarray(bn.moving_mean.numpy(), np.float64)
    var = np.asarray(bn.moving_variance.numpy(), np.float64)
    scale = gamma / np.sqrt(var + bn.epsilon)
    return scale, beta - mean * scale


def _conv_kernel(conv):
    if isinstance(conv, WSConv2D):
        return np.asarray(conv.standardized_kernel(), np.float64)
    return np.asarray(conv.kernel.numpy(), np.float64)  # depthwise kernels too


def _folded_weights(conv, bn):
    """``(kernel, bias)`` of ``conv`` with ``bn`` (or None) merged in."""
    kernel = _conv_kernel(conv)
    depthwise = isinstance(conv, keras.layers.DepthwiseConv2D)
    channels = kernel.shape[2] * kernel.shape[3] if depthwise else kernel.shape[3]
    bias = np.asarray(conv.bias.numpy(), np.float64) if conv.use_bias else np.zeros(channels)
    if bn is None:
        return kernel, bias
    scale, shift = _bn_scale_shift(bn)
    if depthwise:
        kh, kw, cin, mult = kernel.shape
        kernel = kernel * scale.reshape(1, 1, cin, mult)
    else:
        kernel = kernel * scale  # last axis: output channels
    return kernel, bias * scale + shift


def fold_batchnorm(model):
    """An inference-only copy of ``model`` with BatchNorm folded into convs.

    Args:
        model: a functional keras model (xbn's or keras.applications').

    Returns:
        ``(folded_model, report)``: the new model (same inputs, outputs and
        layer names; each folded BatchNorm is replaced by a pass-through
        :class:`FoldedBatchNorm` named ``<bn>_folded``; frozen,
        ``trainable=False``, as it is for inference only) and a
        :class:`FoldReport`.  The source model is not modified.
    """
    if not isinstance(model, keras.Model):
        raise UsageTypeError(f"fold_batchnorm: expected a keras Model; got {type(model).__name__}.")
    if not hasattr(model, "_nodes_by_depth"):  # Functional and Sequential models have a graph
        raise UsageError(
            f"fold_batchnorm: {model.name!r} is a subclassed model, whose layer graph "
            "cannot be rewritten; build it functionally (as every xbn model is)."
        )
    consumers = _graph.consumers(model)
    partner_of_conv, folded, kept = {}, [], {}
    for layer in model.layers:
        if is_batch_norm(layer):
            conv, reason = _fold_partner(layer, model, consumers)
            if conv is None:
                kept[layer.name] = reason
            else:
                partner_of_conv[conv.name] = layer
                folded.append((conv.name, layer.name))
    folded_bns = {bn for _, bn in folded}
    standardized = [layer.name for layer in model.layers if isinstance(layer, WSConv2D)]
    new_weights = {}

    def clone(layer):
        if layer.name in folded_bns:
            return FoldedBatchNorm(name=f"{layer.name}_folded")
        is_conv = isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
        if is_conv and (layer.name in partner_of_conv or isinstance(layer, WSConv2D)):
            config = layer.get_config()
            config.pop("eps", None)
            config["use_bias"] = True
            config["bias_initializer"] = "zeros"
            depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
            cls = keras.layers.DepthwiseConv2D if depthwise else keras.layers.Conv2D
            new_weights[layer.name] = _folded_weights(layer, partner_of_conv.get(layer.name))
            return cls.from_config(config)
        return layer.__class__.from_config(layer.get_config())

    folded_model = keras.models.clone_model(model, clone_function=clone)
    for layer in folded_model.layers:
        if layer.name in new_weights:
            kernel, bias = new_weights[layer.name]
            layer.set_weights([kernel.astype("float32"), bias.astype("float32")])
        elif layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    # Inference only: training it would update weights whose BatchNorm is gone
    # (and the remaining BatchNorms' statistics); frozen, it cannot be by mistake.
    folded_model.trainable = False
    return folded_model, FoldReport(folded, kept, standardized)
