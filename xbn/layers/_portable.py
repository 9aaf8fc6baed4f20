"""The portable training maths of BatchNorm and GroupNorm, in ``keras.ops``.

This is what JAX, TensorFlow under XLA (``jit_compile=True``) and PyTorch
where no native kernel applies run.  It is written for compilers that fuse
elementwise work into reductions; each choice below was profiled (XLA on a
CPU and a GPU; the figures are in ``models/bench/README.md``):

- **No data-dependent branch, no gather, no shared input-sized temporary.**
  XLA cannot fuse across a ``cond``, so the whole input crossed memory again
  for one; and on XLA's CPU backend an elementwise expression (even a
  broadcast) that feeds two reductions is written out in full first.  So
  each pass over the input here has its own expression: where two passes
  need "``x`` minus a per-channel pivot", each takes its pivot from another
  position of the batch, which no compiler can merge.
- **Statistics around a pivot, in two passes.**  A channel (or group) whose
  values sit far from zero against their spread (a mean of 1e4 with unit
  spread) is centred on a pivot before summing: the value of the input at a
  position of the batch, which lies within a few standard deviations of the
  mean, so the float32 sums see values of the order of the spread and lose
  nothing.  The decision is per channel, a ``where`` on ``(C,)`` vectors
  (see :data:`PIVOT_RATIO`); the subtraction is always there (of 0 where it
  is not needed), so the computation has one shape.  Each pivot is the
  output of a small reduction (:func:`pivots`), which XLA computes once:
  taken as slices, XLA fused the whole pivot rule into every elementwise
  consumer and recomputed it per value of the input.  The mean offset
  ``m = mean(x - p)`` and the variance ``mean(((x - p') - m')^2)`` are two
  fused reductions, never ``E[x^2] - E[x]^2``.  The batch mean is kept as
  the pair ``p + m``, so ``(x - p) - m`` never meets a mean rounded at the
  scale of the offset.
- **Sums in two levels** (:func:`_sum`), for accuracy on TensorFlow's CPU kernels.
- **An analytic gradient** (``ops.custom_gradient``): the input gradient
  ``scale * (dy - mean(dy) - xhat * mean(dy * xhat))`` takes two fused
  reductions and one elementwise pass over ``x`` and ``dy``, recomputing
  ``xhat`` from ``x`` instead of storing it; autodiff through the forward
  maths kept three input-sized temporaries alive.  Under XLA the
  per-channel factors are folded before that pass (:func:`_input_gradient`;
  BatchNorm keeps the textbook form where TensorFlow runs op by op).
- **Low precision reduced in float32 inside the fusion**: a float16 or
  bfloat16 input is cast where it is read, never copied whole up front.

The maths is the same on every backend; how the program it is traced into
can branch is told to it by a :class:`Policy`
(:func:`xbn.layers._dispatch.portable_policy`): this module never looks at
the backend.
"""

import dataclasses
import math
from typing import Callable

import keras
from keras import ops

# Distinct pivots a layer needs: the two statistics passes, the output, and
# the gradient's reduction and elementwise pass.
_PIVOTS = 5

# A channel is centred when its first sampled value lies more than
# PIVOT_RATIO times the range of its samples from zero (about 9 standard
# deviations for a normal channel): the float32 sums lose accuracy in
# proportion to |mean| / spread.  Below it the channel is summed as it is,
# which rounds once less where the values straddle zero.
PIVOT_RATIO = 4.0


@dataclasses.dataclass(frozen=True)
class Policy:
    """How the portable maths runs in the program it is traced into.

    Attributes:
        mode: how the centring decision is taken where the program allows a
            branch: ``"select"`` (JAX, TensorFlow inside XLA): no branch,
            every pass subtracts its own pivot, 0 where a channel needs none;
            ``"cond"`` (a TensorFlow graph without XLA): the input is centred
            up front, by ``centre``, only when some channel needs it, and the
            rest of the maths has no pivot at all (subtracting zeros cost
            TensorFlow's CPU kernels a full pass each: 2.3x keras' layer
            without them, 1.7x with); ``"eager"`` (TensorFlow eager,
            PyTorch): the same, decided in Python.
        two_level_sums: sum in two levels (:func:`_sum`; TensorFlow's
            kernels).
        centre: ``centre(x, pivot)`` for ``"cond"``: ``x - pivot`` where
            some channel's pivot is not 0, else ``x``, as a branch of the
            program.
    """

    mode: str = "select"
    two_level_sums: bool = False
    centre: Callable = None


