"""PyTorch-only fast path of ``BatchNorm`` and ``GroupNorm``: the native kernels.

On PyTorch every keras op is a kernel launch and a pass over memory, and
autograd differentiates each of them: keras' BatchNormalization forms its
statistics and output in six passes and its gradient in more.  PyTorch's
own ``batch_norm`` and ``group_norm`` take their statistics in one kernel
(accumulated in float32 or wider, never ``E[x^2] - E[x]^2``), normalize in
one, on CPUs and GPUs, in channels-last layout as keras' channels-last
tensors are (a permuted view, never a copy).  BatchNorm's gradient is
formed from ``torch.sum`` (see :func:`batch_norm_training`); GroupNorm's is
PyTorch's.

What they do not do is keep a mean far from zero exact: their output is
``x * scale + (beta - mean * scale)``, which at a mean of 1e4 with unit
spread is off by 1e4 float32 ulps.  So a channel that sits far from zero is
centred on a pivot first (:mod:`xbn.layers._portable`'s rule), the kernels
see ``x - pivot`` and the pivot is added back to the mean.  On a CPU the
centring pass is skipped when no channel needs it; on a GPU deciding that
would wait for the device, so it always runs (subtracting 0 where not
needed).

Imported only when keras' backend is PyTorch.
"""

import torch
import torch.nn.functional as F

from xbn.layers import _portable


def _channels_second(x, axis):
    """``x`` with its channel axis moved to 1, as PyTorch's kernels want it
    (a view: a channels-last 4-D tensor becomes channels_last NCHW)."""
    if axis == 1:
        return x, None
    order = [0, axis] + [i for i in range(1, x.dim()) if i != axis]
    inverse = [order.index(i) for i in range(x.dim())]
    return x.permute(order), inverse


def _centre(x, reduced, per_group=None):
    """``(x - pivot, pivot)`` where some channel needs it, else ``(x, None)``.

    ``pivot`` is in ``x``'s dtype and shape with the reduced axes kept
    (a value of ``x`` itself, so the subtraction is exact where it matters).
    """
    with torch.no_grad():
        pivot = _portable.pivots(x, reduced, None if per_group is None else per_group.first)[0]
        if x.device.type == "cpu" and not bool(torch.any(pivot != 0)):
            return x, None
    return x - pivot, pivot


def batch_norm_training(x, gamma, beta, epsilon, axis):
    """Batch normalization with the batch's statistics: PyTorch's kernel
    forward, and the input gradient from accurate sums.

    PyTorch's own backward kernel is fast but its sums are not: where
    BatchNorm's input gradient cancels (``dy`` nearly affine in ``xhat``) it
    came out 5-10x further from the float64 gradient than float32 allows,
    3-8x worse than keras' layer (tests/accuracy.py).  The backward here
    takes ``sum(dy)`` and ``sum(dy * xhat)`` with ``torch.sum`` (pairwise on
    a CPU, a tree on a GPU) and forms the gradient in four more passes.

    Args:
        x: the input, float16/bfloat16/float32/float64, channel axis ``axis``.
        gamma, beta: float32 (float64 for float64 input) ``(C,)`` tensors.
        epsilon: added to the variance.
        axis: the channel axis, non-negative.

    Returns:
        ``(y, mean, variance)``: ``y`` in ``x``'s dtype and layout; the batch
        mean and biased variance as ``(C,)`` tensors, without gradient.
    """
    reduced = [i for i in range(x.dim()) if i != axis]
    centred, pivot = _centre(x, reduced)
    y, mean, variance = _BatchNorm.apply(centred, gamma, beta, epsilon, axis)
    if pivot is not None:
        mean = mean + pivot.reshape(-1).to(mean.dtype)
    return y, mean, variance


