"""Which kernels the layers run: the one place that looks at keras' backend.

Each layer has one ``call()``; what it runs is decided here, once per call
and in one function per layer, as keras keeps its choice inside
``ops.moments`` and ``ops.batch_normalization``:

=================  ==========================================================
BatchNorm path     when
=================  ==========================================================
``"fused"``        TensorFlow's fused kernel (:mod:`._tf_batch_norm`): in
                   inference, and in training on a GPU (cuDNN), where the
                   input allows it; not inside an XLA-compiled function,
                   where XLA fuses the portable maths into its neighbours,
                   nor in training on a CPU, where the portable maths is 2x
                   keras' layer and more accurate than the CPU kernel.
``"native"``       PyTorch's ``batch_norm`` kernel (:mod:`._torch_norm`).
``"statistics"``   the portable maths (:mod:`._portable`): a local, unmasked
                   batch in training (what JAX and XLA run).
``"moments"``      explicit moments: a masked batch, or one synchronized
                   across ``tf.distribute`` replicas.
``"moving"``       the moving statistics, in ``keras.ops``.
=================  ==========================================================

GroupNorm takes TensorFlow's channels-last kernel (:mod:`._tf_group_norm`),
PyTorch's ``group_norm`` or the portable maths; ``Conv2D`` takes its fast
input gradient on TensorFlow (:mod:`._tf_conv`).  The portable maths never
looks at the backend itself: :func:`portable_policy` tells it how the
program it is traced into can branch.  The backend modules are imported
here and nowhere else in the layers, once, at import time.
"""

import keras

from xbn.errors import UsageError
from xbn.layers import _portable

BACKEND = keras.backend.backend()
# False: GroupNorm takes the portable maths on every backend (the tests
# compare the two; BatchNorm has its own switch, fused=False).
NATIVE_GROUP_NORM = True
if BACKEND == "tensorflow":
    import tensorflow as tf

    from xbn.layers import _tf_batch_norm, _tf_conv, _tf_group_norm
elif BACKEND == "torch":
    from xbn.layers import _torch_norm


def portable_policy():
    """How the portable maths runs in the program being traced (see
    :class:`xbn.layers._portable.Policy`)."""
    if BACKEND == "tensorflow":
        if tf.executing_eagerly():
            mode = "eager"
        else:
            mode = "select" if _tf_batch_norm.in_xla_context() else "cond"
        return _portable.Policy(mode, two_level_sums=True, centre=_tf_batch_norm.centre_if_needed)
    return _portable.Policy("select" if BACKEND == "jax" else "eager")


# -- BatchNorm ------------------------------------------------------------------
def check_fused_argument(fused, renorm):
    """Refuse ``fused=True`` where TensorFlow's kernel cannot run at all."""
    if fused and BACKEND != "tensorflow":
        raise UsageError(
            "BatchNorm: fused=True needs the TensorFlow backend; the current "
            f"keras backend is {BACKEND!r}. Use fused=None (automatic)."
        )
    if fused and renorm:
        raise UsageError(
            "BatchNorm: fused=True cannot renormalize (the fused kernel has no "
            "r, d correction); use fused=None, which renormalizes on the "
            "portable path."
        )


def check_fused_build(layer, input_shape, axis):
    """Refuse, at build time, ``fused=True`` with a layout or epsilon the kernel cannot take."""
    if not (layer.fused and BACKEND == "tensorflow"):
        return
    if not (axis == len(input_shape) - 1 or (len(input_shape) == 4 and axis == 1)):
        raise UsageError(
            f"BatchNorm '{layer.name}': fused=True needs the channel axis "
            f"last or axis 1 of a 4-D input; got axis={layer.axis} for input "
            f"shape {tuple(input_shape)}. Use fused=None."
        )
    if layer.epsilon < _tf_batch_norm.FUSED_MIN_EPSILON:
        raise UsageError(
            f"BatchNorm '{layer.name}': fused=True needs epsilon >= "
            f"{_tf_batch_norm.FUSED_MIN_EPSILON} (the cuDNN minimum); got "
            f"epsilon={layer.epsilon}. Use fused=None."
        )