def work_dtype(dtype):
    """The dtype statistics are computed in: float32, or float64 for float64."""
    return "float64" if keras.backend.standardize_dtype(dtype) == "float64" else "float32"


def pivots(x, reduced, samples_of=None, count=1):
    """``count`` distinct pivots of ``x`` over the ``reduced`` axes (kept as
    size-1 axes), without gradient: each the value of ``x`` at one position
    of the reduced axes where its channel needs centring, else 0.

    A channel needs centring when its first sampled value lies more than
    :data:`PIVOT_RATIO` times the range of its samples from zero.  The
    samples run along the innermost reduced axis whose static size exceeds
    1, at index 0 of the others (the first ``_PIVOTS`` positions of it, fewer
    where it is shorter; an axis of unknown size gives one, and the pivots
    then coincide: slower under XLA, as exact).

    Each pivot is the output of a reduction over that slab of samples, never
    a slice of ``x``: XLA fuses slices and ``where`` into every consumer and
    recomputed the whole pivot rule once per element of the input (in
    ResNet-50 on JAX the normalization and residual fusions carried it; it
    cost more time than the statistics).  A reduction is computed once.

    Args:
        x: the tensor, in the dtype the pivots should have.
        reduced: the axes the statistics are taken over.
        samples_of: maps the slab of samples to the values a pivot is drawn
            from (each group's first channel for GroupNorm); None for
            per-channel pivots.
        count: how many distinct pivots.
    """
    x = ops.stop_gradient(x)
    if not reduced:  # every value is its own statistic
        return [x if samples_of is None else samples_of(x)] * count
    shape = tuple(x.shape)
    along = next((i for i in reversed(reduced) if shape[i] is not None and shape[i] > 1), reduced[-1])
    n = min(_PIVOTS, shape[along]) if shape[along] else 1

    def window(stop):
        return tuple(
            slice(0, stop) if i == along else slice(0, 1) if i in reduced else slice(None)
            for i in range(len(shape))
        )

    slab = x[window(n)]
    if samples_of is not None:
        slab = samples_of(slab)
    spread = ops.max(slab, axis=reduced, keepdims=True) - ops.min(slab, axis=reduced, keepdims=True)
    need = ops.abs(slab[window(1)]) > PIVOT_RATIO * spread
    position = ops.reshape(ops.arange(n), [n if i == along else 1 for i in range(len(shape))])
    zero = ops.zeros_like(slab)
    return [
        ops.sum(ops.where(ops.logical_and(need, position == k % n), slab, zero), axis=reduced, keepdims=True)
        for k in range(count)
    ]


def _sum(x, reduced, two_levels):
    """``sum(x)`` over ``reduced`` (kept as size-1 axes), with
    ``two_levels`` in two levels: the innermost reduced axis first, then the
    rest.

    The float32 error of a sum grows with the number of terms one
    accumulator takes, and TensorFlow's CPU kernels accumulate a channel's
    thousands of values in few running sums (a variance of 4,096 values was
    8 ulps off; two-level: 2).  BatchNorm's input gradient cancels a
    thousandfold where ``dy`` is nearly affine in ``xhat`` and passes that
    error on: with two-level sums it came out 2.5x more accurate than keras'
    layer on every seed.  The partial sums are 1/W the size of ``x``, and
    XLA merges the two levels into one reduction of its own.

    TensorFlow only (:attr:`Policy.two_level_sums`): XLA's and PyTorch's own
    reductions are accurate in one level, and run op by op (JAX outside
    ``jit``) the two levels were 4-7x *less* accurate than one on an Intel
    Xeon with AVX-512, which put BatchNorm's cancelling input gradient at 3x
    the float32 floor.
    """
    if not reduced:
        return x
    if two_levels and len(reduced) > 1 and x.shape[reduced[-1]] != 1:
        x = ops.sum(x, axis=reduced[-1], keepdims=True)
    return ops.sum(x, axis=reduced, keepdims=True)


