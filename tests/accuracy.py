"""The numerical promises of BatchNorm and GroupNorm, checked on any keras backend.

Each ``check_*`` function raises ``AssertionError`` (naming the seed and the
errors) when the promise breaks.  The TensorFlow tests call them for the
fused and portable paths (tests/layers/test_batch_norm.py,
test_group_norm.py); tests/backend_check.py calls them on JAX and PyTorch,
for the default path and the portable one (``fused=False`` / the portable
GroupNorm), so every backend keeps the same promises.

The references are float64 NumPy (tests/references.py); keras' own layers
are the bound where the promise is "no worse than keras".
"""

import keras
import numpy as np
import references

ULP = np.finfo(np.float32).eps
SEEDS = range(10)
# Float32 ulps of the output scale a path may be off by on 6,272 values per
# channel (a correct float32 two-pass algorithm: 3 to 8 ulps measured).
LIMIT = 16


def to_numpy(t):
    return np.asarray(keras.ops.convert_to_numpy(t), np.float64)


def input_gradient(layer, x, upstream, training=True):
    """d(sum(layer(x) * upstream))/dx on keras' current backend, float64."""
    backend = keras.backend.backend()
    kwargs = {"training": training} if "training" in _call_arguments(layer) else {}
    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = layer(xt, **kwargs)
        return to_numpy(tape.gradient(y, xt, tf.constant(upstream)))
    if backend == "jax":
        import jax

        layer(x, **kwargs)  # build
        trainable = [v.value for v in layer.trainable_variables]
        other = [v.value for v in layer.non_trainable_variables]
        y, vjp = jax.vjp(lambda t: layer.stateless_call(trainable, other, t, **kwargs)[0], x)
        return to_numpy(vjp(jax.numpy.asarray(upstream, y.dtype))[0])
    import torch
    from keras.src.backend.torch.core import get_device

    xt = torch.tensor(x, requires_grad=True, device=get_device())
    y = layer(xt, **kwargs)
    y.backward(torch.tensor(upstream, dtype=y.dtype, device=y.device))
    return to_numpy(xt.grad)


def _call_arguments(layer):
    import inspect

    return inspect.signature(layer.call).parameters


def _bn_errors(layer, x, y_ref, var_ref):
    """(training output, moving variance, inference output) errors against float64."""
    y = to_numpy(layer(x, training=True))
    variance = to_numpy(layer.moving_variance)
    y_inference = to_numpy(layer(x, training=False))  # momentum 0: the batch's
    return np.array([
        np.abs(y - y_ref).max(), np.abs(variance - var_ref).max(), np.abs(y_inference - y_ref).max()
    ])


def check_bn_large_offsets(make_layer, limit=LIMIT):
    """Channels far from zero against their spread (mean 1e4 with unit spread,
    -3e3 with spread 0.1): on every seed no worse than keras' layer in the
    training output, the moving variance and the inference output, and the
    training output as exact as at an offset of 0."""
    for loc, scale in ((1e4, 1.0), (-3e3, 0.1)):
        for seed in SEEDS:
            x = np.random.default_rng(seed).normal(loc, scale, (32, 14, 14, 64)).astype("float32")
            y_ref, _, var_ref = references.batch_norm(x.astype(np.float64))
            ours = _bn_errors(make_layer(momentum=0.0), x, y_ref, var_ref)
            theirs = _bn_errors(keras.layers.BatchNormalization(momentum=0.0), x, y_ref, var_ref)
            # keras' layer on PyTorch forms E[x^2] - E[x]^2: NaN at a mean of 1e4.
            assert np.all((ours <= theirs) | np.isnan(theirs)), (loc, seed, ours, theirs)
            assert ours[0] <= limit * ULP * np.abs(y_ref).max(), (loc, seed, ours)


ORDINARY = {
    "standard": lambda r: r.normal(0.0, 1.0, (32, 14, 14, 64)),
    "mean3": lambda r: r.normal(3.0, 1.0, (32, 14, 14, 64)),
    "uniform-x1e4": lambda r: r.uniform(0, 1, (32, 14, 14, 64)) * 1e4,
}


