"""Benchmark suite ``layers``: xbn's norm layers against keras' own.

Forward+backward (the gradient with respect to the input, gamma and beta,
with the moving-statistics update for BatchNorm) in training mode, and the
forward pass in inference mode, on ResNet-50-sized activations.
"""

import keras
import numpy as np
import tensorflow as tf

from xbn.bench.timing import compare
from xbn.layers import BatchNorm, GroupNorm

# (label, shape, groups): conv2_x of ResNet-50 at 224x224, batch 32.  The
# XBN GroupNorm sits on the 64-channel 3x3 output; GN+WS on the 256-channel
# block output too.
FULL_SHAPES = {
    "bn": [((32, 56, 56, 256), None)],
    "gn": [((32, 56, 56, 64), 32), ((32, 56, 56, 256), 32)],
}
QUICK_SHAPES = {"bn": [((4, 16, 16, 32), None)], "gn": [((4, 16, 16, 32), 8)]}


def _train_step(layer, x, upstream):
    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
        grads = tape.gradient(y, [x, *[w.value for w in layer.trainable_weights]], upstream)
        # Reduce the input gradient on the device: fetching 100 MB would be
        # timed otherwise.
        return [tf.reduce_sum(grads[0])] + grads[1:]

    return step


def _infer_step(layer, x):
    @tf.function
    def step():
        return tf.reduce_sum(layer(x, training=False))

    return step


def _pair(case, goal, make_ours, make_keras, shape, repeats, warmup):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(0.5, 2.0, shape).astype("float32"))
    upstream = tf.constant(rng.normal(0.0, 1.0, shape).astype("float32"))
    rows = []
    for mode in ("train", "inference"):
        steps = {}
        for who, make in (("xbn", make_ours), ("keras", make_keras)):
            layer = make()
            layer.build(shape)
            steps[who] = (
                _train_step(layer, x, upstream) if mode == "train" else _infer_step(layer, x)
            )
        timings = compare(steps, warmup=warmup, repeats=repeats)
        rows.append(
            {
                "suite": "layers",
                "case": f"{case} {mode} {'fwd+bwd' if mode == 'train' else 'fwd'} {shape}",
                "unit": "ms",
                "xbn": timings["xbn"].median_s * 1e3,
                "baseline": timings["keras"].median_s * 1e3,
                "baseline_name": f"keras.layers.{make_keras().__class__.__name__}",
                "speedup": timings["keras"].median_s / timings["xbn"].median_s,
                "goal": goal[mode],
                "peak_mb": {k: t.peak_mb for k, t in timings.items()},
            }
        )
    return rows


def run(quick=False, repeats=10, warmup=3):
    """Run the suite; returns a list of result rows (see ``xbn.bench``)."""
    shapes = QUICK_SHAPES if quick else FULL_SHAPES
    rows = []
    for shape, _ in shapes["bn"]:
        rows += _pair(
            "BatchNorm",
            {"train": 2.0, "inference": 1.0},
            BatchNorm,
            keras.layers.BatchNormalization,
            shape,
            repeats,
            warmup,
        )
    for shape, groups in shapes["gn"]:
        rows += _pair(
            f"GroupNorm(G={groups})",
            {"train": 1.2, "inference": 1.2},
            lambda g=groups: GroupNorm(groups=g),
            lambda g=groups: keras.layers.GroupNormalization(groups=g),
            shape,
            repeats,
            warmup,
        )
    return rows
