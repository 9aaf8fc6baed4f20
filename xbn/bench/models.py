"""Benchmark suite ``models``: training steps of whole networks.

One training step is forward, cross-entropy, backward and an SGD-momentum
update of every weight (BatchNorm's moving statistics included), for one
batch of random images, in the backend's natural form (a ``tf.function``, a
``jax.jit`` of the stateless step, PyTorch eager; see
:mod:`xbn.bench.backends`).  Per model the contenders run interleaved in one
comparison:

- ``keras.applications`` (ResNet50 / MobileNetV2) against xbn's vanilla
  twin, layer for layer the same network: what xbn's layers buy;
- xbn's XBN form against its vanilla form: the price of XBN;
- ``keras.applications``' model before and after
  :func:`xbn.surgery.to_xbn_layers` (xbn's layers swapped into keras' own
  network): what the surgery buys a keras user.

The models and their twins come from the registry (a vanilla model's
``keras_application`` fact and its ``_xbn`` form).

With ``--mixed-precision`` and ``--jit-compile`` the keras-against-xbn and
XBN-against-vanilla comparisons are repeated under that dtype policy / with
the compiler (the goal there is "never slower",
:data:`VARIANT_GOAL_OVER_KERAS`), and xbn's step under the setting is timed
against its plain float32 step: whether bfloat16 or the compiler pays on
this machine at all (on CPUs without native bfloat16, or without an
accelerator for XLA, it does not).
"""

import keras

from xbn._policy import dtype_policy
from xbn.bench import backends
from xbn.bench.timing import compare
from xbn.errors import UsageError

# The models compared with their keras.applications twin and their XBN form
# (registered names), and the sizes: a CPU's, a GPU's (the ImageNet batch
# of the issue-20 measurements), and quick ones that check that the suite
# runs (on the cheaper model only, at its registered small-input width).
CPU = {"batch": 16, "size": 128, "models": ("resnet50", "mobilenetv2")}
GPU = {"batch": 256, "size": 224, "models": ("resnet50", "mobilenetv2")}
QUICK = {"batch": 2, "size": 32, "models": ("mobilenetv2",), "small": True}
# Small inputs, where what a layer costs whatever its size (a kernel launch,
# a dispatch, GroupNorm's per-sample work) weighs most: the same models at
# batch 8 and 96x96, and the CIFAR ResNet-20 at its own 32x32 (no
# keras.applications twin: the price of XBN only).
SMALL = {"batch": 8, "size": 96, "models": ("resnet50", "mobilenetv2")}
CIFAR = {"batch": 64, "size": 32, "models": ("resnet20",)}

# xbn against keras.applications: "never slower" on every backend, and
# TensorFlow's CPU goal for ResNet-50, where xbn's own kernels run.
GOAL_OVER_KERAS = 1.0
TF_CPU_GOAL_OVER_KERAS = {"resnet50": 1.3}
# Under XLA or a mixed policy the goal is "never slower": XLA compiles both
# networks' maths itself, and the mixed-precision kernels are the device's.
VARIANT_GOAL_OVER_KERAS = 1.0
# What XBN may cost over its vanilla network: 10% on TensorFlow (its
# GroupNorm kernel against cuDNN/oneDNN BatchNorm), 5% where the portable
# maths or PyTorch's kernels run both.
XBN_MAX_COST = {"tensorflow": 0.10, "jax": 0.05, "torch": 0.05}
# An absolute goal on an H200: MLPerf Training v4.0's ResNet-50 ran about
# 7,950 images/s per H200 (MXNet, DALI, fused BN-ReLU-add kernels).
H200_IMAGES_PER_S = 8000.0


def train_step(model, batch, jit_compile=False, seed=0):
    """A zero-argument training step of ``model`` on a fixed batch (see
    :func:`xbn.bench.backends.train_step`)."""
    return backends.train_step(model, batch, jit_compile=jit_compile, seed=seed)


def _contenders(model):
    """``(keras.applications name, vanilla name, XBN name)`` of a registered vanilla model."""
    from xbn.models import model_facts
    from xbn.models.registry import twin

    facts = model_facts(model)
    if facts.keras_application is None or twin(model, "xbn") is None:
        raise UsageError(
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
        f", {_compiler()}" if jit else ""
    )


def _goal_over_keras(model):
    if backends.backend() == "tensorflow" and not backends.on_gpu():
        return TF_CPU_GOAL_OVER_KERAS.get(model)
    return GOAL_OVER_KERAS


def _price_goal():
    return round(1 / (1 + XBN_MAX_COST[backends.backend()]), 3)


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
             _goal_over_keras(model), timings, "vanilla", "keras"),
        _row(f"{title} training step ({tag}): {keras_name} after xbn.surgery.to_xbn_layers vs before",
             keras_name, batch, _goal_over_keras(model), timings, "surgery", "keras"),
        _row(f"{title} training step ({tag}): {xbn} vs {vanilla} (price of XBN)",
             f"xbn {vanilla}", batch, _price_goal(), timings, "xbn", "vanilla"),
    ]


