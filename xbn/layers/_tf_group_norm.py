"""TensorFlow-only fast path of ``GroupNorm``.

Keras 3's ``GroupNormalization`` reduces a 5-D ``(N, H, W, G, C/G)`` view
over non-adjacent axes, which TensorFlow's CPU kernels handle slowly, and
differentiates through every op.  :func:`group_norm` reduces only the
spatial axis of an ``(N, H*W, C)`` view, does the per-group arithmetic on
tiny ``(N, C)`` tensors and supplies the analytic gradient (see
``xbn-bench``).

Imported only when keras' backend is TensorFlow.
"""

import tensorflow as tf


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
