"""Float64 NumPy references the layers are checked against.

Written from the definitions (the seeds' formulas), independently of the
code under test: no keras, no TensorFlow.
"""

import numpy as np


def batch_norm(x, axis=-1, gamma=None, beta=None, epsilon=1e-3, mean=None, var=None):
    """BN of ``x`` in float64.

    With ``mean``/``var`` given (inference) those are used; otherwise the batch
    mean and biased variance over every axis but ``axis``.  Returns
    ``(y, batch_mean, batch_var)``.
    """
    x = np.asarray(x, np.float64)
    axis = axis % x.ndim
    axes = tuple(i for i in range(x.ndim) if i != axis)
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    batch_mean = x.mean(axis=axes)
    batch_var = ((x - batch_mean.reshape(shape)) ** 2).mean(axis=axes)
    m = batch_mean if mean is None else np.asarray(mean, np.float64)
    v = batch_var if var is None else np.asarray(var, np.float64)
    y = (x - m.reshape(shape)) / np.sqrt(v.reshape(shape) + epsilon)
    if gamma is not None:
        y = y * np.asarray(gamma, np.float64).reshape(shape)
    if beta is not None:
        y = y + np.asarray(beta, np.float64).reshape(shape)
    return y, batch_mean, batch_var


def moving_statistics(batches, momentum, axis=-1, mean0=0.0, var0=1.0):
    """Moving mean/variance after training steps on ``batches``, float64."""
    mean = var = None
    for x in batches:
        _, m, v = batch_norm(x, axis=axis)
        if mean is None:
            mean = np.full_like(m, mean0)
            var = np.full_like(v, var0)
        mean = momentum * mean + (1 - momentum) * m
        var = momentum * var + (1 - momentum) * v
    return mean, var


def batch_renorm(batches, axis=-1, gamma=None, beta=None, epsilon=1e-3, momentum=0.99,
                 renorm_momentum=0.99, clipping=None, mean0=0.0, var0=1.0, clipping_at=None):
    """Batch renormalization (Ioffe, 2017) in float64, as keras defines it.

    Trains on ``batches`` one after the other and returns the outputs of each
    step and the final ``(moving_mean, moving_variance, moving_stddev,
    renorm_mean, renorm_stddev)``.  ``r = s / renorm_stddev`` and
    ``d = (mean - renorm_mean) / renorm_stddev`` use the running statistics
    from *before* the step (``renorm_stddev`` at least ``sqrt(epsilon)``),
    clipped to ``[rmin, rmax]`` and ``[-dmax, dmax]``; ``clipping_at(step)``,
    where given, is the clipping of each step (a ramp).
    """
    outputs = []
    state = None
    for step, x in enumerate(batches):
        clipping = (clipping_at(step) if clipping_at else clipping) or {}
        x = np.asarray(x, np.float64)
        _, mean, var = batch_norm(x, axis=axis)
        std = np.sqrt(var + epsilon)
        if state is None:
            std0 = np.sqrt(np.full_like(var, var0))
            state = [np.full_like(mean, mean0), np.full_like(var, var0), std0,
                     np.full_like(mean, mean0), std0.copy()]
        moving_mean, _, moving_std, renorm_mean, renorm_std = state
        safe = np.maximum(renorm_std, np.sqrt(epsilon))
        r = np.clip(std / safe, clipping.get("rmin", 0.0), clipping.get("rmax", np.inf))
        d = np.clip((mean - renorm_mean) / safe, -clipping.get("dmax", np.inf), clipping.get("dmax", np.inf))
        shape = [1] * x.ndim
        shape[axis % x.ndim] = x.shape[axis]
        y = (x - mean.reshape(shape)) / std.reshape(shape) * r.reshape(shape) + d.reshape(shape)
        if gamma is not None:
            y = y * np.asarray(gamma, np.float64).reshape(shape)
        if beta is not None:
            y = y + np.asarray(beta, np.float64).reshape(shape)
        outputs.append(y)
        moving_std = momentum * moving_std + (1 - momentum) * std
        state = [
            momentum * moving_mean + (1 - momentum) * mean,
            np.maximum(moving_std**2 - epsilon, 0.0),
            moving_std,
            renorm_momentum * renorm_mean + (1 - renorm_momentum) * mean,
            renorm_momentum * renorm_std + (1 - renorm_momentum) * std,
        ]
    return outputs, state


