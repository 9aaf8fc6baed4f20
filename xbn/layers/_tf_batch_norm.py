"""TensorFlow-only fast path of ``BatchNorm``: the fused kernels.

TensorFlow's ``FusedBatchNormV3`` normalizes in one pass over memory.
``BatchNorm`` runs it in inference mode on every device, and in training
mode on a GPU, where cuDNN's statistics and gradient are accurate.  In
training on a CPU the portable maths (:mod:`xbn.layers._portable`) is both
faster and more accurate: the CPU gradient kernel's sums were 2-4x less
accurate than ``tf.reduce_sum``, which made its input gradient 2-3x less
accurate than keras' layer where the gradient cancels (on an AMD EPYC; see
``tests/accuracy.py``).  ``fused=True`` still forces the kernel there.

Also the synchronized statistics of ``tf.distribute`` replicas
(:func:`sync_moments`).  Imported only when keras' backend is TensorFlow.
Statistics are computed in float32 (or wider) whatever the input dtype;
outputs keep the input's dtype.
"""

import tensorflow as tf

from xbn.layers import _portable

# cuDNN refuses epsilons below 1e-5 (CUDNN_BN_MIN_EPSILON); keras.applications
# uses 1.001e-5 for exactly this reason.  Smaller epsilons take the portable
# path so that results never depend on the device.
FUSED_MIN_EPSILON = 1.001e-5

# In inference, the input is centred on the moving mean when some channel's
# mean lies more than this many standard deviations from zero: the kernel's
# x * scale + (beta - mean * scale) would otherwise cancel.
INFERENCE_PIVOT_RATIO = 8.0

_FUSED_DTYPES = (tf.float16, tf.bfloat16, tf.float32)


def in_xla_context():
    """Whether the op being built is compiled by XLA (``jit_compile=True``).

    XLA lowers ``FusedBatchNormV3`` and its gradient as opaque blocks but
    fuses the elementwise maths of the portable path into the neighbouring
    ops: on a 2-core CPU a ResNet-50 training step under XLA took 2.36 s with
    the fused kernel and 2.10 s with the portable maths.  Uses the same
    TensorFlow-internal helper as tf.keras 2; if it ever moves, the answer is
    ``False`` (the fused kernel, still correct).
    """
    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - depends on TensorFlow's layout
        return False
    if tf.executing_eagerly():
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def can_fuse_batch_norm(inputs, axis, epsilon):
    """Whether :func:`fused_batch_norm` handles this input.

    Args:
        inputs: the input tensor.
        axis: the channel axis, already made non-negative.
        epsilon: the layer's epsilon.
    """
    rank = inputs.shape.rank
    if rank is None or rank < 2 or inputs.dtype not in _FUSED_DTYPES:
        return False
    if epsilon < FUSED_MIN_EPSILON:
        return False
    return axis == rank - 1 or (rank == 4 and axis == 1)


def _to_fused_layout(x, axis):
    """Reshape ``x`` to the 4-D layout the fused kernel wants.

    Returns ``(x4, data_format)``.  Channel-last inputs of any rank become
    ``(1, -1, 1, C)``; the statistics over that view are exactly the
    statistics over every non-channel axis of ``x``.
    """
    rank = x.shape.rank
    if rank == 4:
        return x, "NHWC" if axis == 3 else "NCHW"
    return tf.reshape(x, [1, -1, 1, tf.shape(x)[-1]]), "NHWC"


def on_gpu():
    """Whether TensorFlow places ops on a GPU (the fused training kernel is
    cuDNN's there, and the fastest exact choice)."""
    return bool(tf.config.list_logical_devices("GPU"))


def fused_batch_norm(x, gamma, beta, epsilon, axis, mean=None, variance=None):
    """Batch normalization through TensorFlow's fused kernel.

    In training mode (``mean`` and ``variance`` are ``None``) the batch
    statistics are the kernel's own, returned with the output; the variance
    returned is the *biased* one (divided by ``n``), the same that keras'
    ``BatchNormalization`` stores, although the kernel itself reports the
    Bessel-corrected ``n / (n - 1)`` version.

    Large channel offsets are removed before the kernel: in training mode
    the input is centred on the pivots of :mod:`xbn.layers._portable` (where
    some channel needs it) and the pivot added back to the batch mean (BN's
    output is unchanged by a shift of its input, and the pivot gets no
    gradient); in inference mode it is centred on the moving mean itself
    where some channel's mean is over :data:`INFERENCE_PIVOT_RATIO` standard
    deviations from zero, so the kernel computes ``(x - mean) * scale + beta`` without
    the cancellation of ``x * scale - mean * scale``.

    Args:
        x: input tensor, float16, bfloat16 or float32.
        gamma, beta: float32 vectors of the channel size.
        epsilon: added to the variance.
        axis: non-negative channel axis (see :func:`can_fuse_batch_norm`).
        mean, variance: the moving statistics for inference mode.

    Returns:
        ``y`` in inference mode, ``(y, batch_mean, batch_variance)`` in
        training mode.
    """
    reduced = [i for i in range(x.shape.rank) if i != axis]
    if mean is None:
        pivot = _portable.pivots(tf.cast(x, tf.float32), reduced)[0]
        need = tf.reduce_any(pivot != 0)
        shift = tf.reshape(pivot, [-1])
    else:
        need = tf.reduce_any(tf.abs(mean) > INFERENCE_PIVOT_RATIO * tf.sqrt(variance + epsilon))
        shift = tf.where(need, mean, tf.zeros_like(mean))
    x = _centred(x, axis, need, shift)
    x4, data_format = _to_fused_layout(x, axis)
    if mean is not None:
        y = tf.compat.v1.nn.fused_batch_norm(
            x4, gamma, beta, mean=mean - shift, variance=variance, epsilon=epsilon,
            data_format=data_format, is_training=False,
        )[0]
        return tf.reshape(y, tf.shape(x)) if x4 is not x else y
    y, batch_mean, batch_var = _fused_training(x4, gamma, beta, epsilon, data_format)
    if x4 is not x:
        y = tf.reshape(y, tf.shape(x))
    return y, batch_mean + shift, batch_var


