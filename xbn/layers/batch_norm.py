"""Batch normalization (Ioffe & Szegedy, 2015, arXiv:1502.03167), and batch
renormalization (Ioffe, 2017, arXiv:1702.03275).

A drop-in replacement for ``keras.layers.BatchNormalization`` that

- takes the same arguments with the same defaults and creates the same
  weights in the same order (``gamma, beta, moving_mean, moving_variance``,
  and with ``renorm=True`` ``moving_stddev, renorm_mean, renorm_stddev``),
  so ``set_weights``/``get_weights`` and ``get_config``/``from_config`` move
  between the two in both directions;
- on the TensorFlow backend runs TensorFlow's fused kernel where the input
  allows it (about 2x faster forward+backward on a CPU than keras' layer,
  see ``xbn-bench``) and a portable ``keras.ops`` implementation elsewhere;
- computes its statistics in float32 under ``mixed_float16`` and
  ``mixed_bfloat16``, never forms a variance as ``E[x^2] - E[x]^2``, and
  centres inputs whose channels sit far from zero (a mean of 1e4 with unit
  spread) before taking their statistics, so that such inputs lose nothing;
- with ``synchronized=True`` reduces the batch statistics across the replicas
  of a ``tf.distribute`` strategy with a numerically robust formula.
"""

import math
import numbers

import keras
from keras import initializers, ops

from xbn import _checks
from xbn.errors import UsageError, UsageTypeError
from xbn.layers import _base, _dispatch, _portable

RENORM_CLIPPING_KEYS = ("rmax", "rmin", "dmax")


