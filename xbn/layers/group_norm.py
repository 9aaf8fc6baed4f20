"""Group normalization (Wu & He, 2018, arXiv:1803.08494).

A drop-in replacement for ``keras.layers.GroupNormalization`` and for the
end-of-life ``tensorflow_addons.layers.GroupNormalization`` (same argument
names and defaults, so code written for either moves over by changing the
import).  The channels are split into ``groups`` contiguous groups and each
sample is normalized with the mean and variance of each of its groups, taken
over the spatial axes and the group's ``C / groups`` channels: ``N x G``
means and variances per batch.  Nothing is stored but ``gamma`` and ``beta``,
so training and inference compute exactly the same thing and the result
never depends on the batch.

On the TensorFlow backend a channels-last input takes a hand-written kernel
with an analytic gradient (about 2x faster than keras' layer on a CPU, see
``xbn-bench``); every other case runs the portable ``keras.ops`` version.
Statistics are computed in float32 under mixed precision, by two passes.
"""

import math
import warnings

import keras
from keras import ops

from xbn import _checks
from xbn.errors import UsageError
from xbn.layers import _base, _dispatch, _portable


@keras.saving.register_keras_serializable(package="xbn")
class GroupNorm(_base.AffineNormalization):
    """Normalize each sample over groups of channels.

    For an input ``(N, H, W, C)`` and ``G = groups``::

        x viewed as (N, H, W, G, C // G)
        mean, var = mean and biased variance over (H, W, C // G): shape (N, G)
        y = gamma * (x - mean) / sqrt(var + epsilon) + beta

    ``groups=1`` is LayerNorm over ``H, W, C`` (with per-channel ``gamma`` and
    ``beta``); ``groups=-1`` (or ``groups=C``) is InstanceNorm.

    Args:
        groups: number of groups, a positive divisor of the channel count, or
            ``-1`` for one group per channel.  Defaults to 32.
        axis: the channel axis.  Defaults to ``-1``.
        epsilon: small positive float added to the variance.  Defaults to 1e-3
            (keras' and tensorflow-addons' default; the GN paper uses 1e-5).
        center, scale, beta_initializer, gamma_initializer, beta_regularizer,
        gamma_regularizer, beta_constraint, gamma_constraint: as in
            ``keras.layers.GroupNormalization``.
        requested_groups: the group count a model builder was asked for,
            where it used ``groups`` (a divisor of the channels) instead;
            recorded only (xbn's, not keras').
        **kwargs: base layer arguments (``name``, ``dtype``, ``trainable``).

    Raises:
        ValueError: at build time, naming the layer, the channel count and
            the group count, when ``groups`` does not divide the channels.

    Warns:
        UserWarning: at build time, when the spatial size is known and each
            group holds at most 2 values per sample (its output would then
            be beta, or +-gamma + beta, whatever the input).

    Example:

    >>> import numpy as np
    >>> from xbn.layers import GroupNorm
    >>> gn = GroupNorm(groups=2, epsilon=1e-5)
    >>> x = np.arange(2 * 3 * 3 * 4, dtype="float32").reshape(2, 3, 3, 4)
    >>> group = np.asarray(gn(x))[0, ..., :2]  # sample 0, group 0
    >>> abs(float(group.mean())) < 1e-6, round(float(group.std()), 4)
    (True, 1.0)
    """

    def __init__(
        self,
        groups=32,
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
        requested_groups=None,
        **kwargs,
    ):
        super().__init__(
            axis=axis,
            epsilon=epsilon,
            center=center,
            scale=scale,
            beta_initializer=beta_initializer,
            gamma_initializer=gamma_initializer,
            beta_regularizer=beta_regularizer,
            gamma_regularizer=gamma_regularizer,
            beta_constraint=beta_constraint,
            gamma_constraint=gamma_constraint,
            **kwargs,
        )
        # keras raises ValueError for groups=1.5 or "32" too.
        self.groups = _checks.check_int(
            "GroupNorm", "groups", groups, minimum=1, allowed=(-1,), type_error=ValueError
        )
        # What a model builder was asked for where it used a divisor of the
        # channels instead (xbn.layers.norms.resolve_groups); not keras'.
        self.requested_groups = None if requested_groups is None else _checks.check_int(
            "GroupNorm", "requested_groups", requested_groups, minimum=1)
        # Statistics are upcast inside call; do not let keras cast the inputs
        # of a float16 policy up front (as keras' GroupNormalization does).
        self.autocast = False

    def build(self, input_shape):
        axis = self._channel_axis(input_shape)
        channels = input_shape[axis]
        groups = channels if self.groups == -1 else self.groups
        if channels % groups:
            divisors = [d for d in range(1, channels + 1) if channels % d == 0]
            problem = (
                f"groups={groups} is more than the {channels} channels of the input"
                if groups > channels
                else f"the input has {channels} channels, which cannot be split into "
                f"groups={groups} equal groups"
            )
            raise UsageError(
                f"GroupNorm '{self.name}': {problem}. Use a group count that divides "
                f"{channels}: one of {divisors}."
            )
        self._warn_if_degenerate(input_shape, axis, channels // groups)
        self._groups = groups
        self._axis_index = axis
        self._add_affine_weights(channels)
        self.input_spec = keras.layers.InputSpec(
            ndim=len(input_shape), axes={self.axis: channels}
        )

    def _warn_if_degenerate(self, input_shape, axis, channels_per_group):
        """Warn when a group holds at most 2 values per sample.

        A group of one value normalizes to exactly 0 (the output is ``beta``
        whatever the input), a group of two to +-1 (up to epsilon): the layer then
        destroys the information it should only rescale.  This happens with
        many groups on narrow layers at small spatial sizes (e.g. 32 groups
        on 56 channels at 1x1 pixel), and the network does not train.
        """
        spatial = [d for i, d in enumerate(input_shape) if i not in (0, axis)]
        if any(d is None for d in spatial):
            return
        positions = math.prod(spatial)
        values = positions * channels_per_group
        if values <= 2:
            outcome = "exactly beta" if values == 1 else "+-gamma + beta (up to epsilon)"
            warnings.warn(
                f"GroupNorm '{self.name}': each group normalizes only {values} value(s) per "
                f"sample ({channels_per_group} channel(s) x {positions} position(s) "
                f"for input shape {tuple(input_shape)}), so its output is {outcome} whatever "
                "the input. Use fewer groups (more channels per group) or larger inputs.",
                UserWarning,
                stacklevel=2,
            )

    def call(self, inputs):
        channels = inputs.shape[self._axis_index]
        gamma, beta = self._affine(channels, _portable.work_dtype(inputs.dtype))
        outputs = _dispatch.group_norm(inputs, gamma, beta, self._groups, self.epsilon, self._axis_index)
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self):
        config = {**super().get_config(), "groups": self.groups}
        if self.requested_groups is not None:
            config["requested_groups"] = self.requested_groups
        return config
