"""TensorFlow-only fast paths for xbn's normalization layers.

This module is imported only when keras' backend is TensorFlow; the layers
fall back to their portable ``keras.ops`` implementation everywhere else.

Why these exist (measured on a 2-core CPU, see ``xbn-bench``):

- Keras 3's ``BatchNormalization`` composes ``tf.nn.moments`` with
  ``tf.nn.batch_normalization`` and lets autodiff build the backward pass.
  TensorFlow's ``FusedBatchNormV3`` kernel (and its fused gradient) does the
  same maths in far fewer passes over memory: about 2x faster forward+backward.
- Keras 3's ``GroupNormalization`` reduces a 5-D ``(N, H, W, G, C/G)`` view over
  non-adjacent axes, which TensorFlow's CPU kernels handle slowly, and
  differentiates through every op.  :func:`group_norm` reduces only the
  spatial axis of an ``(N, H*W, C)`` view, does the per-group arithmetic on
  tiny ``(N, C)`` tensors and supplies the analytic gradient.

Every function computes its statistics in float32 (or wider) whatever the
input dtype, and returns outputs in the input's dtype.
"""

import tensorflow as tf

# cuDNN refuses epsilons below 1e-5 (CUDNN_BN_MIN_EPSILON); keras.applications
# uses 1.001e-5 for exactly this reason.  Smaller epsilons take the portable
# path so that results never depend on the device.
FUSED_MIN_EPSILON = 1.001e-5

_FUSED_DTYPES = (tf.float16, tf.bfloat16, tf.float32)


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