@keras.saving.register_keras_serializable(package="xbn")
class BatchNorm(_base.AffineNormalization):
    """Normalize each channel with the batch's statistics (training) or the
    moving averages of them (inference).

    Training (``training=True`` and ``trainable=True``)::

        mean, var = batch mean and *biased* variance over every axis but `axis`
        y = gamma * (x - mean) / sqrt(var + epsilon) + beta
        moving_mean     = momentum * moving_mean     + (1 - momentum) * mean
        moving_variance = momentum * moving_variance + (1 - momentum) * var

    Inference (``training=False``, or the layer frozen with
    ``trainable=False``, exactly as keras does it) uses ``moving_mean`` and
    ``moving_variance`` instead of the batch statistics.

    ``moving_variance`` stores the **biased** batch variance (divided by the
    number of values per channel ``n``, not ``n - 1``), which is what Keras 3's
    ``BatchNormalization`` stores.  (Keras 2's fused path and PyTorch store
    the unbiased one; the difference is a factor ``n / (n - 1)``.)

    **Batch renormalization** (``renorm=True``, Ioffe 2017, keras' own answer
    to small batches) keeps normalizing with the batch statistics but
    corrects the result towards running averages of them, so that training
    sees what inference will::

        s = sqrt(var + epsilon)
        r = clip(s / renorm_stddev, rmin, rmax)       # no gradient
        d = clip((mean - renorm_mean) / renorm_stddev, -dmax, dmax)
        y = gamma * ((x - mean) / s * r + d) + beta

    ``renorm_mean``/``renorm_stddev`` follow the batch with
    ``renorm_momentum``; ``moving_mean``/``moving_stddev`` (and
    ``moving_variance = moving_stddev^2 - epsilon``) with ``momentum``, for
    inference, which is plain BN with the moving statistics.  The weights,
    their names and this update rule are keras' exactly.  Renormalization
    runs on the portable path (the fused kernel cannot apply ``r, d``).

    Args:
        axis: the channel axis (``-1`` for channels-last, ``1`` for
            channels-first images).
        momentum: weight of the old value in the moving averages, in [0, 1).
        epsilon: small positive float added to the variance.
        center: whether to add the learned offset ``beta``.
        scale: whether to multiply by the learned scale ``gamma``.
        beta_initializer, gamma_initializer: initializers of ``beta``/``gamma``.
        moving_mean_initializer, moving_variance_initializer: initializers
            of the moving statistics.
        beta_regularizer, gamma_regularizer: optional regularizers.
        beta_constraint, gamma_constraint: optional constraints.
        renorm: use batch renormalization (see above).
        renorm_clipping: with ``renorm``, a dict with optional keys
            ``"rmax"``, ``"rmin"``, ``"dmax"`` bounding ``r`` to
            ``[rmin, rmax]`` and ``d`` to ``[-dmax, dmax]`` (missing keys:
            ``inf``, ``0``, ``inf``).
        renorm_momentum: momentum of ``renorm_mean`` and ``renorm_stddev``,
            in [0, 1).
        renorm_ramp: with ``renorm``, the schedule of Ioffe (2017), who
            starts from plain BN and relaxes the clipping over training
            (rmax from 1 to 3 over steps 5k-40k, dmax from 0 to 5 over
            5k-25k): a dict ``{"rmax": (start, end), "dmax": (start, end)}``
            of training steps; before ``start`` the bound is plain BN's
            (``rmax = rmin = 1``, ``dmax = 0``), after ``end`` it is
            ``renorm_clipping``'s, linear in between (``rmin`` follows
            ``rmax``).  The layer counts its training steps in a weight
            ``renorm_step`` after keras' weights.  Not part of keras' layer
            (it appears in ``get_config()`` only when set).
        synchronized: under a ``tf.distribute`` strategy, compute the batch
            statistics over the global batch (all replicas) instead of each
            replica's share.  Outside a strategy it changes nothing; on JAX,
            whose data-parallel arrays are global, the statistics are always
            the global batch's (as keras' layer does there); PyTorch trains
            on one device.
        fused: which kernels run.  ``None`` (default) picks the fastest
            exact one: on TensorFlow, its fused kernel in inference, and in
            training on a GPU (cuDNN), where the input allows it
            (float16/bfloat16/float32, channel axis last or axis 1 of a 4-D
            input, ``epsilon >= 1.001e-5``, no mask, not synchronized
            across replicas, not renormalizing, not inside an XLA-compiled
            function, where XLA fuses the portable maths into its
            neighbours); training on a CPU takes the portable maths, 2x
            keras' layer with gradients more accurate than keras' (the CPU
            kernel's were 2-3x less accurate than keras' on an AMD EPYC);
            on PyTorch, its native ``batch_norm`` kernel in training.
            ``False`` always uses the portable ``keras.ops`` implementation
            (what JAX runs).  ``True`` requires TensorFlow's fused kernel in
            both modes, with its own batch statistics, and raises where it
            cannot be used.  Not part of keras' layer: it appears in
            ``get_config()`` only when set, so default configs load into
            ``keras.layers.BatchNormalization`` too.
        **kwargs: base layer arguments (``name``, ``dtype``, ``trainable``).

    Call arguments:
        inputs: tensor of rank >= 2.
        training: whether to normalize with the batch statistics and update
            the moving averages.
        mask: optional boolean tensor with one dimension less than
            ``inputs``, in keras' convention (every axis but the last, as
            ``keras.layers.Masking`` makes it; broadcast over the last axis
            whatever ``axis`` is).  Masked-out positions do not count towards
            the batch statistics, and their values (NaN or inf included)
            never reach them.

    Example:

    >>> import numpy as np
    >>> from xbn.layers import BatchNorm
    >>> bn = BatchNorm(momentum=0.9, epsilon=1e-3)
    >>> x = np.array([[1.0], [3.0]], dtype="float32")  # mean 2, variance 1
    >>> [round(float(v), 4) for v in np.asarray(bn(x, training=True)).ravel()]
    [-0.9995, 0.9995]
    >>> round(float(bn.moving_mean[0]), 6), round(float(bn.moving_variance[0]), 6)
    (0.2, 1.0)
    """

    def __init__(
        self,
        axis=-1,
        momentum=0.99,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        moving_mean_initializer="zeros",
        moving_variance_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        renorm=False,
        renorm_clipping=None,
        renorm_momentum=0.99,
        synchronized=False,
        fused=None,
        renorm_ramp=None,
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
        owner = "BatchNorm"
        self.momentum = _checks.check_float(
            owner, "momentum", momentum, minimum=0.0, maximum=1.0, max_inclusive=False
        )
        self.synchronized = _checks.check_bool(owner, "synchronized", synchronized)
        self.renorm = _checks.check_bool(owner, "renorm", renorm)
        self.renorm_momentum = _checks.check_float(
            owner, "renorm_momentum", renorm_momentum, minimum=0.0, maximum=1.0,
            max_inclusive=False,
        )
        # As keras: the clipping is checked (and None becomes {}) only with renorm.
        self.renorm_clipping = (
            _check_renorm_clipping(renorm_clipping) if self.renorm else renorm_clipping
        )
        self.renorm_ramp = _check_renorm_ramp(renorm_ramp, self.renorm, self.renorm_clipping)
        self.renorm_step = None
        if fused is not None:
            fused = _checks.check_bool(owner, "fused", fused)
            _dispatch.check_fused_argument(fused, self.renorm)
        self.fused = fused
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.moving_mean = None
        self.moving_variance = None
        self.moving_stddev = None
        self.renorm_mean = None
        self.renorm_stddev = None

    def build(self, input_shape):
        axis = self._channel_axis(input_shape)
        channels = input_shape[axis]
        self._add_affine_weights(channels)
        # Mean aggregation: under a tf.distribute strategy every replica's
        # update is averaged into the one mirrored value, as in Keras 2.
        self.moving_mean = self._add_statistic("moving_mean", channels, self.moving_mean_initializer)
        self.moving_variance = self._add_statistic(
            "moving_variance", channels, self.moving_variance_initializer
        )
        if self.renorm:
            # keras' names, order and initial values: the standard deviations
            # start at the square root of the variance initializer.
            stddev_initializer = _SqrtInitializer(self.moving_variance_initializer)
            self.moving_stddev = self._add_statistic("moving_stddev", channels, stddev_initializer)
            self.renorm_mean = self._add_statistic(
                "renorm_mean", channels, _clone_initializer(self.moving_mean_initializer)
            )
            self.renorm_stddev = self._add_statistic("renorm_stddev", channels, stddev_initializer)
            if self.renorm_ramp:  # xbn's own, after keras' weights
                self.renorm_step = self.add_weight(
                    shape=(), name="renorm_step", initializer="zeros", trainable=False, autocast=False,
                    aggregation="only_first_replica",
                )
        self.input_spec = keras.layers.InputSpec(
            ndim=len(input_shape), axes={self.axis: channels}
        )
        self._reduction_axes = [i for i in range(len(input_shape)) if i != axis]
        self._axis_index = axis
        _dispatch.check_fused_build(self, input_shape, axis)

    def _add_statistic(self, name, channels, initializer):
        return self.add_weight(
            shape=(channels,), name=name, initializer=initializer, trainable=False,
            autocast=False, aggregation="mean",
        )

    # -- forward ------------------------------------------------------------
    def call(self, inputs, training=None, mask=None):
        training = bool(training) and self.trainable
        if mask is not None and len(mask.shape) != len(inputs.shape) - 1:
            raise UsageError(
                f"BatchNorm '{self.name}': the mask must have one dimension less "
                f"than the inputs (every axis but the last, as keras.layers.Masking "
                f"makes it); got mask shape {tuple(mask.shape)} for inputs of shape "
                f"{tuple(inputs.shape)}."
            )
        path = _dispatch.batch_norm_path(self, inputs, training, mask)
        channels = self.moving_mean.shape[0]
        if path == "fused":
            gamma, beta = self._affine(channels, "float32")
            if not training:
                return _dispatch.fused_batch_norm(
                    inputs, gamma, beta, self.epsilon, self._axis_index,
                    mean=ops.convert_to_tensor(self.moving_mean), variance=ops.convert_to_tensor(self.moving_variance),
                )
            outputs, mean, variance = _dispatch.fused_batch_norm(inputs, gamma, beta, self.epsilon, self._axis_index)
            self._update_moving_statistics(mean, variance)
            return outputs
        work = _portable.work_dtype(inputs.dtype)
        gamma, beta = self._affine(channels, work)
        if path == "native":
            if not training:
                return _dispatch.native_batch_norm(inputs, gamma, beta, self.epsilon, self._axis_index,
                                                   mean=self.moving_mean.value, variance=self.moving_variance.value)
            outputs, mean, variance = _dispatch.native_batch_norm(inputs, gamma, beta, self.epsilon, self._axis_index)
            self._update_moving_statistics(mean, variance)
            return outputs
        if path == "statistics":
            policy = _dispatch.portable_policy()
            stats = _portable.batch_statistics(inputs, self._reduction_axes, policy)
            mean, variance = ops.reshape(stats.mean, (-1,)), ops.reshape(stats.variance, (-1,))
            if self.renorm:
                gamma, beta = self._renormalize(mean, variance, gamma, beta)
            else:
                self._update_moving_statistics(mean, variance)
            return _portable.batch_normalize(stats, gamma, beta, self.epsilon, policy)
        x = ops.cast(inputs, work)
        shape = self._broadcast_shape(x)
        if path == "moments":  # masked, or synchronized across tf.distribute replicas
            x, shift, mean, variance = self._batch_moments(x, mask)
            if self.renorm:
                gamma, beta = self._renormalize(mean + shift, variance, gamma, beta)
            else:
                self._update_moving_statistics(mean + shift, variance)
        else:  # "moving"
            mean = ops.cast(self.moving_mean, work)
            variance = ops.cast(self.moving_variance, work)
        scale = ops.rsqrt(variance + self.epsilon) * gamma
        # (x - mean) * scale + beta, not x * scale + (beta - mean * scale):
        # the latter cancels catastrophically when |mean| >> spread.  In
        # training x and mean are both centred on the same shift, so the
        # subtraction never meets a mean rounded at the scale of the offset.
        outputs = (x - ops.reshape(mean, shape)) * ops.reshape(scale, shape) + ops.reshape(beta, shape)
        return ops.cast(outputs, inputs.dtype)

    def _batch_moments(self, x, mask):
        """``(x - shift, shift, mean, variance)`` of a masked or synchronized
        batch, the last three of shape ``(C,)``: ``mean`` and ``variance``
        are those of ``x - shift``, so the batch mean is ``mean + shift``.
        (Unmasked local batches take :func:`xbn.layers._portable.batch_statistics`.)
        """
        axes = self._reduction_axes
        zero = ops.zeros((self.moving_mean.shape[0],), x.dtype)
        if mask is None:
            return _dispatch.synchronized_moments(x, axes)
        # keras' convention: the mask covers every axis but the last.
        keep = ops.broadcast_to(ops.expand_dims(ops.cast(mask, "bool"), -1), ops.shape(x))
        count = ops.maximum(ops.sum(ops.cast(keep, x.dtype), axis=axes), 1.0)
        # where(), not x * mask: NaN or inf at a masked position stays out.
        mean = ops.sum(ops.where(keep, x, 0.0), axis=axes) / count
        centred = ops.where(
            keep, x - ops.reshape(ops.stop_gradient(mean), self._broadcast_shape(x)), 0.0
        )
        variance = ops.sum(ops.square(centred), axis=axes) / count
        return x, zero, mean, variance

    def _broadcast_shape(self, x):
        shape = [1] * len(x.shape)
        shape[self._axis_index] = self.moving_mean.shape[0]
        return shape

    def _renormalize(self, mean, variance, gamma, beta):
        """Batch renormalization: keras' ``r, d`` corrections folded into
        ``(gamma, beta)``, and its updates of the four running statistics."""
        dtype = mean.dtype
        stddev = ops.sqrt(variance + self.epsilon)
        renorm_mean = ops.cast(self.renorm_mean, dtype)
        renorm_stddev = ops.cast(self.renorm_stddev, dtype)
        # Avoids dividing by (near) zero early in training, as keras does.
        safe_stddev = ops.maximum(renorm_stddev, math.sqrt(self.epsilon))
        r = stddev / safe_stddev
        d = (mean - renorm_mean) / safe_stddev
        clipping = self._clipping(dtype)
        if clipping.get("rmin") is not None:
            r = ops.maximum(r, clipping["rmin"])
        if clipping.get("rmax") is not None:
            r = ops.minimum(r, clipping["rmax"])
        if clipping.get("dmax") is not None:
            d = ops.clip(d, -clipping["dmax"], clipping["dmax"])
        r, d = ops.stop_gradient(r), ops.stop_gradient(d)
        keep = self.renorm_momentum
        self.renorm_mean.assign(ops.cast(renorm_mean * keep + mean * (1.0 - keep), self.renorm_mean.dtype))
        self.renorm_stddev.assign(
            ops.cast(renorm_stddev * keep + stddev * (1.0 - keep), self.renorm_stddev.dtype)
        )
        keep = self.momentum
        moving_mean = ops.cast(self.moving_mean, dtype)
        moving_stddev = ops.cast(self.moving_stddev, dtype) * keep + stddev * (1.0 - keep)
        self.moving_mean.assign(ops.cast(moving_mean * keep + mean * (1.0 - keep), self.moving_mean.dtype))
        self.moving_stddev.assign(ops.cast(moving_stddev, self.moving_stddev.dtype))
        # The variance inference uses, from the stddev (never below zero).
        self.moving_variance.assign(
            ops.cast(ops.relu(moving_stddev * moving_stddev - self.epsilon), self.moving_variance.dtype)
        )
        return r * gamma, d * gamma + beta

    def _clipping(self, dtype):
        """The clipping of this step: ``renorm_clipping``, or with
        ``renorm_ramp`` its bounds relaxed from plain BN's (r = 1, d = 0)
        linearly over their step ranges; advances the step counter."""
        clipping = dict(self.renorm_clipping)
        if not self.renorm_ramp:
            return clipping
        step = ops.cast(self.renorm_step, dtype)
        for bound, (start, end) in self.renorm_ramp.items():
            progress = ops.clip((step - start) / max(end - start, 1), 0.0, 1.0)
            if bound == "rmax":
                for key in ("rmax", "rmin"):
                    if clipping.get(key) is not None:
                        clipping[key] = 1.0 + (clipping[key] - 1.0) * progress
            else:
                clipping["dmax"] = clipping["dmax"] * progress
        self.renorm_step.assign(self.renorm_step + 1.0)
        return clipping

    def _update_moving_statistics(self, mean, variance):
        momentum = self.momentum
        moving_mean = ops.cast(self.moving_mean, mean.dtype)
        moving_variance = ops.cast(self.moving_variance, variance.dtype)
        self.moving_mean.assign(
            ops.cast(moving_mean * momentum + mean * (1.0 - momentum), self.moving_mean.dtype)
        )
        self.moving_variance.assign(
            ops.cast(
                moving_variance * momentum + variance * (1.0 - momentum),
                self.moving_variance.dtype,
            )
        )

    def get_config(self):
        config = {
            "momentum": self.momentum,
            "moving_mean_initializer": initializers.serialize(
                self.moving_mean_initializer
            ),
            "moving_variance_initializer": initializers.serialize(
                self.moving_variance_initializer
            ),
            "synchronized": self.synchronized,
            "renorm": self.renorm,
            "renorm_clipping": self.renorm_clipping,
            "renorm_momentum": self.renorm_momentum,
        }
        # keras' layer has no `fused` or `renorm_ramp` argument: a default
        # config loads into keras.layers.BatchNormalization too.
        if self.fused is not None:
            config["fused"] = self.fused
        if self.renorm_ramp:
            config["renorm_ramp"] = {key: list(value) for key, value in self.renorm_ramp.items()}
        return {**super().get_config(), **config}


def _check_renorm_clipping(clipping):
    """``renorm_clipping`` as keras takes it: None or a dict of rmax/rmin/dmax."""
    if clipping is None:
        return {}
    if not isinstance(clipping, dict):
        raise UsageTypeError(
            "BatchNorm: argument `renorm_clipping` must be None or a dict with the keys "
            f"'rmax', 'rmin', 'dmax'. Received: renorm_clipping={clipping!r}"
        )
    unknown = sorted(set(clipping) - set(RENORM_CLIPPING_KEYS))
    if unknown:
        raise UsageError(
            f"BatchNorm: `renorm_clipping` may only hold the keys 'rmax', 'rmin' and 'dmax'. "
            f"Received invalid keys: {unknown}. Received: renorm_clipping={clipping!r}"
        )
    for key, value in clipping.items():
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value)
        ):
            raise UsageError(
                f"BatchNorm: renorm_clipping['{key}'] must be a number (or None for no "
                f"bound). Received: renorm_clipping={clipping!r}"
            )
    rmax, rmin, dmax = (clipping.get(k) for k in RENORM_CLIPPING_KEYS)
    if rmin is not None and rmin < 0:
        raise UsageError(
            f"BatchNorm: renorm_clipping['rmin'] must be >= 0 (r is a ratio of standard "
            f"deviations). Received: renorm_clipping={clipping!r}"
        )
    if rmax is not None and rmin is not None and rmax < rmin:
        raise UsageError(
            "BatchNorm: renorm_clipping['rmax'] must be at least renorm_clipping['rmin'] (rmax should be >= "
            f"rmin: r is clipped to [rmin, rmax]). Received: renorm_clipping={clipping!r}"
        )
    if dmax is not None and dmax < 0:
        raise UsageError(
            "BatchNorm: renorm_clipping['dmax'] must be >= 0 (dmax should be non-negative: d is clipped to "
            f"[-dmax, dmax]). Received: renorm_clipping={clipping!r}"
        )
    return dict(clipping)


