"""Benchmark suite ``layers``: xbn's norm layers against keras' own.

Forward+backward (the gradient with respect to the input, gamma and beta,
with the moving-statistics update for BatchNorm) in training mode, and the
forward pass in inference mode, on ResNet-50-sized activations, each in the
backend's natural step (:mod:`xbn.bench.backends`).  On a GPU the batch is
the ImageNet training batch (256 at 56x56); with ``--mixed-precision`` the
rows are repeated under that mixed policy (input and output in the reduced
dtype, weights and statistics float32).
"""

import keras
import numpy as np

from xbn.bench import backends
from xbn.bench.timing import compare
from xbn.layers import BatchNorm, GroupNorm

# (shape, groups): conv2_x of ResNet-50 at 224x224.  The XBN GroupNorm sits
# on the 64-channel 3x3 output; GN+WS on the 256-channel block output too.
CPU_SHAPES = {
    "bn": [((32, 56, 56, 256), None)],
    "gn": [((32, 56, 56, 64), 32), ((32, 56, 56, 256), 32)],
}
GPU_SHAPES = {
    "bn": [((256, 56, 56, 256), None)],
    "gn": [((256, 56, 56, 64), 32), ((256, 56, 56, 256), 32)],
}
QUICK_SHAPES = {"bn": [((4, 16, 16, 32), None)], "gn": [((4, 16, 16, 32), 8)]}
# (train, inference) goals: training never slower than keras' layer on
# every backend (inference informational there), and TensorFlow's CPU goals
# where its own kernels run.
GOALS = {"bn": {"train": 1.0, "inference": None}, "gn": {"train": 1.0, "inference": None}}
TF_CPU_GOALS = {"bn": {"train": 2.0, "inference": 1.0}, "gn": {"train": 1.2, "inference": 1.2}}


def _goals(kind):
    if backends.backend() == "tensorflow" and not backends.on_gpu():
        return TF_CPU_GOALS[kind]
    return GOALS[kind]


def _pair(case, kind, make_ours, make_keras, shape, dtype, repeats, warmup):
    rng = np.random.default_rng(0)
    x = backends.tensor(rng.normal(0.5, 2.0, shape).astype("float32"))
    upstream = backends.tensor(rng.normal(0.0, 1.0, shape).astype("float32"))
    if dtype != "float32":
        x, upstream = keras.ops.cast(x, dtype), keras.ops.cast(upstream, dtype)
    rows = []
    for mode in ("train", "inference"):
        steps = {}
        for who, make in (("xbn", make_ours), ("keras", make_keras)):
            layer = make()
            layer.build(shape)
            steps[who] = backends.layer_step(layer, x, upstream if mode == "train" else None,
                                             training=mode == "train")
        timings = compare(steps, warmup=warmup, repeats=repeats)
        tag = "" if dtype == "float32" else f" {dtype}"
        rows.append(
            {
                "suite": "layers",
                "case": f"{case} {mode} {'fwd+bwd' if mode == 'train' else 'fwd'} {shape}{tag}",
                "unit": "ms",
                "xbn": timings["xbn"].median_s * 1e3,
                "baseline": timings["keras"].median_s * 1e3,
                "baseline_name": f"keras.layers.{type(make_keras()).__name__}",
                "speedup": timings["keras"].median_s / timings["xbn"].median_s,
                # The goals are float32's; the reduced-precision rows inform.
                "goal": _goals(kind)[mode] if dtype == "float32" or backends.on_gpu() else None,
                "peak_mb": {k: t.peak_mb for k, t in timings.items()},
            }
        )
    return rows


def run(quick=False, repeats=10, warmup=3, precisions=()):
    """Run the suite; returns a list of result rows (see ``xbn.bench``).

    Args:
        precisions: reduced input dtypes (``"bfloat16"``, ``"float16"``) to
            repeat the rows in, besides float32.
    """
    shapes = QUICK_SHAPES if quick else GPU_SHAPES if backends.on_gpu() else CPU_SHAPES
    rows = []
    for dtype in ("float32", *precisions):
        policy = dtype if dtype == "float32" else f"mixed_{dtype}"
        for shape, _ in shapes["bn"]:
            rows += _pair("BatchNorm", "bn", lambda p=policy: BatchNorm(dtype=p),
                          lambda p=policy: keras.layers.BatchNormalization(dtype=p), shape, dtype, repeats, warmup)
        for shape, groups in shapes["gn"]:
            rows += _pair(f"GroupNorm(G={groups})", "gn", lambda p=policy, g=groups: GroupNorm(groups=g, dtype=p),
                          lambda p=policy, g=groups: keras.layers.GroupNormalization(groups=g, dtype=p),
                          shape, dtype, repeats, warmup)
    return rows
