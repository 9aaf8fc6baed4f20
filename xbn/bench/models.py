"""Benchmark suite ``models``: training steps of whole networks.

One training step is forward, cross-entropy, backward and an SGD-momentum
update of every weight (BatchNorm's moving statistics included), for one
batch of random images, traced once with ``tf.function``.  Per model the
three contenders run interleaved in one comparison:

- ``keras.applications`` (ResNet50 / MobileNetV2) against xbn's vanilla
  twin, layer for layer the same network: what xbn's layers buy;
- xbn's XBN form against its vanilla form: the price of XBN;
- ``keras.applications``' model before and after
  :func:`xbn.surgery.to_xbn_layers` (xbn's layers swapped into keras' own
  network): what the surgery buys a keras user.

The models and their twins come from the registry (a vanilla model's
``keras_application`` fact and its ``_xbn`` form).

With ``--mixed-precision`` and ``--jit-compile`` the keras-against-xbn
comparison is repeated under that dtype policy / with XLA (the goal there is
"never slower", :data:`VARIANT_GOAL_OVER_KERAS`), and xbn's step under the
setting is timed against its plain float32 step: whether bfloat16 or XLA
pays on this machine at all (on CPUs without native bfloat16, or without an
accelerator for XLA, it does not).
"""

import keras
import numpy as np
import tensorflow as tf

from xbn._policy import dtype_policy
from xbn.bench.timing import compare

# The models compared with their keras.applications twin and their XBN form
# (registered names), and the sizes.  The quick sizes check that the suite
# runs (on the cheaper model only, at its registered small-input width).
FULL = {"batch": 16, "size": 128, "models": ("resnet50", "mobilenetv2")}
QUICK = {"batch": 2, "size": 32, "models": ("mobilenetv2",), "small": True}

GOAL_OVER_KERAS = {"resnet50": 1.3}
# Under XLA or a mixed policy the goal is "never slower": XLA compiles both
# networks' maths itself (xbn's fused BN and conv gradients step aside there),
# and the mixed-precision kernels are the device's, not xbn's.
VARIANT_GOAL_OVER_KERAS = 1.0
XBN_MAX_COST = 0.10  # XBN may cost at most 10% of the vanilla step time


def train_step(model, batch, jit_compile=False, seed=0):
    """A zero-argument traced training step of ``model`` on a fixed batch.

    The step is xbn-train's (:func:`xbn.training.steps.replica_train_step`)
    with SGD momentum 0.9 and no label smoothing, on random images and labels.
    """
    from xbn.training.steps import replica_train_step

    rng = np.random.default_rng(seed)
    size = model.input_shape[1]
    classes = model.output_shape[-1]
    images = tf.constant(rng.uniform(-1, 1, (batch, size, size, 3)).astype("float32"))
    labels = tf.constant(rng.integers(0, classes, batch).astype("int32"))
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    if keras.config.dtype_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    update = replica_train_step(model, optimizer, classes)

    @tf.function(jit_compile=jit_compile)
    def step():
        return update(images, labels)[0]

    return step


def _contenders(model):
    """``(keras.applications name, vanilla name, XBN name)`` of a registered vanilla model."""
    from xbn.models import model_facts
    from xbn.models.registry import twin

    facts = model_facts(model)
    if facts.keras_application is None or twin(model, "xbn") is None:
        raise ValueError(
            f"xbn-bench: {model} has no keras.applications twin or no XBN form to compare with."
        )
    return f"keras.applications.{facts.keras_application}", model, twin(model, "xbn")


def _build(model, which, size, small=False):
    """The contender ``which`` (``keras``, ``vanilla``, ``xbn``) of ``model``."""
    from xbn.models import get_model, model_facts

    keras_name, vanilla, xbn = _contenders(model)
    kwargs = dict(input_shape=(size, size, 3), classes=1000, classifier_activation=None)
    if small:  # quick runs: the small-input width is enough to check the suite runs
        kwargs.update(model_facts(model).small_args)
    if which == "keras":
        builder = getattr(keras.applications, keras_name.rsplit(".", 1)[1])
        return builder(weights=None, **kwargs)
    return get_model(vanilla if which == "vanilla" else xbn, **kwargs)


