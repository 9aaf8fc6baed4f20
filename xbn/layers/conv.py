"""``Conv2D`` with a faster backward pass on TensorFlow.

xbn's models build every convolution from this class (or its subclass
:class:`~xbn.layers.WSConv2D`).  It *is* a ``keras.layers.Conv2D``: the same
arguments, weights, weight names and forward op, so weights move between it
and keras' layer (and ``keras.applications``) with ``set_weights``.  Only the
gradient differs, and only on the TensorFlow backend: TensorFlow's CPU kernel
for a convolution's input gradient (``Conv2DBackpropInput``) is several times
slower than the forward convolution on the deep, small-spatial layers of a
ResNet on an AMD EPYC, so where it is exact the layer computes that gradient
as a forward convolution instead (see
``xbn.layers._tf_conv.can_use_fast_conv_gradient``), and a 1x1 kernel's
gradients as matmuls, which use a CPU's bfloat16 units where
``Conv2DBackpropFilter`` did not.
"""

import keras
from keras import ops

from xbn.layers import _dispatch


@keras.saving.register_keras_serializable(package="xbn")
class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` whose input gradient is computed faster on TensorFlow.

    Takes exactly ``keras.layers.Conv2D``'s arguments.  On the TensorFlow
    backend, a channels-last convolution without dilation or groups that has
    either stride 1 (``"valid"`` padding, or ``"same"`` padding with odd
    kernel sides) or a 1x1 kernel computes the gradient with respect to its
    input as a forward convolution: the mathematically identical result, 4x
    to 8x faster than TensorFlow's ``Conv2DBackpropInput`` for the deep
    layers of a ResNet-50 on an AMD EPYC (on an Intel Xeon with AMX, whose
    kernel is fast, the two are within 10% of each other).  A 1x1 kernel's
    input and kernel gradients are each one matmul: in bfloat16 on that
    Xeon, where matmuls run on AMX, its kernel gradient took 0.4x the time
    of TensorFlow's ``Conv2DBackpropFilter``.  Every other configuration,
    and every other backend, runs keras' own implementation.  Outputs are
    keras' in every case, and so are kernel gradients but a 1x1 kernel's
    (the same sums, in another order).

    Example:

    >>> import numpy as np
    >>> from xbn.layers import Conv2D
    >>> conv = Conv2D(8, 3, padding="same", use_bias=False)
    >>> conv(np.ones((2, 16, 16, 3), "float32")).shape
    (2, 16, 16, 8)
    """

    @property
    def fast_input_gradient(self):
        """Whether this layer computes its input gradient as a forward conv.

        True on the TensorFlow backend for the configurations listed in the
        class docstring; False means keras' own gradient.
        """
        return _dispatch.fast_conv_gradient(self)

    def convolution_op(self, inputs, kernel):
        if len(inputs.shape) != 4 or not self.fast_input_gradient:
            return super().convolution_op(inputs, kernel)
        inputs = ops.convert_to_tensor(inputs)
        return _dispatch.conv2d(inputs, ops.cast(kernel, inputs.dtype), self.strides, self.padding)