def fused_batch_norm(x, gamma, beta, epsilon, axis, mean=None, variance=None):
    """Batch normalization through TensorFlow's fused kernel.

    In training mode (``mean`` and ``variance`` are ``None``) the batch
    statistics are computed by the kernel and returned with the output; the
    variance returned is the *biased* one (divided by ``n``), the same that
    keras' ``BatchNormalization`` stores, although the kernel itself reports
    the Bessel-corrected ``n / (n - 1)`` version.

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
    x4, data_format = _to_fused_layout(x, axis)
    training = mean is None
    y, batch_mean, batch_var = tf.compat.v1.nn.fused_batch_norm(
        x4,
        gamma,
        beta,
        mean=mean,
        variance=variance,
        epsilon=epsilon,
        data_format=data_format,
        is_training=training,
    )
    if x4 is not x:
        y = tf.reshape(y, tf.shape(x))
    if not training:
        return y
    channels = tf.cast(tf.shape(batch_mean)[0], tf.int64)
    count = tf.cast(tf.size(x, out_type=tf.int64) // channels, tf.float64)
    # Undo the kernel's Bessel correction (a single value has variance 0).
    # The factor is applied in float64, to the C-vector only, so the kernel's
    # variance is rounded to float32 once rather than twice.
    factor = tf.where(count > 1.0, (count - 1.0) / count, tf.zeros_like(count))
    biased_var = tf.cast(tf.cast(batch_var, tf.float64) * factor, batch_var.dtype)
    return y, batch_mean, biased_var


def sync_moments(x, axes):
    """Mean and biased variance of ``x`` over ``axes`` across all replicas.

    A distributed two-pass algorithm: the replicas all-reduce their sums and
    counts into the global mean ``m``, then all-reduce ``sum (x - m)^2`` and
    ``sum (x - m)`` and form the corrected two-pass mean ``m + mean(x - m)``
    and variance ``mean((x - m)^2) - mean(x - m)^2``.  No variance is ever formed as
    ``E[x^2] - E[x]^2`` (keras' synchronized path), so a mean of 1e4 with unit
    spread keeps the precision of single-device BN; merging per-replica means
    and variances (Chan's formula) would not, as the float32 rounding of
    each replica's mean enters it at first order.

    Gradients flow through the all-reduces, so every replica's input receives
    the gradient of the global statistics.  Outside a replica context, or with
    a single replica, this is the plain local computation.
    """
    replica = tf.distribute.get_replica_context()
    if replica is None or replica.num_replicas_in_sync == 1:
        return tf.nn.moments(x, axes)
    shape = tf.shape(x, out_type=tf.int64)
    count = tf.cast(tf.reduce_prod(tf.gather(shape, axes)), x.dtype)
    total, total_count = replica.all_reduce(
        tf.distribute.ReduceOp.SUM, [tf.reduce_sum(x, axes), count]
    )
    total_count = tf.maximum(total_count, 1.0)
    mean = total / total_count
    # As in tf.nn.moments, the centring mean needs no gradient: the gradient
    # of sum (x - m)^2 through m is -2 m' sum (x - m) = 0.
    centred = x - tf.stop_gradient(mean)
    sum_sq, sum_centred = replica.all_reduce(
        tf.distribute.ReduceOp.SUM,
        [tf.reduce_sum(tf.square(centred), axes), tf.reduce_sum(centred, axes)],
    )
    # `offset` is the rounding error of `mean` (0 in exact arithmetic): adding
    # it back gives the mean to the precision of the centred sums.  Its value
    # only; the gradient of `mean` is already the exact one.
    offset = sum_centred / total_count
    variance = tf.maximum(sum_sq / total_count - tf.square(offset), 0.0)
    return mean + tf.stop_gradient(offset), variance


def group_norm(x, gamma, beta, groups, epsilon):
    """Group normalization of a channel-last tensor with an analytic gradient.

    Args:
        x: ``(N, ..., C)`` tensor of any float dtype; statistics are computed
            per sample and group in float32 (float64 for float64 inputs).
        gamma, beta: ``(C,)`` vectors (ones/zeros when the layer has none).
        groups: number of groups; ``C % groups == 0``.
        epsilon: added to the variance.

    Returns:
        The normalized tensor, in ``x``'s dtype.
    """
    out_dtype = x.dtype
    work = tf.float64 if x.dtype == tf.float64 else tf.float32
    return tf.cast(
        _group_norm(
            tf.cast(x, work), tf.cast(gamma, work), tf.cast(beta, work),
            groups, epsilon,
        ),
        out_dtype,
    )


def _group_norm(x, gamma, beta, groups, epsilon):
    channels = x.shape[-1]
    per_group = channels // groups

    def group_mean(t):  # (N, C) -> (N, G): mean over the group's channels
        return tf.reduce_mean(tf.reshape(t, [-1, groups, per_group]), axis=2)

    def to_channels(t):  # (N, G) -> (N, 1, C): repeat each group's value
        t = tf.broadcast_to(t[:, :, None], [tf.shape(t)[0], groups, per_group])
        return tf.reshape(t, [-1, 1, channels])

    @tf.custom_gradient
    def forward(x, gamma, beta):
        shape = tf.shape(x)
        x3 = tf.reshape(x, [shape[0], -1, channels])  # (N, HW, C)
        mean = group_mean(tf.reduce_mean(x3, axis=1))  # (N, G)
        mean_c = to_channels(mean)
        var = group_mean(
            tf.reduce_mean(tf.math.squared_difference(x3, mean_c), axis=1)
        )
        inv = tf.math.rsqrt(var + epsilon)  # (N, G)
        inv_c = to_channels(inv)
        scale = inv_c * gamma  # (N, 1, C)
        shift = beta - mean_c * scale
        y = tf.reshape(x3 * scale + shift, shape)

        def backward(dy):
            # With xhat = (x - mean) * inv and g = dy * gamma, per group:
            #   dx = inv * (g - mean(g) - xhat * mean(g * xhat))
            # which expands to dy * scale + x * a + b with per-(n, g) a, b.
            dy3 = tf.reshape(dy, [shape[0], -1, channels])
            sum_dy = tf.reduce_sum(dy3, axis=1)  # (N, C)
            sum_dy_x = tf.reduce_sum(dy3 * x3, axis=1)  # (N, C)
            mean_nc = tf.reshape(mean_c, [-1, channels])
            inv_nc = tf.reshape(inv_c, [-1, channels])
            sum_dy_xhat = (sum_dy_x - mean_nc * sum_dy) * inv_nc  # (N, C)
            d_beta = tf.reduce_sum(sum_dy, axis=0)
            d_gamma = tf.reduce_sum(sum_dy_xhat, axis=0)
            count = tf.cast(tf.shape(x3)[1] * per_group, x.dtype)
            mean_g = group_mean(gamma * sum_dy) * (per_group / count)
            mean_g_xhat = group_mean(gamma * sum_dy_xhat) * (per_group / count)
            a = to_channels(-inv * inv * mean_g_xhat)
            b = to_channels(inv * (inv * mean_g_xhat * mean - mean_g))
            dx = dy3 * scale + (x3 * a + b)
            return tf.reshape(dx, shape), d_gamma, d_beta

        return y, backward

    return forward(x, gamma, beta)
