"""TensorFlow-only fast path of ``Conv2D``: the input gradient as a forward conv.

Imported only when keras' backend is TensorFlow; see
:func:`can_use_fast_conv_gradient` for when it applies and why.
"""

import tensorflow as tf


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
    kernel gradient is TensorFlow's ``Conv2DBackpropFilter``, but a 1x1
    kernel's, which is one matmul (:func:`_pointwise_kernel_gradient`).

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
            if tuple(kernel.shape[:2]) == (1, 1):
                d_kernel = _pointwise_kernel_gradient(x, dy, kernel, strides)
            else:
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


def _as_matrix(kernel):
    """A 1x1 kernel ``(1, 1, C_in, C_out)`` as the ``(C_in, C_out)`` matrix it applies."""
    return tf.reshape(kernel, [int(kernel.shape[2]), int(kernel.shape[3])])


def _pointwise_kernel_gradient(x, dy, kernel, strides):
    """A 1x1 kernel's gradient, ``x^T @ dy`` over every output position, as
    one matmul.  On an Intel Xeon with AMX, TensorFlow's
    ``Conv2DBackpropFilter`` took 2.5x the matmul's time over ResNet-50's
    1x1 layers in bfloat16 (90 against 37 ms per step at batch 16, 128x128:
    it barely gained over its 96 ms in float32, the matmul 2.4x), and 1.09x
    in float32."""
    c_in, c_out = _as_matrix(kernel).shape
    if list(strides) != [1, 1]:  # the positions the kernel saw (no padding at 1x1)
        x = x[:, :: strides[0], :: strides[1], :]
    flat = tf.matmul(tf.reshape(x, [-1, c_in]), tf.reshape(dy, [-1, c_out]), transpose_a=True)
    return tf.reshape(flat, kernel.shape)


def _pointwise_input_gradient(dy, kernel, x_shape, strides):
    """A 1x1 kernel's input gradient: ``y[:, i, j] = x[:, s*i, t*j] @ W``, so
    x's gradient is ``dy @ W^T`` at those positions and zero in between.
    One matmul, the transpose folded into the product rather than a
    transposed copy of the kernel every step."""
    matrix = _as_matrix(kernel)
    shape = tf.shape(dy)
    n, h, w = shape[0], shape[1], shape[2]
    z = tf.matmul(tf.reshape(dy, [-1, matrix.shape[1]]), matrix, transpose_b=True)
    if strides == [1, 1]:
        return tf.reshape(z, x_shape)
    sh, sw = strides
    c = matrix.shape[0]
    z = tf.reshape(z, [n, h, 1, w, 1, c])
    z = tf.pad(z, [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]])
    z = tf.reshape(z, [n, h * sh, w * sw, c])
    return z[:, : x_shape[1], : x_shape[2], :]


def _conv_input_gradient(dy, kernel, x_shape, strides, padding):
    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
    if (kh, kw) == (1, 1):
        return _pointwise_input_gradient(dy, kernel, x_shape, strides)
    # Stride 1 (can_use_fast_conv_gradient): the "same" or "full" convolution
    # of dy with the kernel (kh, kw, in, out) -> (kh, kw, out, in), rotated
    # by 180 degrees.
    flipped = tf.reverse(tf.transpose(kernel, [0, 1, 3, 2]), axis=[0, 1])
    if padding == "VALID":
        dy = tf.pad(dy, [[0, 0], [kh - 1, kh - 1], [kw - 1, kw - 1], [0, 0]])
    return tf.nn.convolution(dy, flipped, 1, padding, data_format="NHWC")
