"""``tfds:NAME``: a TensorFlow Datasets dataset already prepared on disk.

Needs the ``tfds`` extra; xbn never downloads.  Option: ``data_dir``
(default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).  The dataset's
own ``validation`` split is used where it has one, else ``--val-split`` of
its train split; its ``test`` split where it has one.
"""

import os

from xbn.data.sources import DataSource, Split, register_source
from xbn.errors import UsageError


@register_source(
    "tfds", argument="NAME", example="cifar10",
    options={"data_dir": (None, "where TFDS datasets are prepared (default $TFDS_DATA_DIR)")},
    description="a TensorFlow Datasets dataset already prepared (never downloaded)",
)
def open_tfds(spec, name, val_split, skip_bad_images, progress, data_dir):
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise UsageError(
            f"`data` {spec}: TensorFlow Datasets is not installed; install the extra with "
            "pip install 'xbn[tfds]'."
        ) from None
    data_dir = os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # tfds raises its own DatasetNotFoundError
        raise UsageError(f"`data` {spec}: unknown TFDS dataset {name!r}: {error}") from None
    if not builder.info.splits or not os.path.isdir(builder.data_dir):
        raise FileNotFoundError(
            f"`data` {spec}: {name!r} is not prepared under {data_dir}, and xbn never "
            f"downloads. Prepare it on a machine with network access (tfds build {name} "
            f"--data_dir {data_dir}) and copy the folder here, or pass `data_args` data_dir=PATH."
        )
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise UsageError(f"`data` {spec}: the dataset needs 'image' and 'label' features.")
    names = list(features["label"].names)
    available = list(builder.info.splits.keys())

    def split(role, tfds_split):
        def make():
            import tensorflow as tf

            ds = builder.as_dataset(split=tfds_split, shuffle_files=False)

            def convert(item):
                image = item["image"]
                if image.shape[-1] == 1:
                    image = tf.image.grayscale_to_rgb(image)
                # Float images stay float (0..255), so that the pipeline can
                # find NaN and inf in them; a cast to uint8 would hide both.
                image = tf.cast(image, tf.float32 if image.dtype.is_floating else tf.uint8)
                return image, tf.cast(item["label"], tf.int32)

            return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)

        size = builder.info.splits[tfds_split].num_examples
        return Split(role, int(size), make)

    if "train" not in available:
        raise UsageError(f"`data` {spec}: the dataset has no 'train' split ({available}).")
    splits = {}
    held_out = next((s for s in ("validation", "val") if s in available), None)
    if held_out:
        splits["train"] = split("train", "train")
        splits["val"] = split("val", held_out)
    elif val_split > 0:
        cut = int(round(100 * (1 - val_split)))
        splits["train"] = split("train", f"train[:{cut}%]")
        splits["val"] = split("val", f"train[{cut}%:]")
    else:
        splits["train"] = split("train", "train")
    if "test" in available:
        splits["test"] = split("test", "test")
    shape = features["image"].shape
    decoded = None
    if shape is not None and all(d is not None for d in shape[:2]):
        total = sum(builder.info.splits[s].num_examples for s in available)
        decoded = int(total * shape[0] * shape[1] * 3)
    return DataSource(spec, "tfds", names, splits, decoded_bytes=decoded)