def _check_renorm_ramp(ramp, renorm, clipping):
    """``renorm_ramp``: None, or ``{"rmax": (start, end), "dmax": (start, end)}``
    in training steps (either key may be left out)."""
    if ramp is None or ramp == {}:
        return None
    if not renorm:
        raise UsageError("BatchNorm: renorm_ramp relaxes batch renormalization's clipping; it needs renorm=True.")
    if not isinstance(ramp, dict) or not ramp or set(ramp) - {"rmax", "dmax"}:
        raise UsageError(
            "BatchNorm: renorm_ramp must be a dict with the keys 'rmax' and/or 'dmax', each a (start, end) pair "
            f"of training steps, e.g. {{'rmax': (500, 4000), 'dmax': (500, 2500)}}. Received: renorm_ramp={ramp!r}"
        )
    checked = {}
    for key, steps in ramp.items():
        if clipping.get(key) is None:
            raise UsageError(
                f"BatchNorm: renorm_ramp['{key}'] ramps renorm_clipping['{key}'], which is not set; give "
                f"renorm_clipping a '{key}'. Received: renorm_clipping={clipping!r}"
            )
        if (not isinstance(steps, (tuple, list)) or len(steps) != 2
                or any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in steps)
                or not 0 <= steps[0] <= steps[1]):
            raise UsageError(
                f"BatchNorm: renorm_ramp['{key}'] must be a (start, end) pair of steps with 0 <= start <= end. "
                f"Received: renorm_ramp={ramp!r}"
            )
        checked[key] = (float(steps[0]), float(steps[1]))
    return checked


def _clone_initializer(initializer):
    """A fresh copy of a configurable initializer, so two weights get their own draws."""
    if isinstance(initializer, initializers.Initializer):
        return initializer.__class__.from_config(initializer.get_config())
    return initializer


class _SqrtInitializer(initializers.Initializer):
    """The square root of another initializer's values (renorm's standard deviations)."""

    def __init__(self, variance_initializer):
        self.variance_initializer = variance_initializer

    def __call__(self, shape, dtype=None):
        return ops.sqrt(_clone_initializer(self.variance_initializer)(shape, dtype=dtype))

