"""``synthetic``: random images generated on the fly, for benchmarks.

Options: ``image_size`` (side, default 64), ``num_classes`` (default 10)
and ``sizes`` (train, val and test examples, default ``(512, 128, 128)``).
Labels cycle through the classes; nothing can be learnt from them.
"""

from xbn import _checks
from xbn.data.sources import SPLIT_SEED, DataSource, Split, register_source
from xbn.errors import UsageError


@register_source(
    "synthetic",
    options={
        "image_size": (64, "side of the images"),
        "num_classes": (10, "class count"),
        "sizes": ((512, 128, 128), "train, val and test examples"),
    },
    description="random images generated on the fly (benchmarks)",
)
def open_synthetic(spec, arg, val_split, skip_bad_images, progress, image_size, num_classes, sizes):
    import tensorflow as tf

    image_size = _checks.check_int(f"`data` {spec}", "image_size", image_size, minimum=1)
    num_classes = _checks.check_int(f"`data` {spec}", "num_classes", num_classes, minimum=1)
    if not (isinstance(sizes, (tuple, list)) and len(sizes) == 3):
        raise UsageError(f"`data_args` sizes must be three counts (train, val, test); got {sizes!r}.")
    train, val, test = (
        _checks.check_int(f"`data` {spec}", "sizes", size, minimum=1) for size in sizes
    )

    def split(name, size, offset):
        def make():
            def generate(i):
                seed = tf.stack([tf.constant(SPLIT_SEED, tf.int64), i + offset])
                image = tf.random.stateless_uniform(
                    [image_size, image_size, 3], seed=seed, maxval=256, dtype=tf.int32
                )
                return tf.cast(image, tf.uint8), tf.cast(i % num_classes, tf.int32)

            return tf.data.Dataset.range(size).map(generate, num_parallel_calls=tf.data.AUTOTUNE)

        return Split(name, size, make)

    splits = {
        "train": split("train", train, 0),
        "val": split("val", val, train),
        "test": split("test", test, train + val),
    }
    return DataSource(spec, "synthetic", [f"class_{i}" for i in range(num_classes)], splits)