def _count(x, reduced, dtype):
    """How many values of ``x`` each statistic over ``reduced`` takes: a
    Python float where the shape is static, else a scalar of ``dtype``."""
    static = [x.shape[i] for i in reduced]
    if all(d is not None for d in static):
        return float(math.prod(static))
    dynamic = ops.shape(x)
    total = ops.cast(1, dtype)
    for i in reduced:
        total = total * ops.cast(dynamic[i], dtype)
    return total


def _centre_up_front(x, pivot, policy):
    """``(x - pivot, pivot)`` when some channel needs centring, else
    ``(x, 0)``; the pivot (stop-gradient, a value of ``x``, in the work
    dtype) is subtracted in ``x``'s dtype, exactly where it matters."""
    if policy.mode == "cond":
        return policy.centre(x, pivot), pivot
    if bool(ops.convert_to_numpy(ops.any(pivot != 0))):
        return x - ops.cast(pivot, x.dtype), pivot
    return x, ops.zeros_like(pivot)


def _minus(x, pivot):
    return x if pivot is None else x - pivot


class Statistics:
    """Batch statistics kept around pivots, so that ``(x - p) - m`` never
    meets a mean rounded at the scale of an offset.  Without gradient.

    Attributes:
        input: the tensor to normalize: the layer's input, or that input
            centred up front (``"cond"``/``"eager"`` modes of
            :class:`Policy`), which passes the gradient through.
        reduced: the axes the statistics were taken over.
        pivots: ``None`` (no pivots: centred up front or not at all), or
            the distinct pivot of each later pass (``"select"`` mode).
        offsets: ``mean - pivots[k]`` for each pivot (one offset when
            there are no pivots: the mean of ``input``).
        shift: what was subtracted up front (0 where nothing was).
        variance: the biased variance.
    """

    def __init__(self, input, reduced, pivots, offsets, variance, shift=0.0):
        self.input, self.reduced, self.pivots, self.offsets = input, reduced, pivots, offsets
        self.variance, self.shift = variance, shift

    @property
    def mean(self):
        """The mean, in the shape of the statistics."""
        return self.shift + (self.offsets[0] if self.pivots is None else self.pivots[0] + self.offsets[0])

    def later(self):
        """The statistics the custom-gradient normalization takes: the
        pivot/offset pairs of the output, the gradient's sums and its
        elementwise pass, or the one offset."""
        if self.pivots is None:
            return (self.offsets[0],)
        return tuple(t for k in (2, 3, 4) for t in (self.pivots[k], self.offsets[k]))


def _statistics(x, reduced, samples_of, count, total, policy):
    """The statistics of ``x`` (see :class:`Statistics`).

    Args:
        samples_of: as in :func:`pivots` (per group for GroupNorm).
        count: the number of values per statistic.
        total: sums what ``_sum`` leaves per channel into per-statistic
            totals, repeated to the channels (identity for BatchNorm).
        policy: a :class:`Policy`.
    """
    work = work_dtype(x.dtype)
    xs = ops.cast(ops.stop_gradient(x), work)
    p = pivots(xs, reduced, samples_of, _PIVOTS if policy.mode == "select" else 1)
    shift = 0.0
    if policy.mode != "select":
        x, shift = _centre_up_front(x, p[0], policy)
        xs = ops.cast(ops.stop_gradient(x), work)
        p = [None] * _PIVOTS
    two = policy.two_level_sums
    m = total(_sum(_minus(xs, p[0]), reduced, two)) / count
    # The second pass with its own pivot: (x - p1) - (mean - p1).
    offset = m if p[0] is None else m + (p[0] - p[1])
    variance = total(_sum(ops.square(_minus(xs, p[1]) - offset), reduced, two)) / count
    if p[0] is None:
        return Statistics(x, reduced, None, [m], variance, shift)
    return Statistics(x, reduced, p, [m] + [m + (p[0] - q) for q in p[1:]], variance)


