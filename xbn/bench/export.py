"""Benchmark suite ``export``: serving latency, BN folded against kept.

Each model is exported twice with :func:`xbn.export.export_model` (BN
folded into the convolutions, and ``--no-fold``), both SavedModels are
loaded back with ``tf.saved_model.load``, and their ``serving_default``
signature (uint8-range images in, probabilities and top-k out, the model's
preprocessing inside) is timed interleaved at batch 1 and 32.  The folded
export must never be slower.
"""

import tempfile
from pathlib import Path

import numpy as np

from xbn.bench.timing import compare

FULL = {"models": ("mobilenetv2", "resnet50"), "size": 224, "batches": (1, 32)}
# Quick: the CIFAR ResNet-20 (a SavedModel of a fifth of MobileNetV2's
# layers: the suite's code runs, in a third of the time).
QUICK = {"models": ("resnet20",), "size": 32, "batches": (1, 2)}


def _exports(name, size, folder):
    """The folded and unfolded ``serving_default`` functions of a fresh model."""
    import tensorflow as tf

    from xbn.export import export_model
    from xbn.models import get_model, model_facts

    facts = model_facts(name)
    kwargs = facts.small_args if size < 96 else {}
    model = get_model(name, input_shape=(size, size, 3), **kwargs)
    classes = int(model.output_shape[-1])
    serving = {}
    for fold in (True, False):
        path, _ = export_model(
            model, Path(folder) / f"{name}-{'folded' if fold else 'unfolded'}",
            class_names=[f"class_{i}" for i in range(classes)], preprocessing=facts.preprocessing,
            model_name=name, fold=fold, log=lambda message: None,
        )
        serving["folded" if fold else "unfolded"] = tf.saved_model.load(str(path)).signatures["serving_default"]
    return serving


def run(quick=False, repeats=10, warmup=3):
    """Run the suite; returns a list of result rows (see ``xbn.bench``)."""
    import tensorflow as tf

    sizes = QUICK if quick else FULL
    size = sizes["size"]
    rows = []
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="xbn-bench-export-") as folder:
        for name in sizes["models"]:
            serving = _exports(name, size, folder)
            for batch in sizes["batches"]:
                images = tf.constant(rng.uniform(0, 255, (batch, size, size, 3)).astype("float32"))
                timings = compare(
                    {who: (lambda f=fn: f(images=images)) for who, fn in serving.items()},
                    warmup=warmup, repeats=repeats,
                )
                folded, unfolded = timings["folded"], timings["unfolded"]
                rows.append({
                    "suite": "export",
                    "case": f"{name} SavedModel serving_default, batch {batch}, {size}x{size}: folded vs unfolded",
                    "unit": "ms",
                    "xbn": folded.median_s * 1e3,
                    "baseline": unfolded.median_s * 1e3,
                    "baseline_name": "export --no-fold",
                    "speedup": unfolded.median_s / folded.median_s,
                    "goal": 1.0,
                    "peak_mb": {"folded": folded.peak_mb, "unfolded": unfolded.peak_mb},
                })
    return rows
