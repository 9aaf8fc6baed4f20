"""``tfrecord:GLOB``: TFRecord files in the ImageNet layout of the TF Model Garden.

Records hold ``image/encoded``, ``image/class/label`` and optionally
``image/class/text``.  Options: ``label_offset`` is added to the labels
(``-1`` for the Model Garden's 1-based ImageNet records), ``num_classes``
sets the class count where the records do not name every class.
"""

import glob
import os

import numpy as np

from xbn import _checks
from xbn.data import images
from xbn.data.sources import DataSource, Split, hold_out, refuse_bad, register_source
from xbn.errors import UsageError

_FEATURES = {
    "image/encoded": ("string", ""),
    "image/class/label": ("int64", -1),
    "image/class/text": ("string", ""),
}


def _parse_record(record, keys=("image/encoded", "image/class/label", "image/class/text")):
    import tensorflow as tf

    description = {
        k: tf.io.FixedLenFeature([], getattr(tf, _FEATURES[k][0]), default_value=_FEATURES[k][1])
        for k in keys
    }
    return tf.io.parse_single_example(record, description)


def _scan_labels(spec, files, label_offset, progress):
    import tensorflow as tf

    if progress:
        progress(f"scanning labels of {len(files)} TFRecord file(s) ...")
    labels, texts = [], {}
    scan = tf.data.TFRecordDataset(files).map(
        lambda r: _parse_record(r, ("image/class/label", "image/class/text")),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    try:
        for item in scan.as_numpy_iterator():
            label = int(item["image/class/label"]) + label_offset
            labels.append(label)
            if item["image/class/text"]:
                texts[label] = item["image/class/text"].decode()
    except tf.errors.DataLossError as error:
        raise UsageError(f"`data` {spec}: corrupt TFRecord data: {error.message}") from None
    except tf.errors.InvalidArgumentError as error:
        raise UsageError(
            f"`data` {spec}: the records are not in the ImageNet layout "
            f"(image/encoded, image/class/label): {error.message.splitlines()[0]}"
        ) from None
    return np.asarray(labels, np.int64), texts


def _class_names(spec, labels, texts, num_classes, label_offset):
    if not len(labels):
        raise UsageError(f"`data` {spec}: the TFRecord files hold no records.")
    if labels.min() < 0:
        raise UsageError(
            f"`data` {spec}: labels must be >= 0 after `data_args` label_offset={label_offset}; "
            f"found {labels.min()}."
        )
    count = num_classes or int(labels.max()) + 1
    if labels.max() >= count:
        raise UsageError(
            f"`data` {spec}: label {labels.max()} >= `data_args` num_classes={count}."
        )
    if not num_classes and labels.min() == 1 and 0 not in texts:
        raise UsageError(
            f"`data` {spec}: the labels run from 1 to {labels.max()} and no record has label 0, "
            "so class 0 would have no example: the records are 1-based (as the TF Model "
            "Garden's ImageNet records are). Pass `data_args` label_offset=-1, or `data_args` "
            f"num_classes={labels.max() + 1} if class 0 really has no example."
        )
    return [texts.get(i, str(i)) for i in range(count)]


@register_source(
    "tfrecord", argument="GLOB", example="/data/imagenet/train-*",
    options={
        "num_classes": (None, "class count where the records do not name every class"),
        "label_offset": (0, "added to every label (-1 for 1-based ImageNet records)"),
    },
    description="TFRecords in the TF Model Garden's ImageNet layout",
)
def open_tfrecord(spec, pattern, val_split, skip_bad_images, progress, num_classes, label_offset):
    import tensorflow as tf

    label_offset = _checks.check_int(f"`data` {spec}", "label_offset", label_offset)
    if num_classes is not None:
        num_classes = _checks.check_int(f"`data` {spec}", "num_classes", num_classes, minimum=1)
    files = sorted(glob.glob(os.path.expanduser(pattern)))
    if not files:
        raise FileNotFoundError(f"`data` {spec}: no file matches {pattern!r}.")
    labels, texts = _scan_labels(spec, files, label_offset, progress)
    names = _class_names(spec, labels, texts, num_classes, label_offset)

    shapes, bad = images.check_records(
        files, lambda r: _parse_record(r, ("image/encoded",))["image/encoded"], progress
    )
    if bad and not skip_bad_images:
        refuse_bad(spec, [(where, why) for _, where, why in bad], what="record")
    bad_index = {index for index, _, _ in bad}
    skipped = [(where, why) for _, where, why in bad]
    decoded = sum(h * w * 3 for h, w in shapes.values())
    keep = np.asarray([i not in bad_index for i in range(len(labels))])
    train_idx, val_idx = hold_out(labels, val_split, keep)

    def split(name, index):
        mask = np.zeros(len(labels), bool)
        mask[index] = True

        def make():
            selected = tf.constant(mask)
            records = tf.data.TFRecordDataset(files).enumerate()
            records = records.filter(lambda i, r: tf.gather(selected, i))

            def parse(i, record):
                item = _parse_record(record, ("image/encoded", "image/class/label"))
                label = tf.cast(item["image/class/label"] + label_offset, tf.int32)
                return images.decode(item["image/encoded"]), label

            return records.map(parse, num_parallel_calls=tf.data.AUTOTUNE)

        return Split(name, int(mask.sum()), make)

    splits = {"train": split("train", train_idx)}
    if len(val_idx):
        splits["val"] = split("val", val_idx)
    return DataSource(spec, "tfrecord", names, splits, skipped, decoded)