def batch_statistics(x, reduced, policy):
    """The mean and biased variance of ``x`` over ``reduced``, in the work
    dtype (:func:`work_dtype`), without gradient.

    Returns:
        :class:`Statistics` (``input`` is ``x``, or ``x`` centred).
    """
    return _statistics(x, reduced, None, _count(x, reduced, work_dtype(x.dtype)), lambda t: t, policy)


def batch_normalize(stats, gamma, beta, epsilon, policy):
    """``(x - mean) / sqrt(variance + epsilon) * gamma + beta`` of
    ``stats.input`` with the gradient of batch normalization: the input
    gradient includes the statistics' dependence on ``x``.

    Args:
        stats: :class:`Statistics` from :func:`batch_statistics`.
        gamma, beta: ``(C,)`` vectors in the work dtype.
        epsilon: added to the variance.
        policy: the :class:`Policy` the statistics were taken with.

    Returns:
        The output, in the input's dtype.
    """
    shape = [1 if i in stats.reduced else -1 for i in range(len(stats.input.shape))]
    rstd = ops.rsqrt(stats.variance + epsilon)
    return _normalize(stats.reduced, shape, stats.pivots is not None, policy.two_level_sums)(
        stats.input, gamma, beta, rstd, *stats.later()
    )


def _zero_gradients(*tensors):
    return [ops.zeros_like(t) for t in tensors]


def _passes(xf, later, pivoted):
    """``x - mean`` for the output, the gradient's sums and its elementwise
    pass: three distinct expressions where pivoted, one otherwise."""
    if not pivoted:
        (m,) = later
        return [xf - m] * 3
    return [(xf - later[2 * k]) - later[2 * k + 1] for k in range(3)]


def _input_gradient(dy, centred, a, k, c):
    """``a * dy - (centred * k + c)``: a normalization's input gradient with
    every per-channel factor folded into ``a``, ``k`` and ``c`` beforehand,
    so that the pass over the input is a few multiply-adds and no division
    (written as the textbook expression it took twice the arithmetic per
    value; XLA does not reassociate floating point)."""
    return a * dy - (centred * k + c)


def _normalize(reduced, shape, pivoted, two_levels):
    """The custom-gradient normalization of :func:`batch_normalize`."""

    @ops.custom_gradient
    def normalize(x, gamma, beta, rstd, *later):
        work = rstd.dtype
        scale = ops.reshape(gamma, shape) * rstd
        y = _passes(ops.cast(x, work), later, pivoted)[0] * scale + ops.reshape(beta, shape)

        def grad(*args, upstream=None):
            dy = ops.cast(args[0] if upstream is None else upstream, work)
            _, centred_sum, centred_dx = _passes(ops.cast(x, work), later, pivoted)
            sum_dy = _sum(dy, reduced, two_levels)
            sum_dy_xhat = _sum(dy * centred_sum, reduced, two_levels) * rstd
            if pivoted:  # XLA: one fused pass, the fewer operations the better
                # scale * (dy - (sum_dy + xhat * sum_dy_xhat) / n), xhat = centred * rstd
                per_value = scale / _count(x, reduced, work)
                dx = _input_gradient(dy, centred_dx, scale, per_value * rstd * sum_dy_xhat, per_value * sum_dy)
            else:  # op by op (TensorFlow's CPU kernels): this form measured 15% faster there
                xhat = centred_dx * rstd
                dx = scale * (dy - (sum_dy + xhat * sum_dy_xhat) / _count(x, reduced, work))
            return (
                ops.cast(dx, x.dtype),
                ops.reshape(sum_dy_xhat, ops.shape(gamma)),
                ops.reshape(sum_dy, ops.shape(beta)),
                *_zero_gradients(rstd, *later),
            )

        return ops.cast(y, x.dtype), grad

    return normalize