def group_norm(x, groups, axis=-1, gamma=None, beta=None, epsilon=1e-3):
    """GN of ``x`` in float64: per sample and group, over every other axis."""
    x = np.asarray(x, np.float64)
    axis = axis % x.ndim
    channels = x.shape[axis]
    groups = channels if groups == -1 else groups
    moved = np.moveaxis(x, axis, -1)  # (N, ..., C)
    n = moved.shape[0]
    grouped = moved.reshape(n, -1, groups, channels // groups)
    mean = grouped.mean(axis=(1, 3), keepdims=True)
    var = ((grouped - mean) ** 2).mean(axis=(1, 3), keepdims=True)
    y = ((grouped - mean) / np.sqrt(var + epsilon)).reshape(moved.shape)
    if gamma is not None:
        y = y * np.asarray(gamma, np.float64)
    if beta is not None:
        y = y + np.asarray(beta, np.float64)
    return np.moveaxis(y, -1, axis)


def standardize_kernel(kernel, eps=1e-5):
    """Weight standardization of an HWIO kernel, per output filter."""
    k = np.asarray(kernel, np.float64)
    mean = k.mean(axis=(0, 1, 2), keepdims=True)
    var = ((k - mean) ** 2).mean(axis=(0, 1, 2), keepdims=True)
    return (k - mean) / np.sqrt(var + eps)


def _pairs(value):
    return (value, value) if np.isscalar(value) else tuple(value)


def _conv_geometry(in_shape, kernel_shape, strides, padding, dilation):
    """Output size and TensorFlow's padding (extra at the end) of a 2-D conv.

    Returns ``(out_h, out_w, ((top, bottom), (left, right)))``.
    """
    (sh, sw), (dh, dw) = _pairs(strides), _pairs(dilation)
    h, w = in_shape
    eff_h, eff_w = (kernel_shape[0] - 1) * dh + 1, (kernel_shape[1] - 1) * dw + 1
    if padding == "same":
        out_h, out_w = -(-h // sh), -(-w // sw)
        pad_h = max((out_h - 1) * sh + eff_h - h, 0)
        pad_w = max((out_w - 1) * sw + eff_w - w, 0)
        return out_h, out_w, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2))
    return (h - eff_h) // sh + 1, (w - eff_w) // sw + 1, ((0, 0), (0, 0))


def _conv_taps(kernel_shape, out_h, out_w, strides, dilation):
    """For each kernel tap ``(i, j)``: the slices of the padded input it reads."""
    (sh, sw), (dh, dw) = _pairs(strides), _pairs(dilation)
    for i in range(kernel_shape[0]):
        for j in range(kernel_shape[1]):
            rows = slice(i * dh, i * dh + (out_h - 1) * sh + 1, sh)
            cols = slice(j * dw, j * dw + (out_w - 1) * sw + 1, sw)
            yield i, j, rows, cols


def conv2d(x, kernel, bias=None, strides=1, padding="valid", dilation=1, groups=1):
    """NHWC x HWIO convolution in float64 by explicit summation.

    ``padding="same"`` follows TensorFlow's rule (extra padding at the end).
    """
    x = np.asarray(x, np.float64)
    k = np.asarray(kernel, np.float64)
    kh, kw, cin_g, cout = k.shape
    out_h, out_w, pads = _conv_geometry(x.shape[1:3], k.shape, strides, padding, dilation)
    x = np.pad(x, ((0, 0), *pads, (0, 0)))
    out = np.zeros((x.shape[0], out_h, out_w, cout))
    cout_g = cout // groups
    for g in range(groups):
        xs = x[..., g * cin_g:(g + 1) * cin_g]
        ks = k[..., g * cout_g:(g + 1) * cout_g]
        for i, j, rows, cols in _conv_taps(k.shape, out_h, out_w, strides, dilation):
            out[..., g * cout_g:(g + 1) * cout_g] += xs[:, rows, cols, :] @ ks[i, j]
    if bias is not None:
        out = out + np.asarray(bias, np.float64)
    return out


def conv2d_gradients(x, kernel, dy, strides=1, padding="valid", dilation=1):
    """Gradients of ``sum(conv2d(x, kernel) * dy)`` in float64: ``(dx, dkernel)``.

    The adjoint of :func:`conv2d` (``groups=1``) by explicit summation: every
    kernel tap that read an input position sends ``dy @ kernel[tap].T`` back to
    it, and the kernel tap's gradient is the input it read times ``dy``.
    """
    x = np.asarray(x, np.float64)
    k = np.asarray(kernel, np.float64)
    dy = np.asarray(dy, np.float64)
    n, h, w, _ = x.shape
    out_h, out_w, pads = _conv_geometry((h, w), k.shape, strides, padding, dilation)
    assert dy.shape[1:3] == (out_h, out_w)
    padded = np.pad(x, ((0, 0), *pads, (0, 0)))
    dx = np.zeros_like(padded)
    dk = np.zeros_like(k)
    for i, j, rows, cols in _conv_taps(k.shape, out_h, out_w, strides, dilation):
        dx[:, rows, cols, :] += dy @ k[i, j].T
        dk[i, j] = np.einsum("nhwc,nhwo->co", padded[:, rows, cols, :], dy)
    (top, _), (left, _) = pads
    return dx[:, top:top + h, left:left + w, :], dk
