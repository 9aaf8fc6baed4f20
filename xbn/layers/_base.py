"""What BatchNorm and GroupNorm share: the affine (gamma/beta) arguments.

Both layers take keras' argument names and defaults for the channel axis,
``epsilon`` and the learned scale ``gamma`` and offset ``beta`` (with their
initializers, regularizers and constraints), validate them the same way and
serialize them the same way.  This base class holds that, so that each layer
file is only about its own statistics.
"""

import keras
from keras import constraints
from keras import initializers
from keras import ops
from keras import regularizers

from xbn import _checks

BACKEND = keras.backend.backend()


def use_tf_fast_path():
    """Whether the TensorFlow-only kernels may be used by the layers."""
    return BACKEND == "tensorflow"


class AffineNormalization(keras.layers.Layer):
    """Base of xbn's normalization layers: axis, epsilon, gamma and beta.

    Not public: use :class:`xbn.layers.BatchNorm` or
    :class:`xbn.layers.GroupNorm`.
    """

    def __init__(
        self,
        axis=-1,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        owner = type(self).__name__
        self.axis = _checks.check_int(owner, "axis", axis)
        self.epsilon = _checks.check_float(
            owner, "epsilon", epsilon, minimum=0.0, min_inclusive=False
        )
        self.center = _checks.check_bool(owner, "center", center)
        self.scale = _checks.check_bool(owner, "scale", scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.supports_masking = True
        self.gamma = None
        self.beta = None

    # -- building ---------------------------------------------------------
    def _channel_axis(self, input_shape):
        """The channel axis as a non-negative index, checked against the rank."""
        rank = len(input_shape)
        if not -rank <= self.axis < rank:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': axis={self.axis} is out of "
                f"range for an input of rank {rank} (shape {tuple(input_shape)}); "
                f"use an axis in [{-rank}, {rank - 1}]."
            )
        axis = self.axis % rank
        if input_shape[axis] is None:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': the channel axis {self.axis} "
                f"of the input shape {tuple(input_shape)} must be known when the "
                "layer is built; give the model a static channel count."
            )
        return axis

    def _add_affine_weights(self, channels):
        """Create ``gamma`` then ``beta``, as keras' norm layers do."""
        if self.scale:
            self.gamma = self.add_weight(
                shape=(channels,),
                name="gamma",
                initializer=self.gamma_initializer,
                regularizer=self.gamma_regularizer,
                constraint=self.gamma_constraint,
                trainable=True,
                autocast=False,
            )
        if self.center:
            self.beta = self.add_weight(
                shape=(channels,),
                name="beta",
                initializer=self.beta_initializer,
                regularizer=self.beta_regularizer,
                constraint=self.beta_constraint,
                trainable=True,
                autocast=False,
            )

    def _affine(self, channels, dtype):
        """``(gamma, beta)`` cast to ``dtype``; ones/zeros where disabled."""
        gamma = (
            ops.cast(self.gamma, dtype) if self.scale else ops.ones((channels,), dtype)
        )
        beta = (
            ops.cast(self.beta, dtype) if self.center else ops.zeros((channels,), dtype)
        )
        return gamma, beta

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        config = {
            "axis": self.axis,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "beta_regularizer": regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            "beta_constraint": constraints.serialize(self.beta_constraint),
            "gamma_constraint": constraints.serialize(self.gamma_constraint),
        }
        return {**super().get_config(), **config}


def statistics_dtype(dtype):
    """The dtype statistics are computed in: float32, or float64 for float64."""
    return "float64" if keras.backend.standardize_dtype(dtype) == "float64" else "float32"


# An input is centred on a pivot before its statistics are taken when some
# channel's mean lies more than PIVOT_RATIO standard deviations from zero,
# judged on PIVOT_SAMPLES positions of the batch.  The float32 sums of the
# statistics lose accuracy in proportion to that ratio (mean 1e4 with unit
# spread: TensorFlow's fused kernel is off by 1.4e-2, keras' layer by 7e-3);
# centred, the same batch is exact to 3e-6.  Below the threshold the input
# is left as it is, so an ordinary layer pays nothing: an unconditional
# centring cost 9% of a ResNet-50 step under XLA and 23% of BatchNorm's
# fused forward+backward.
PIVOT_RATIO = 8.0
PIVOT_SAMPLES = 16


def _sample(x, axis, axes):
    """A few positions of ``x`` per channel, as ``(samples, C)``: 16 spread over
    a channels-last input, else the batch at the first position of the rest."""
    if axis == len(x.shape) - 1:
        rows = ops.reshape(x, (-1, x.shape[-1]))
        count = ops.shape(rows)[0]
        index = ops.cast(ops.linspace(0.0, ops.cast(count - 1, "float32"), PIVOT_SAMPLES), "int32")
        return ops.take(rows, index, axis=0)
    first = axes[0]
    index = tuple(slice(None) if i in (first, axis) else 0 for i in range(len(x.shape)))
    sample = x[index]  # the two axes kept, in their order
    return sample if first < axis else ops.transpose(sample)


def centre(x, axis, axes):
    """``(x - shift, shift)``: ``x`` centred where its channels sit far from zero.

    Moments are shift-invariant, so the statistics of the centred ``x`` give
    those of ``x`` (add ``shift`` back to the mean), but the float32 sums then
    see values of the order of the spread, not of the mean: a mean of 1e4
    with unit spread is as exact as a mean of 0.  The shift (the mean of a
    sample of positions, or 0 where no channel needs it, see
    :data:`PIVOT_RATIO`) gets no gradient; none flows through it in exact
    arithmetic either.

    Args:
        x: the input, any rank.
        axis: its channel axis (non-negative).
        axes: the reduced axes (every other one).

    Returns:
        ``(centred x, shift)``, ``shift`` a ``(C,)`` vector of ``x``'s dtype.
    """
    sample = ops.cast(_sample(x, axis, axes), "float32")
    mean = ops.mean(sample, axis=0)
    spread = ops.std(sample, axis=0)
    need = ops.any(ops.abs(mean) > PIVOT_RATIO * spread)
    # Rounded to x's dtype first: that exact value is subtracted and added back.
    shift = ops.stop_gradient(ops.where(need, ops.cast(mean, x.dtype), ops.zeros_like(mean, dtype=x.dtype)))
    shape = [1] * len(x.shape)
    shape[axis] = -1
    centred = ops.cond(need, lambda: x - ops.reshape(shift, shape), lambda: x)
    return centred, shift


def moments(x, axes):
    """Mean and biased variance over ``axes`` by two passes (portable path).

    ``var = mean((x - mean)^2)``: never ``E[x^2] - E[x]^2``, which loses every
    digit when the mean is large against the spread (see also :func:`centre`).
    """
    mean = ops.mean(x, axis=axes, keepdims=True)
    variance = ops.mean(ops.square(x - ops.stop_gradient(mean)), axis=axes, keepdims=True)
    return mean, variance