def synchronizing(layer):
    """Whether ``layer``'s batch statistics are reduced across tf.distribute replicas."""
    return layer.synchronized and BACKEND == "tensorflow" and _replicas_in_sync() > 1


def batch_norm_path(layer, inputs, training, mask):
    """The path a :class:`~xbn.layers.BatchNorm` call takes (the module's table)."""
    if BACKEND == "tensorflow" and _fuses(layer, inputs, training, mask):
        return "fused"
    if BACKEND == "torch" and mask is None and layer.fused is None and not (training and layer.renorm):
        return "native"
    if not training:
        return "moving"
    if mask is None and not synchronizing(layer):
        return "statistics"
    return "moments"


def _fuses(layer, inputs, training, mask):
    if layer.fused is False or mask is not None or (training and (layer.renorm or synchronizing(layer))):
        return False
    ok = _tf_batch_norm.can_fuse_batch_norm(inputs, layer._axis_index, layer.epsilon)
    if ok and layer.fused is None:
        if _tf_batch_norm.in_xla_context():
            return False  # XLA fuses the portable maths better
        if training and not _tf_batch_norm.on_gpu():
            return False  # faster and more accurate than the CPU kernel
    if layer.fused and not ok:
        raise UsageError(
            f"BatchNorm '{layer.name}': fused=True but the fused kernel cannot "
            f"take an input of dtype {inputs.dtype}; it takes float16, "
            "bfloat16 and float32. Use fused=None."
        )
    return ok


def fused_batch_norm(x, gamma, beta, epsilon, axis, mean=None, variance=None):
    """TensorFlow's fused kernel (see :func:`xbn.layers._tf_batch_norm.fused_batch_norm`)."""
    return _tf_batch_norm.fused_batch_norm(x, gamma, beta, epsilon, axis, mean=mean, variance=variance)


def native_batch_norm(x, gamma, beta, epsilon, axis, mean=None, variance=None):
    """PyTorch's kernels: with ``mean``/``variance`` (moving statistics) the
    inference pass, else ``(y, batch mean, batch variance)``."""
    if mean is not None:
        return _torch_norm.batch_norm_inference(x, mean, variance, gamma, beta, epsilon, axis)
    return _torch_norm.batch_norm_training(x, gamma, beta, epsilon, axis)


def synchronized_moments(x, axes):
    """Moments across tf.distribute replicas (see :func:`xbn.layers._tf_batch_norm.sync_moments`)."""
    return _tf_batch_norm.sync_moments(x, axes)


def _replicas_in_sync():
    """How many replicas share a step (1 outside a tf.distribute strategy)."""
    replica = tf.distribute.get_replica_context()
    if replica is None:  # cross-replica context
        return tf.distribute.get_strategy().num_replicas_in_sync
    return replica.num_replicas_in_sync


# -- GroupNorm and Conv2D ----------------------------------------------------------
def group_norm(x, gamma, beta, groups, epsilon, axis):
    """Group normalization: TensorFlow's channels-last kernel, PyTorch's, or the portable maths."""
    if NATIVE_GROUP_NORM and BACKEND == "tensorflow" and axis == len(x.shape) - 1:
        return _tf_group_norm.group_norm(x, gamma, beta, groups, epsilon)
    if NATIVE_GROUP_NORM and BACKEND == "torch":
        return _torch_norm.group_norm(x, gamma, beta, groups, epsilon, axis)
    return _portable.group_norm(x, gamma, beta, groups, epsilon, axis, portable_policy())


def fast_conv_gradient(layer):
    """Whether a ``Conv2D`` computes its input gradient as a forward conv (TensorFlow)."""
    return BACKEND == "tensorflow" and _tf_conv.can_use_fast_conv_gradient(
        layer.kernel_size, layer.strides, layer.padding, layer.dilation_rate, layer.data_format, layer.groups,
    )


def conv2d(inputs, kernel, strides, padding):
    """TensorFlow's convolution with the fast input gradient (see :mod:`xbn.layers._tf_conv`)."""
    return _tf_conv.conv2d(inputs, kernel, strides, padding)
