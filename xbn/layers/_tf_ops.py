"""TensorFlow-only fast paths for xbn's normalization layers.

This module is imported only when keras' backend is TensorFlow; the layers
fall back to their portable ``keras.ops`` implementation everywhere else.

Why these exist (measured on a 2-core CPU, see ``xbn-bench``):

- Keras 3's ``BatchNormalization`` composes ``tf.nn.moments`` with
  ``tf.nn.batch_normalization`` and lets autodiff build the backward pass.
  TensorFlow's fused kernels (``FusedBatchNormV3`` and its gradient) do the
  normalization and the backward pass in far fewer passes over memory.  On
  a CPU their own batch statistics are a few ulps less accurate than
  TensorFlow's tree reductions, which the backward pass amplifies where the
  gradient cancels, so :func:`fused_batch_norm` takes the statistics from
  ``tf.nn.moments`` and gives them to both kernels: keras' accuracy (or
  better), about 2x keras' speed forward+backward.
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


def _centred(x, axis, need, pivot):
    """``x - pivot`` where ``need`` (a scalar), else ``x`` untouched (inference
    mode's centring on the moving mean; training mode uses ``_base.centre``).

    Returns ``(input for the kernel, the pivot subtracted, float32)``.  The
    pivot is rounded to ``x``'s dtype first and that rounded value is what is
    taken back out of the mean, so nothing is lost in the round trip.
    """
    shape = [1] * x.shape.rank
    shape[axis] = -1
    rounded = tf.cast(tf.stop_gradient(pivot), x.dtype)
    centred = tf.cond(need, lambda: x - tf.reshape(rounded, shape), lambda: x)
    used = tf.where(need, tf.cast(rounded, tf.float32), tf.zeros_like(pivot))
    return centred, used


def fused_batch_norm(x, gamma, beta, epsilon, axis, mean=None, variance=None):
    """Batch normalization through TensorFlow's fused kernel.

    In training mode (``mean`` and ``variance`` are ``None``) the batch
    statistics are computed by the kernel and returned with the output; the
    variance returned is the *biased* one (divided by ``n``), the same that
    keras' ``BatchNormalization`` stores, although the kernel itself reports
    the Bessel-corrected ``n / (n - 1)`` version.

    Large channel offsets are removed before the kernel (see
    :data:`xbn.layers._base.PIVOT_RATIO`): in training mode the input is
    centred on a sample of the batch and the pivot added back to the batch
    mean (BN's output is unchanged by a shift of its input, and the pivot
    gets no gradient); in inference mode it is centred on the moving mean
    itself, so the kernel computes ``(x - mean) * scale + beta`` without the
    cancellation of ``x * scale - mean * scale``.

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
    from xbn.layers import _base

    training = mean is None
    if training:
        x, shift = _base.centre(x, axis, [i for i in range(x.shape.rank) if i != axis])
        shift = tf.cast(shift, tf.float32)
    else:
        need = tf.reduce_any(tf.abs(mean) > _base.PIVOT_RATIO * tf.sqrt(variance + epsilon))
        x, shift = _centred(x, axis, need, mean)
    x4, data_format = _to_fused_layout(x, axis)
    if not training:
        y = tf.compat.v1.nn.fused_batch_norm(
            x4, gamma, beta, mean=mean - shift, variance=variance, epsilon=epsilon,
            data_format=data_format, is_training=False,
        )[0]
        return tf.reshape(y, tf.shape(x)) if x4 is not x else y
    if tf.config.list_physical_devices("GPU"):
        y, batch_mean, batch_var = _fused_training_gpu(x4, gamma, beta, epsilon, data_format)
    else:
        y, batch_mean, batch_var = _fused_training_cpu(x4, gamma, beta, epsilon, data_format)
    if x4 is not x:
        y = tf.reshape(y, tf.shape(x))
    return y, batch_mean + shift, batch_var


def _fused_training_gpu(x4, gamma, beta, epsilon, data_format):
    """cuDNN's fused training pass; its statistics are accurate (the variance
    it reports is Bessel-corrected, and undone here)."""
    y, batch_mean, batch_var = tf.compat.v1.nn.fused_batch_norm(
        x4, gamma, beta, epsilon=epsilon, data_format=data_format, is_training=True
    )
    channels = tf.cast(tf.shape(batch_mean)[0], tf.int64)
    count = tf.cast(tf.size(x4, out_type=tf.int64) // channels, tf.float64)
    # Undo the kernel's Bessel correction (a single value has variance 0),
    # in float64 on the C-vector, so the variance is rounded to float32 once.
    factor = tf.where(count > 1.0, (count - 1.0) / count, tf.zeros_like(count))
    return y, batch_mean, tf.cast(tf.cast(batch_var, tf.float64) * factor, batch_var.dtype)


def _fused_training_cpu(x4, gamma, beta, epsilon, data_format):
    """The fused training pass on a CPU, with a variance it can trust.

    The CPU kernels' batch variance is a few float32 ulps off (oneDNN's
    single-threaded one about 25: 6e-6 of a unit variance), and the input
    gradient of BatchNorm is ``(dy - mean(dy) - xhat * mean(dy * xhat)) * inv``:
    when ``dy`` is nearly affine in ``xhat``, which a following linear layer
    and BatchNorm make it, the bracket cancels and amplifies that error a
    thousandfold (MobileNetV2's stem gradient was off by 2%, keras' by
    0.005%).  So the variance is computed once more, as the mean of the
    squared deviations from the kernel's mean by TensorFlow's tree
    reductions, and handed to TensorFlow's fused gradient kernel (its
    ``reserve_space_2``, the batch variance on CPUs) and to the moving
    average: gradients then as accurate as keras' (or more), at about twice
    the kernel's cost and still well under keras' decomposed layer.
    """
    axes = [0, 1, 2] if data_format == "NHWC" else [0, 2, 3]
    per_channel = [1, 1, 1, -1] if data_format == "NHWC" else [1, -1, 1, 1]
    empty = tf.zeros([0], tf.float32)

    @tf.custom_gradient
    def forward(x, gamma, beta):
        mean, variance = tf.nn.moments(tf.cast(x, tf.float32), axes)
        y, _, _, _, _, reserve = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=gamma, offset=beta, mean=mean, variance=variance, epsilon=epsilon,
            data_format=data_format, is_training=False,
        )

        def backward(dy, *unused):  # the statistics themselves get no gradient
            dx, d_gamma, d_beta, _, _ = tf.raw_ops.FusedBatchNormGradV3(
                y_backprop=dy, x=x, scale=gamma, reserve_space_1=mean, reserve_space_2=variance,
                reserve_space_3=reserve, epsilon=epsilon, data_format=data_format, is_training=True,
            )
            return dx, d_gamma, d_beta

        return (y, tf.stop_gradient(mean), tf.stop_gradient(variance)), backward

    return forward(x4, gamma, beta)


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
    Outside a replica context, or with a single replica, the shift is ``x``'s
    first element of each reduced slice and the moments are local.
    """
    replica = tf.distribute.get_replica_context()
    if replica is None or replica.num_replicas_in_sync == 1:
        from xbn.layers import _base

        centred, shift = _base.centre(x, axes)
        mean, variance = tf.nn.moments(centred, axes)
        return centred, tf.reshape(shift, [-1]), mean, variance
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


def can_use_fast_conv_gradient(kernel_size, strides, padding, dilation_rate, data_format, groups):
    """Whether :func:`conv2d` computes the input gradient as a forward conv.

    TensorFlow's CPU ``Conv2DBackpropInput`` kernel is 4x-8x slower than the
    forward convolution of the same size on the deep, small-spatial layers of
    a ResNet (measured on a 2-core CPU: 1x1 conv, 16x4x4x512 -> 2048: forward
    12 ms, input gradient 95 ms).  The input gradient of a convolution is
    itself a convolution, which is what :func:`conv2d` runs where that is
    exact:

    - stride 1, ``"same"`` padding and odd kernel sides (symmetric padding):
      the gradient is the ``"same"`` convolution of ``dy`` with the kernel
      rotated by 180 degrees and its channel axes swapped;
    - stride 1, ``"valid"`` padding: the same kernel over ``dy`` zero-padded
      by ``k - 1`` on each side (a "full" convolution);
    - a 1x1 kernel with any strides: ``dy`` times the transposed kernel,
      scattered back to every ``stride``-th position.

    Channels-last 2-D convolutions without dilation or groups only; every
    other convolution keeps TensorFlow's own gradient.
    """
    if data_format != "channels_last" or groups != 1:
        return False
    if tuple(dilation_rate) != (1, 1) or len(kernel_size) != 2:
        return False
    if tuple(kernel_size) == (1, 1):
        return True
    if tuple(strides) != (1, 1):
        return False
    return padding == "valid" or all(k % 2 == 1 for k in kernel_size)


def conv2d(x, kernel, strides, padding):
    """``tf.nn.convolution`` of a channels-last batch with a faster input gradient.

    The forward pass is exactly keras' (the same op with the same
    arguments); only the backward pass differs, see
    :func:`can_use_fast_conv_gradient` for when this may be called.  The
    kernel gradient is TensorFlow's ``Conv2DBackpropFilter``.

    Args:
        x: ``(N, H, W, C_in)`` tensor.
        kernel: ``(kh, kw, C_in, C_out)`` tensor of ``x``'s dtype.
        strides: two ints.
        padding: ``"same"`` or ``"valid"``.
    """
    strides = [int(s) for s in strides]
    tf_padding = padding.upper()

    @tf.custom_gradient
    def forward(x, kernel):
        y = tf.nn.convolution(x, kernel, strides, tf_padding, data_format="NHWC")

        def backward(dy):
            d_kernel = tf.raw_ops.Conv2DBackpropFilter(
                input=x,
                filter_sizes=tf.shape(kernel),
                out_backprop=dy,
                strides=[1, *strides, 1],
                padding=tf_padding,
            )
            return _conv_input_gradient(dy, kernel, tf.shape(x), strides, tf_padding), d_kernel

        return y, backward

    return forward(x, kernel)


def _conv_input_gradient(dy, kernel, x_shape, strides, padding):
    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
    # (kh, kw, in, out) -> (kh, kw, out, in), rotated by 180 degrees.
    flipped = tf.reverse(tf.transpose(kernel, [0, 1, 3, 2]), axis=[0, 1])
    if strides == [1, 1]:
        if padding == "VALID" and (kh, kw) != (1, 1):
            dy = tf.pad(dy, [[0, 0], [kh - 1, kh - 1], [kw - 1, kw - 1], [0, 0]])
        return tf.nn.convolution(dy, flipped, 1, padding, data_format="NHWC")
    # 1x1 kernel, strided: y[:, i, j] = x[:, s*i, t*j] @ W, so x's gradient is
    # dy @ W^T at those positions and zero in between.
    sh, sw = strides
    z = tf.nn.convolution(dy, flipped, 1, "VALID", data_format="NHWC")
    shape = tf.shape(z)
    n, h, w, c = shape[0], shape[1], shape[2], shape[3]
    z = tf.reshape(z, [n, h, 1, w, 1, c])
    z = tf.pad(z, [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]])
    z = tf.reshape(z, [n, h * sh, w * sw, c])
    return z[:, : x_shape[1], : x_shape[2], :]