def _title(model):
    """``"ResNet-50"``: the registered description up to its parenthesis."""
    from xbn.models import model_facts

    return model_facts(model).description.split(" (")[0]


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


def _tag(batch, size, precision, jit):
    return f"bs {batch}, {size}x{size}" + ("" if precision == "float32" else f", {precision}") + (
        ", XLA" if jit else ""
    )


def _model(model, batch, size, repeats, warmup, small=False):
    """float32: keras.applications against xbn's vanilla twin, and the price of XBN."""
    keras_name, vanilla, xbn = _contenders(model)
    title = _title(model)
    from xbn.surgery import to_xbn_layers

    steps = {
        kind: train_step(_build(model, kind, size, small), batch)
        for kind in ("keras", "vanilla", "xbn")
    }
    steps["surgery"] = train_step(to_xbn_layers(_build(model, "keras", size, small))[0], batch)
    timings = compare(steps, warmup=warmup, repeats=repeats)
    tag = _tag(batch, size, "float32", False)
    return [
        _row(f"{title} training step ({tag}): {vanilla} vs keras", keras_name, batch,
             GOAL_OVER_KERAS.get(model), timings, "vanilla", "keras"),
        _row(f"{title} training step ({tag}): {keras_name} after xbn.surgery.to_xbn_layers vs before",
             keras_name, batch, GOAL_OVER_KERAS.get(model), timings, "surgery", "keras"),
        _row(f"{title} training step ({tag}): {xbn} vs {vanilla} (price of XBN)",
             f"xbn {vanilla}", batch, round(1 / (1 + XBN_MAX_COST), 3), timings, "xbn", "vanilla"),
    ]


def _variant(model, batch, size, repeats, warmup, precision, jit, small=False):
    """A dtype policy or XLA: against keras under the same setting ("never
    slower"), and against xbn's own float32 step without XLA (informational:
    whether the setting pays on this machine at all)."""
    keras_name, vanilla, _ = _contenders(model)
    title = _title(model)
    steps = {"plain": train_step(_build(model, "vanilla", size, small), batch)}  # built under float32
    with dtype_policy(precision):
        for kind in ("keras", "vanilla"):
            steps[kind] = train_step(_build(model, kind, size, small), batch, jit)
        timings = compare(steps, warmup=warmup, repeats=repeats)
    tag = _tag(batch, size, precision, jit)
    setting = " and ".join(([precision] if precision != "float32" else []) + (["XLA"] if jit else []))
    return [
        _row(f"{title} training step ({tag}): {vanilla} vs keras", keras_name, batch,
             VARIANT_GOAL_OVER_KERAS, timings, "vanilla", "keras"),
        _row(f"{title} training step ({_tag(batch, size, 'float32', False)}): {vanilla} with {setting} "
             f"vs without", f"xbn {vanilla}, float32, no XLA", batch, None, timings, "vanilla", "plain"),
    ]


def run(quick=False, repeats=10, warmup=3, precisions=(), jit_compile=False):
    """Run the suite; returns a list of result rows (see ``xbn.bench``).

    Args:
        precisions: extra dtype policies (``mixed_float16``,
            ``mixed_bfloat16``) to repeat the keras comparison under.
        jit_compile: also repeat it with XLA.

    The variants run on ResNet-50 (MobileNetV2 with ``quick``).
    """
    sizes = QUICK if quick else FULL
    batch, size, models = sizes["batch"], sizes["size"], sizes["models"]
    small = sizes.get("small", False)
    rows = []
    for model in models:
        rows += _model(model, batch, size, repeats, warmup, small)
    variants = [(p, False) for p in precisions] + ([("float32", True)] if jit_compile else [])
    for precision, jit in variants:
        rows += _variant(models[0], batch, size, repeats, warmup, precision, jit, small)
    return rows