def _price(model, batch, size, repeats, warmup):
    """float32: the price of XBN alone, for a model without a keras.applications twin."""
    from xbn.models import get_model
    from xbn.models.registry import twin

    xbn = twin(model, "xbn")
    kwargs = dict(input_shape=(size, size, 3), classes=10, classifier_activation=None)
    steps = {kind: train_step(get_model(name, **kwargs), batch) for kind, name in (("vanilla", model), ("xbn", xbn))}
    timings = compare(steps, warmup=warmup, repeats=repeats)
    return [_row(f"{_title(model)} training step ({_tag(batch, size, 'float32', False)}): {xbn} vs {model} "
                 "(price of XBN)", f"xbn {model}", batch, _price_goal(), timings, "xbn", "vanilla")]


def _variant(model, batch, size, repeats, warmup, precision, jit, small=False):
    """A dtype policy or a compiler: against keras under the same setting
    ("never slower"), xbn's XBN form against its vanilla form, and xbn's
    vanilla step against its own plain float32 step without the compiler
    (informational: whether the setting pays on this machine at all)."""
    keras_name, vanilla, xbn = _contenders(model)
    title = _title(model)
    steps = {"plain": train_step(_build(model, "vanilla", size, small), batch)}  # built under float32
    with dtype_policy(precision):
        for kind in ("keras", "vanilla", "xbn"):
            steps[kind] = train_step(_build(model, kind, size, small), batch, jit)
        timings = compare(steps, warmup=warmup, repeats=repeats)
    tag = _tag(batch, size, precision, jit)
    setting = " and ".join(([precision] if precision != "float32" else []) + ([_compiler()] if jit else []))
    rows = [
        _row(f"{title} training step ({tag}): {vanilla} vs keras", keras_name, batch,
             VARIANT_GOAL_OVER_KERAS, timings, "vanilla", "keras"),
        _row(f"{title} training step ({tag}): {xbn} vs {vanilla} (price of XBN)",
             f"xbn {vanilla}", batch, _price_goal(), timings, "xbn", "vanilla"),
        _row(f"{title} training step ({_tag(batch, size, 'float32', False)}): {vanilla} with {setting} "
             f"vs without", f"xbn {vanilla}, float32" + (f", no {_compiler()}" if jit else ""), batch, None,
             timings, "vanilla", "plain"),
    ]
    if model == "resnet50" and precision == "mixed_bfloat16" and "H200" in backends.device():
        images_per_s = batch / timings["vanilla"].median_s
        rows.append({
            "suite": "models", "case": f"{title} training step ({tag}): {vanilla} vs 8,000 images/s",
            "unit": "images/s", "xbn": images_per_s, "baseline": H200_IMAGES_PER_S,
            "baseline_name": "8,000 images/s (MLPerf Training v4.0: about 7,950 per H200)",
            "speedup": images_per_s / H200_IMAGES_PER_S, "goal": 1.0, "peak_mb": {},
        })
    return rows


def _compiler():
    return {"tensorflow": "XLA", "jax": "XLA", "torch": "torch.compile"}[backends.backend()]


def run(quick=False, repeats=10, warmup=3, precisions=(), jit_compile=False, models=None):
    """Run the suite; returns a list of result rows (see ``xbn.bench``).

    Args:
        precisions: dtype policies (``mixed_float16``, ``mixed_bfloat16``)
            to repeat the comparisons under.
        jit_compile: also repeat them with XLA (TensorFlow) or
            ``torch.compile`` (PyTorch); JAX always compiles.
        models: the registered vanilla models to compare (default ResNet-50
            and MobileNetV2; MobileNetV2 with ``quick``).

    The variants run on the first model.
    """
    sizes = QUICK if quick else GPU if backends.on_gpu() else CPU
    batch, size = sizes["batch"], sizes["size"]
    chosen = models
    models = models or sizes["models"]
    small = sizes.get("small", False)
    rows = []
    for model in models:
        rows += _model(model, batch, size, repeats, warmup, small)
    if not quick:
        for model in chosen or SMALL["models"]:
            rows += _model(model, SMALL["batch"], SMALL["size"], repeats, warmup)
    if chosen is None:  # quick: at the quick batch (the row's shape is what is checked)
        for model in CIFAR["models"]:
            rows += _price(model, batch if quick else CIFAR["batch"], CIFAR["size"], repeats, warmup)
    jit = jit_compile and backends.backend() != "jax"
    variants = [(p, False) for p in precisions] + ([("float32", True)] if jit else [])
    for precision, compiled in variants:
        rows += _variant(models[0], batch, size, repeats, warmup, precision, compiled, small)
    return rows