# -- GroupNorm ----------------------------------------------------------------
class _Groups:
    """Per-channel tensors ``(N, 1, .., C, .., 1)`` seen by group: sums over
    each group's channels, repeated back to its channels (no 5-D view of the
    input: its reductions ran 1.5x slower under XLA than per-channel ones)."""

    def __init__(self, axis, groups, channels):
        self.axis, self.groups, self.per_group = axis, groups, channels // groups

    def _grouped(self, t):
        shape = [-1 if d is None else d for d in t.shape]
        return ops.reshape(t, shape[:self.axis] + [self.groups, self.per_group] + shape[self.axis + 1:])

    def _back(self, t, shape):
        return ops.reshape(ops.repeat(t, self.per_group, axis=self.axis + 1), shape)

    def sum(self, t):
        """Each channel's group total."""
        return self._back(ops.sum(self._grouped(t), axis=self.axis + 1, keepdims=True), ops.shape(t))

    def first(self, t):
        """Each channel's group's first channel."""
        index = tuple(slice(0, 1) if i == self.axis + 1 else slice(None) for i in range(len(t.shape) + 1))
        return self._back(self._grouped(t)[index], ops.shape(t))


def group_norm(x, gamma, beta, groups, epsilon, axis, policy):
    """Group normalization with its analytic gradient.

    The channels are split into ``groups`` contiguous groups; each sample is
    normalized with the mean and biased variance of each of its groups, over
    every axis but the batch and channel axes and over the group's channels.

    Args:
        x: the input ``(N, ..., C, ...)``, any float dtype; the output has it.
        gamma, beta: ``(C,)`` vectors in the work dtype.
        groups: a divisor of ``C``.
        epsilon: added to the variance.
        axis: the channel axis, non-negative and not 0.
        policy: a :class:`Policy`.
    """
    by_group = _Groups(axis, groups, x.shape[axis])
    spatial = [i for i in range(1, len(x.shape)) if i != axis]
    count = _count(x, spatial, work_dtype(x.dtype)) * by_group.per_group
    # One pivot per sample and group: its first channel's values; the
    # statistics are per sample and channel, each its group's.
    stats = _statistics(x, spatial, by_group.first, count, by_group.sum, policy)
    shape = [1] * len(x.shape)
    shape[axis] = -1
    return _group_normalize(spatial, shape, by_group, count, stats.pivots is not None, policy.two_level_sums)(
        stats.input, gamma, beta, ops.rsqrt(stats.variance + epsilon), *stats.later()
    )


def _group_normalize(spatial, shape, by_group, count, pivoted, two_levels):
    """The custom-gradient normalization of :func:`group_norm`; the
    statistics arguments are per sample and channel."""

    @ops.custom_gradient
    def normalize(x, gamma, beta, rstd, *later):
        work = rstd.dtype
        g = ops.reshape(gamma, shape)
        y = _passes(ops.cast(x, work), later, pivoted)[0] * (rstd * g) + ops.reshape(beta, shape)

        def grad(*args, upstream=None):
            dy = ops.cast(args[0] if upstream is None else upstream, work)
            _, centred_sum, centred_dx = _passes(ops.cast(x, work), later, pivoted)
            # Per sample and channel: sum(dy) and sum(dy * xhat).
            sum_dy = _sum(dy, spatial, two_levels)
            sum_dy_xhat = _sum(dy * centred_sum, spatial, two_levels) * rstd
            # Per sample and group: the means of gamma * dy and gamma * dy * xhat.
            mean_g = by_group.sum(g * sum_dy) / count
            mean_g_xhat = by_group.sum(g * sum_dy_xhat) / count
            # rstd * (g * dy - mean_g - xhat * mean_g_xhat), xhat = centred * rstd
            dx = _input_gradient(dy, centred_dx, rstd * g, rstd * rstd * mean_g_xhat, rstd * mean_g)
            return (
                ops.cast(dx, x.dtype),
                ops.reshape(ops.sum(sum_dy_xhat, axis=0), ops.shape(gamma)),
                ops.reshape(ops.sum(sum_dy, axis=0), ops.shape(beta)),
                *_zero_gradients(rstd, *later),
            )

        return ops.cast(y, x.dtype), grad

    return normalize
