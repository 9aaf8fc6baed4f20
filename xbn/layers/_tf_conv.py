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
