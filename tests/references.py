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


def conv2d(x, kernel, bias=None, strides=1, padding="valid", dilation=1, groups=1):
    """NHWC x HWIO convolution in float64 by explicit summation.

    ``padding="same"`` follows TensorFlow's rule (extra padding at the end).
    """
    x = np.asarray(x, np.float64)
    k = np.asarray(kernel, np.float64)
    sh, sw = (strides, strides) if np.isscalar(strides) else strides
    dh, dw = (dilation, dilation) if np.isscalar(dilation) else dilation
    kh, kw, cin_g, cout = k.shape
    n, h, w, cin = x.shape
    eff_h, eff_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if padding == "same":
        out_h, out_w = -(-h // sh), -(-w // sw)
        pad_h = max((out_h - 1) * sh + eff_h - h, 0)
        pad_w = max((out_w - 1) * sw + eff_w - w, 0)
        x = np.pad(
            x,
            ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)),
        )
    else:
        out_h, out_w = (h - eff_h) // sh + 1, (w - eff_w) // sw + 1
    out = np.zeros((n, out_h, out_w, cout))
    cout_g = cout // groups
    for g in range(groups):
        xs = x[..., g * cin_g:(g + 1) * cin_g]
        ks = k[..., g * cout_g:(g + 1) * cout_g]
        for i in range(kh):
            for j in range(kw):
                patch = xs[
                    :,
                    i * dh: i * dh + (out_h - 1) * sh + 1: sh,
                    j * dw: j * dw + (out_w - 1) * sw + 1: sw,
                    :,
                ]
                out[..., g * cout_g:(g + 1) * cout_g] += patch @ ks[i, j]
    if bias is not None:
        out = out + np.asarray(bias, np.float64)
    return out
