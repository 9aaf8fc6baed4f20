"""Weight-standardized convolution (Qiao et al., 2019, arXiv:1903.10520).

Official code: https://github.com/joe-siyuan-qiao/WeightStandardization;
timm's ``StdConv2d`` (timm/layers/std_conv.py) is the same idea.  Paired
with GroupNorm (GN+WS) it trains ResNets at batch sizes where BatchNorm fails.
"""

import keras
from keras import ops

from xbn import _checks
from xbn.layers.conv import Conv2D


@keras.saving.register_keras_serializable(package="xbn")
class WSConv2D(Conv2D):
    """A ``keras.layers.Conv2D`` whose kernel is standardized per output filter.

    Before every convolution each output filter's weights are centred and
    scaled over ``(kernel_h, kernel_w, input_channels / groups)``::

        w_hat = (w - mean(w)) / sqrt(var(w) + eps)      # biased variance

    and ``w_hat`` is what convolves the input; gradients flow through the
    standardization into ``w``.  The trainable kernel keeps keras' shape and
    name, so checkpoints and ``get_weights`` look like a ``Conv2D``'s, and
    :func:`xbn.fold.fold_batchnorm` turns the layer into a plain ``Conv2D``
    holding ``w_hat``.

    This differs from the seed code (PyTorch, seed 003) in one detail: that
    divides by ``std(w) + 1e-5`` with the *unbiased* standard deviation.  Here
    ``eps`` goes inside the square root of the *biased* variance, as in the
    paper's equation and timm's ``StdConv2d``; it stays finite for an all-zero
    filter and its gradient is smooth.  The two differ by a factor
    ``sqrt(n / (n - 1))`` (``n`` weights per filter), which a following
    normalization layer absorbs.

    The statistics are computed in float32 from the float32 kernel even under
    a ``mixed_float16`` or ``mixed_bfloat16`` policy; only the standardized
    kernel is cast to the compute dtype.

    Args:
        filters, kernel_size, strides, padding, data_format, dilation_rate,
        groups, activation, use_bias, kernel_initializer, bias_initializer,
        kernel_regularizer, bias_regularizer, activity_regularizer,
        kernel_constraint, bias_constraint: exactly as ``keras.layers.Conv2D``.
        eps: small positive float added to the kernel variance.  Defaults to
            1e-5.
        **kwargs: base layer arguments.

    Example:

    >>> import numpy as np
    >>> from xbn.layers import WSConv2D
    >>> conv = WSConv2D(8, 3, padding="same", use_bias=False)
    >>> y = conv(np.ones((1, 16, 16, 3), "float32"))
    >>> w = np.asarray(conv.standardized_kernel())
    >>> bool(np.allclose(w.reshape(-1, 8).mean(0), 0, atol=1e-6))
    True
    """

    def __init__(self, *args, eps=1e-5, **kwargs):
        super().__init__(*args, **kwargs)
        self.eps = _checks.check_float(
            "WSConv2D", "eps", eps, minimum=0.0, min_inclusive=False
        )

    def add_weight(self, *args, **kwargs):
        # The kernel is standardized in float32 and cast afterwards, so keras
        # must not autocast it to float16 first (that would lose precision
        # in the statistics).
        if kwargs.get("name") == "kernel":
            kwargs["autocast"] = False
        return super().add_weight(*args, **kwargs)

    def standardized_kernel(self):
        """The kernel that is convolved: each filter centred and scaled, float32."""
        kernel = ops.cast(self.kernel, "float32")
        mean = ops.mean(kernel, axis=(0, 1, 2), keepdims=True)
        centred = kernel - mean
        variance = ops.mean(ops.square(centred), axis=(0, 1, 2), keepdims=True)
        return centred * ops.rsqrt(variance + self.eps)

    def convolution_op(self, inputs, kernel):
        del kernel  # the raw kernel; the standardized one is convolved instead
        return super().convolution_op(
            inputs, ops.cast(self.standardized_kernel(), self.compute_dtype)
        )

    def get_config(self):
        return {**super().get_config(), "eps": self.eps}
