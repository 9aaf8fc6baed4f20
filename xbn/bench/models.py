"""Benchmark suite ``models``: training steps of whole networks.

One training step is forward, cross-entropy, backward and an SGD-momentum
update of every weight (BatchNorm's moving statistics included), for one
batch of random images, traced once with ``tf.function``.  Per family the
three contenders run interleaved in one comparison:

- ``keras.applications`` (ResNet50 / MobileNetV2) against xbn's vanilla
  twin, layer for layer the same network: what xbn's layers buy;
- xbn's XBN form against its vanilla form: the price of XBN.

With ``--mixed-precision`` and ``--jit-compile`` the keras-against-xbn
comparison is repeated under that dtype policy / with XLA; the goal there is
"never slower" (:data:`VARIANT_GOAL_OVER_KERAS`).
"""

import keras
import numpy as np
import tensorflow as tf

from xbn._policy import dtype_policy
from xbn.bench.timing import compare

# The quick sizes check that the suite runs (on the cheaper family only).
FULL = {"batch": 16, "size": 128, "families": ("ResNet-50", "MobileNetV2")}
QUICK = {"batch": 2, "size": 32, "families": ("MobileNetV2",)}

FAMILIES = {
    "ResNet-50": (
        lambda **kw: keras.applications.ResNet50(weights=None, **kw),
        "keras.applications.ResNet50", "resnet50", "resnet50_xbn",
    ),
    "MobileNetV2": (
        lambda **kw: keras.applications.MobileNetV2(weights=None, **kw),
        "keras.applications.MobileNetV2", "mobilenetv2", "mobilenetv2_xbn",
    ),
}
GOAL_OVER_KERAS = {"ResNet-50": 1.3, "MobileNetV2": None}
# Under XLA or a mixed policy the goal is "never slower": XLA compiles both
# networks' maths itself (xbn's fused BN and conv gradients step aside there),
# and the mixed-precision kernels are the device's, not xbn's.
VARIANT_GOAL_OVER_KERAS = 1.0
XBN_MAX_COST = 0.10  # XBN may cost at most 10% of the vanilla step time


def train_step(model, batch, jit_compile=False, seed=0):
    """A zero-argument traced training step of ``model`` on a fixed batch."""
    rng = np.random.default_rng(seed)
    size = model.input_shape[1]
    classes = model.output_shape[-1]
    images = tf.constant(rng.uniform(-1, 1, (batch, size, size, 3)).astype("float32"))
    labels = tf.constant(rng.integers(0, classes, batch).astype("int32"))
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    if keras.config.dtype_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)

    @tf.function(jit_compile=jit_compile)
    def step():
        with tf.GradientTape() as tape:
            logits = tf.cast(model(images, training=True), tf.float32)
            loss = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
            )
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    return step


def _build(family, which, size):
    from xbn.models import get_model

    keras_builder, _, vanilla, xbn = FAMILIES[family]
    kwargs = dict(input_shape=(size, size, 3), classes=1000, classifier_activation=None)
    if which == "keras":
        return keras_builder(**kwargs)
    return get_model(vanilla if which == "vanilla" else xbn, **kwargs)


def _row(case, baseline_name, batch, goal, timings, who, against):
    return {
        "suite": "models",
        "case": case,
        "unit": "images/s",
        "xbn": batch / timings[who].median_s,
        "baseline": batch / timings[against].median_s,
        "baseline_name": baseline_name,
        "speedup": timings[against].median_s / timings[who].median_s,
        "goal": goal,
        "peak_mb": {who: timings[who].peak_mb, against: timings[against].peak_mb},
    }


def _family(family, batch, size, repeats, warmup, precision, jit, with_xbn):
    keras_name, vanilla, xbn = FAMILIES[family][1:]
    kinds = ("keras", "vanilla", "xbn") if with_xbn else ("keras", "vanilla")
    with dtype_policy(precision):
        steps = {kind: train_step(_build(family, kind, size), batch, jit) for kind in kinds}
        timings = compare(steps, warmup=warmup, repeats=repeats)
    tag = f"bs {batch}, {size}x{size}" + ("" if precision == "float32" else f", {precision}") + (
        ", XLA" if jit else ""
    )
    goal = GOAL_OVER_KERAS[family]
    if goal is not None and (precision != "float32" or jit):
        goal = VARIANT_GOAL_OVER_KERAS
    rows = [_row(
        f"{family} training step ({tag}): {vanilla} vs keras", keras_name, batch,
        goal, timings, "vanilla", "keras",
    )]
    if with_xbn:
        rows.append(_row(
            f"{family} training step ({tag}): {xbn} vs {vanilla} (price of XBN)",
            f"xbn {vanilla}", batch, round(1 / (1 + XBN_MAX_COST), 3), timings, "xbn", "vanilla",
        ))
    return rows


def run(quick=False, repeats=10, warmup=3, precisions=(), jit_compile=False):
    """Run the suite; returns a list of result rows (see ``xbn.bench``).

    Args:
        precisions: extra dtype policies (``mixed_float16``,
            ``mixed_bfloat16``) to repeat the keras comparison under.
        jit_compile: also repeat it with XLA.

    The variants run on ResNet-50 (MobileNetV2 with ``quick``).
    """
    sizes = QUICK if quick else FULL
    batch, size, families = sizes["batch"], sizes["size"], sizes["families"]
    rows = []
    for family in families:
        rows += _family(family, batch, size, repeats, warmup, "float32", False, True)
    variants = [(p, False) for p in precisions] + ([("float32", True)] if jit_compile else [])
    for precision, jit in variants:
        rows += _family(families[0], batch, size, repeats, warmup, precision, jit, False)
    return rows