class _BatchNorm(torch.autograd.Function):
    """Batch normalization with statistics and gradient from accurate sums."""

    @staticmethod
    def forward(ctx, x, gamma, beta, epsilon, axis):
        shape = [1] * x.dim()
        shape[axis] = -1
        reduced = [i for i in range(x.dim()) if i != axis]
        count = x.numel() // x.shape[axis]
        mean = (x.sum(reduced, dtype=gamma.dtype) / count)
        squares = torch.sub(x, mean.reshape(shape)).square_()
        variance = (squares.sum(reduced) / count).to(gamma.dtype)
        del squares
        inputs, inverse = _channels_second(x, axis)
        # The kernel's inference pass: one pass, with these statistics.
        y = F.batch_norm(inputs, mean, variance, gamma, beta, False, 0.0, epsilon)
        if inverse is not None:
            y = y.permute(inverse)
        ctx.save_for_backward(x, gamma, mean, variance)
        ctx.epsilon, ctx.axis, ctx.count = epsilon, axis, count
        ctx.mark_non_differentiable(mean, variance)
        return y, mean, variance

    @staticmethod
    def backward(ctx, dy, *unused):
        x, gamma, mean, variance = ctx.saved_tensors
        shape = [1] * x.dim()
        shape[ctx.axis] = -1
        reduced = [i for i in range(x.dim()) if i != ctx.axis]
        work = gamma.dtype
        rstd = torch.rsqrt(variance + ctx.epsilon)
        xhat = torch.sub(x, mean.reshape(shape)).mul_(rstd.reshape(shape))
        sum_dy = dy.sum(reduced).to(work)
        sum_dy_xhat = (dy * xhat).sum(reduced).to(work)
        # dx = gamma * rstd * (dy - (sum_dy + xhat * sum_dy_xhat) / n)
        xhat.mul_((sum_dy_xhat / ctx.count).reshape(shape)).add_((sum_dy / ctx.count).reshape(shape))
        dx = torch.sub(dy, xhat, out=xhat).mul_((gamma * rstd).reshape(shape))
        return dx.to(x.dtype), sum_dy_xhat, sum_dy, None, None


def batch_norm_inference(x, mean, variance, gamma, beta, epsilon, axis):
    """Batch normalization with the moving statistics: one kernel pass.

    PyTorch's inference kernel computes ``x * scale + (beta - mean * scale)``,
    which cancels where a channel's mean is far from zero against its
    standard deviation; there (:data:`xbn.layers._tf_batch_norm`'s rule: more
    than 8 standard deviations) the output is ``(x - mean) * scale + beta``
    in three passes instead.  On a GPU that check would wait for the device,
    so there the three passes always run (as keras' layer does).
    """
    work = gamma.dtype
    mean, variance = mean.to(work), variance.to(work)
    if x.device.type == "cpu":
        with torch.no_grad():
            far = bool(torch.any(mean.abs() > 8.0 * torch.sqrt(variance + epsilon)))
        if not far:
            inputs, inverse = _channels_second(x, axis)
            y = F.batch_norm(inputs, mean, variance, gamma, beta, False, 0.0, epsilon)
            return y.permute(inverse) if inverse is not None else y
    shape = [1] * x.dim()
    shape[axis] = -1
    scale = gamma * torch.rsqrt(variance + epsilon)
    y = torch.sub(x.to(work), mean.reshape(shape)).mul_(scale.reshape(shape)).add_(beta.reshape(shape))
    return y.to(x.dtype)


def group_norm(x, gamma, beta, groups, epsilon, axis):
    """Group normalization through ``torch.nn.functional.group_norm``.

    Args: as :func:`xbn.layers._portable.group_norm`.
    """
    spatial = [i for i in range(1, x.dim()) if i != axis]
    centred, _ = _centre(x, spatial, _portable._Groups(axis, groups, x.shape[axis]))
    inputs, inverse = _channels_second(centred, axis)
    if x.device.type != "cpu":  # the CUDA kernel wants the affine in the input's dtype
        gamma, beta = gamma.to(x.dtype), beta.to(x.dtype)
    y = F.group_norm(inputs, groups, gamma, beta, epsilon)
    return y.permute(inverse) if inverse is not None else y