def centre_if_needed(x, pivot):
    """``x - pivot`` where some channel's pivot is not 0, else ``x``, as a
    graph branch (the portable maths' ``"cond"`` mode); the pivot (a value
    of ``x``, without gradient) is subtracted in ``x``'s dtype."""
    need = tf.reduce_any(pivot != 0)
    return tf.cond(need, lambda: x - tf.cast(pivot, x.dtype), lambda: x)


def _centred(x, axis, need, shift):
    """``x - shift`` where ``need`` (a scalar), else ``x`` untouched; the
    shift (float32, without gradient) is a value ``x``'s dtype holds
    exactly (a value of ``x``, or the moving mean rounded to it)."""
    shape = [1] * x.shape.rank
    shape[axis] = -1
    rounded = tf.cast(tf.stop_gradient(shift), x.dtype)
    return tf.cond(need, lambda: x - tf.reshape(rounded, shape), lambda: x)


def _fused_training(x4, gamma, beta, epsilon, data_format):
    """The fused kernel's training pass, with its own statistics (cuDNN's on a
    GPU are accurate; the variance it reports is Bessel-corrected, and
    undone here)."""
    y, batch_mean, batch_var = tf.compat.v1.nn.fused_batch_norm(
        x4, gamma, beta, epsilon=epsilon, data_format=data_format, is_training=True
    )
    channels = tf.cast(tf.shape(batch_mean)[0], tf.int64)
    count = tf.cast(tf.size(x4, out_type=tf.int64) // channels, tf.float64)
    # Undo the kernel's Bessel correction (a single value has variance 0),
    # in float64 on the C-vector, so the variance is rounded to float32 once.
    factor = tf.where(count > 1.0, (count - 1.0) / count, tf.zeros_like(count))
    return y, batch_mean, tf.cast(tf.cast(batch_var, tf.float64) * factor, batch_var.dtype)


def sync_moments(x, axes):
    """Moments of ``x`` over ``axes`` across all replicas, centred.

    Returns ``(x - shift, shift, mean, variance)``: ``mean`` and the biased
    ``variance`` are those of ``x - shift`` over the global batch, so the
    global mean is ``mean + shift``; normalizing ``x - shift`` with ``mean``
    never meets a mean rounded at the scale of a large offset.

    A distributed two-pass algorithm: the replicas all-reduce their sums and
    counts into the global mean ``m`` (the shift), then all-reduce
    ``sum (x - m)^2`` and ``sum (x - m)``; ``mean = sum (x - m) / n`` is the
    rounding error of ``m`` (0 in exact arithmetic) and the variance
    ``sum (x - m)^2 / n - mean^2`` never cancels.  No variance is ever formed
    as ``E[x^2] - E[x]^2`` (keras' synchronized path), so a mean of 1e4 with
    unit spread keeps the precision of single-device BN; merging
    per-replica means and variances (Chan's formula) would not, as the
    float32 rounding of each replica's mean enters it at first order.

    Gradients flow through the all-reduces of the centred sums, so every
    replica's input receives the gradient of the global statistics (the
    shift gets none: the result does not depend on it in exact arithmetic).
    Outside a replica context, or with a single replica, the moments are
    local (two passes, the shift the local mean).
    """
    replica = tf.distribute.get_replica_context()
    if replica is None or replica.num_replicas_in_sync == 1:
        shift = tf.stop_gradient(tf.reduce_mean(x, axes))
        centred = x - _expand(shift, x, axes)
        mean = tf.reduce_mean(centred, axes)
        variance = tf.reduce_mean(tf.square(centred - tf.stop_gradient(_expand(mean, x, axes))), axes)
        return centred, shift, mean, variance
    shape = tf.shape(x, out_type=tf.int64)
    count = tf.cast(tf.reduce_prod(tf.gather(shape, axes)), x.dtype)
    total, total_count = replica.all_reduce(
        tf.distribute.ReduceOp.SUM, [tf.reduce_sum(x, axes), count]
    )
    total_count = tf.maximum(total_count, 1.0)
    shift = tf.stop_gradient(total / total_count)
    centred = x - _expand(shift, x, axes)
    sum_sq, sum_centred = replica.all_reduce(
        tf.distribute.ReduceOp.SUM,
        [tf.reduce_sum(tf.square(centred), axes), tf.reduce_sum(centred, axes)],
    )
    mean = sum_centred / total_count
    variance = tf.maximum(sum_sq / total_count - tf.square(mean), 0.0)
    return centred, shift, mean, variance


def _kept_axis(x, axes):
    return next(i for i in range(x.shape.rank) if i not in axes)


def _expand(vector, x, axes):
    """A ``(C,)`` vector shaped to broadcast against ``x`` (reduced over ``axes``)."""
    shape = [1] * x.shape.rank
    shape[_kept_axis(x, axes)] = -1
    return tf.reshape(vector, shape)