def check_bn_ordinary_inputs(make_layer, make, limit=LIMIT):
    """Ordinary inputs to float32 resolution: outputs and moving variance."""
    for seed in range(3):
        x = make(np.random.default_rng(seed)).astype("float32")
        y_ref, _, var_ref = references.batch_norm(x.astype(np.float64))
        ours = _bn_errors(make_layer(momentum=0.0), x, y_ref, var_ref)
        assert ours[0] <= limit * ULP * np.abs(y_ref).max(), (seed, ours)
        assert ours[1] <= limit * ULP * var_ref.max(), (seed, ours)
        assert ours[2] <= limit * ULP * np.abs(y_ref).max(), (seed, ours)


def float32_floor(x, dy, exact, epsilon=1e-3):
    """The relative error of BatchNorm's input gradient evaluated in float32
    with every sum exactly rounded (float64 sums rounded once): what float32
    elementwise arithmetic alone costs, the best a float32 layer can do."""
    f = np.float32
    axes = tuple(range(x.ndim - 1))
    count = f(np.prod([x.shape[i] for i in axes]))

    def total(t):
        return t.astype(np.float64).sum(axes).astype(f)

    mean = total(x) / count
    centred = x - mean
    rstd = f(1) / np.sqrt(total(centred * centred) / count + f(epsilon))
    xhat = centred * rstd
    sum_dy, sum_dy_xhat = total(dy), total(dy * centred) * rstd
    dx = ((dy - (sum_dy + xhat * sum_dy_xhat) / count) * rstd).astype(np.float64)
    return np.linalg.norm(dx - exact) / np.linalg.norm(exact)


def check_bn_gradients_where_they_cancel(make_layer, seeds=range(4)):
    """BatchNorm's input gradient is (dy - mean(dy) - xhat * mean(dy * xhat)) / s.
    When dy is nearly affine in xhat (a linear layer and a BatchNorm after it
    make it so) the bracket cancels a thousandfold, and any error in the
    statistics or the sums comes back that much larger.  On every seed ours
    is no worse than keras' layer, or within a factor 2 (one bit) of the
    float32 floor (:func:`float32_floor`): where keras' layer itself sits at
    the floor (JAX), which of two floor-level errors is smaller is chance.
    TensorFlow's fused CPU kernel was 2-3x keras' error (8x the floor) on
    an AMD EPYC, PyTorch's native backward 5-10x the floor."""
    for seed in seeds:
        rng = np.random.default_rng(seed)
        x = rng.normal(0.3, 1.5, (4, 32, 32, 16)).astype("float32")
        x64 = x.astype(np.float64)
        mean, var = x64.mean((0, 1, 2)), x64.var((0, 1, 2))
        xhat = (x64 - mean) / np.sqrt(var + 1e-3)
        dy = (0.7 + 1.3 * xhat + 1e-3 * rng.normal(0, 1, x.shape)).astype("float32")
        d = dy.astype(np.float64)
        exact = (d - d.mean((0, 1, 2)) - xhat * (d * xhat).mean((0, 1, 2))) / np.sqrt(var + 1e-3)
        errors = []
        for layer in (make_layer(momentum=0.0), keras.layers.BatchNormalization(momentum=0.0)):
            dx = input_gradient(layer, x, dy)
            errors.append(np.linalg.norm(dx - exact) / np.linalg.norm(exact))
        floor = float32_floor(x, dy, exact)
        assert errors[0] <= max(errors[1], 2 * floor), (seed, errors, floor)


GN_ROBUSTNESS = {
    "uniform-x1e4": lambda r: r.uniform(0, 1, (2, 6, 6, 8)) * 1e4,
    "mean1e4-unit-spread": lambda r: r.normal(1e4, 1.0, (2, 6, 6, 8)),
}


def check_gn_large_magnitudes(make_layer, make, rng):
    """No less accurate than keras' layer, at the resolution of a float32
    output (one ulp of the largest value; the two differ in summation order
    and where they round), and never off by whole units as E[x^2] - E[x]^2
    would be on the mean-1e4 case."""
    x = make(rng).astype("float32")
    ref = references.group_norm(x.astype(np.float64), 4)
    error_ours = np.abs(to_numpy(make_layer(groups=4)(x)) - ref).max()
    error_keras = np.abs(to_numpy(keras.layers.GroupNormalization(groups=4)(x)) - ref).max()
    ulp = ULP * np.abs(ref).max()
    # keras' layer on PyTorch forms E[x^2] - E[x]^2: NaN at a mean of 1e4.
    assert error_ours <= error_keras + ulp or np.isnan(error_keras), (error_ours, error_keras, ulp)
    assert error_ours < 5e-3, error_ours
