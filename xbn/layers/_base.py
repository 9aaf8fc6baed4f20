"""What BatchNorm and GroupNorm share: the affine (gamma/beta) arguments.

Both layers take keras' argument names and defaults for the channel axis,
``epsilon`` and the learned scale ``gamma`` and offset ``beta`` (with their
initializers, regularizers and constraints), validate them the same way and
serialize them the same way.  This base class holds that, so that each layer
file is only about its own statistics.
"""

import keras
from keras import constraints, initializers, ops, regularizers

from xbn import _checks
from xbn.errors import UsageError


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
            raise UsageError(
                f"{type(self).__name__} '{self.name}': axis={self.axis} is out of "
                f"range for an input of rank {rank} (shape {tuple(input_shape)}); "
                f"use an axis in [{-rank}, {rank - 1}]."
            )
        axis = self.axis % rank
        if input_shape[axis] is None:
            raise UsageError(
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
