"""Benchmark suite ``pipeline``: can tf.data feed the training step?

A folder of JPEG files (the digits, upsampled to 160x160 RGB and encoded
on the fly) is read through ``xbn-train``'s own pipeline, ``folder:PATH``
with parallel decode, random-resized crop, flip, preprocessing, shuffle,
batching and prefetch, no cache, for whole epochs; its images/s are compared
with the images/s the training step of MobileNetV2 (the fastest zoo model,
so the hardest consumer to keep fed) takes at the same batch and size.  The
pipeline should deliver at least twice what the step consumes.
"""

import tempfile
from pathlib import Path

from xbn.bench.timing import measure

FULL = {"per_class": 64, "side": 160, "size": 128, "batch": 16}
QUICK = {"per_class": 4, "side": 48, "size": 32, "batch": 4, "alpha": 0.35}


def write_jpeg_folder(root, per_class, side):
    """``root/digit_K/*.jpg``: the first ``per_class`` digits of each class."""
    import numpy as np
    import tensorflow as tf
    from sklearn.datasets import load_digits

    digits = load_digits()
    for label in range(10):
        folder = Path(root) / f"digit_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, index in enumerate(np.flatnonzero(digits.target == label)[:per_class]):
            gray = (digits.images[index] * (255 / 16)).astype("float32")[..., None]
            image = tf.image.resize(tf.repeat(gray, 3, axis=-1), (side, side), "bilinear")
            jpeg = tf.io.encode_jpeg(tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8), quality=90)
            (folder / f"{i:04d}.jpg").write_bytes(jpeg.numpy())
    return root


def run(quick=False, repeats=10, warmup=3):
    """Run the suite; returns a list of result rows (see ``xbn.bench``)."""
    from xbn.bench.models import train_step
    from xbn.data import Augment, Pipeline, load_source
    from xbn.models import get_model, model_facts

    sizes = QUICK if quick else FULL
    batch, size = sizes["batch"], sizes["size"]
    with tempfile.TemporaryDirectory(prefix="xbn-bench-jpeg-") as folder:
        write_jpeg_folder(folder, sizes["per_class"], sizes["side"])
        source = load_source(f"folder:{folder}", val_split=0.1)
        pipeline = Pipeline(source, size, model_facts("mobilenetv2").preprocessing, batch, augment=Augment())
        epoch_images = pipeline.steps("train", training=True) * batch
        epochs = iter(range(10**9))
        feed = measure(
            lambda: [images for images, _ in pipeline.train(next(epochs))],
            warmup=min(warmup, 1), repeats=max(1, repeats // 3),
        )
    model = get_model("mobilenetv2", input_shape=(size, size, 3), classes=10, classifier_activation=None,
                      **({"alpha": sizes["alpha"]} if "alpha" in sizes else {}))
    step = measure(train_step(model, batch), warmup=warmup, repeats=repeats)
    fed, consumed = epoch_images / feed.median_s, batch / step.median_s
    return [{
        "suite": "pipeline",
        "case": f"tf.data folder of JPEGs, training augmentation, batch {batch}, {size}x{size}: "
                "pipeline vs mobilenetv2 training step",
        "unit": "images/s",
        "xbn": fed,
        "baseline": consumed,
        "baseline_name": "mobilenetv2 training step",
        "speedup": fed / consumed,
        "goal": 2.0,
        "peak_mb": {"pipeline": feed.peak_mb, "training step": step.peak_mb},
    }]
