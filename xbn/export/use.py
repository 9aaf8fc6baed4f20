"""Using an export: top-1/top-5 on a data source, top-k labels of image files.

Only ``tf.saved_model.load`` and the export's signatures are used: no model
code, no custom layers.  Data comes from the same ``--data`` sources as
training, center-cropped the way the export's ``serve_bytes`` does it.
"""


import numpy as np

from xbn.errors import UsageError
from xbn.export.savedmodel import load_info


def load_export(directory):
    """``(loaded SavedModel, xbn.json info)``."""
    import tensorflow as tf

    info = load_info(directory)
    if info.get("format", "saved_model") != "saved_model":
        raise UsageError(
            f"{directory} holds a {info['format']} export; xbn-evaluate and xbn-predict "
            "serve SavedModel exports."
        )
    return tf.saved_model.load(str(directory)), info


def evaluate_export(directory, data=None, split=None, batch_size=64, val_split=None, skip_bad_images=False,
                    progress=None, corruption=None, data_args=None):
    """Top-1 and top-5 accuracy of an export on a ``--data`` source.

    By default the export is scored on the data it was trained on and the
    split it never trained on: ``xbn.json`` records the run's data, and the
    source is read with the run's hold-out, so that ``test`` (where the data
    has one) or else ``val`` is exactly the run's.  Other data is scored
    whole (the split ``"all"``) unless a split is named.

    Args:
        directory: the export folder.
        data: a ``--data`` spec (default: the run's, from ``xbn.json``).
        split: ``train``, ``val`` or ``test`` (default: see above).
        batch_size: images per call of the signature.
        val_split: the hold-out fraction (default: the run's for its own
            data, else 0: all of it).
        skip_bad_images: as for training.
        corruption: ``(name, severity[, suite])`` of :mod:`xbn.data.corruptions`, applied
            to every image at the export's input size (seeded by its index).
        data_args: the data source's options (``--data-arg``); options other
            than the run's make its data other data, scored whole.

    Returns:
        ``{"examples", "top1", "topk", "k", "split", "data"}``.
    """
    import tensorflow as tf

    from xbn.data.corruptions import check_corruption, corrupt_in_graph
    from xbn.data.images import named_bad_input
    from xbn.data.pipeline import eval_image
    from xbn.data.sources import open_recorded

    if corruption is not None:
        check_corruption(*corruption)

    loaded, info = load_export(directory)
    source, _ = open_recorded(
        info.get("data"), data, val_split, skip_bad_images, progress, where=str(directory), data_args=data_args
    )
    data = source.spec
    if source.class_names != info["class_names"]:
        raise UsageError(
            f"`data` {data}: its classes {source.class_names[:8]} are not the export's "
            f"{info['class_names'][:8]} (same names in the same order are needed)."
        )
    if split is None:
        split = next((s for s in ("test", "val") if s in source.splits), "train")
    named = "all" if split == "train" and len(source.splits) == 1 else split
    size, crop = info["image_size"], info["eval_crop"]

    def prepare(index, example):
        image = eval_image(example[0], size, crop)
        if corruption is not None:
            image = corrupt_in_graph(index, image, *corruption)
        return image, example[1]

    dataset = (
        source.split(split).indexed()
        .map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    serve = loaded.signatures["serving_default"]
    k = info["top_k"]
    count = top1 = topk = 0
    with named_bad_input():
        for images, labels in dataset:
            indices = serve(images=images)["top_k_indices"].numpy()
            labels = labels.numpy()[:, None]
            top1 += int(np.sum(indices[:, :1] == labels))
            topk += int(np.sum(np.any(indices[:, :k] == labels, axis=1)))
            count += len(labels)
    return {"data": data, "split": named, "examples": count, "top1": top1 / count, "topk": topk / count, "k": k}


def predict_files(directory, paths, top_k=None):
    """Top-k labels of each image file; bad files get an error, not an exception.

    Returns:
        ``[(path, [(label, probability), ...] or None, error or None)]``.
    """
    import tensorflow as tf

    from xbn.data.images import read_image_file

    loaded, info = load_export(directory)
    serve = loaded.signatures["serve_bytes"]
    k = min(top_k or info["top_k"], info["top_k"])
    results = []
    for path in paths:
        data, unreadable = read_image_file(path)
        if unreadable:
            results.append((path, None, unreadable))
            continue
        try:
            out = serve(image_bytes=tf.constant([data]))
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
            results.append((path, None, _serving_error(error.message)))
            continue
        labels = [label.decode() for label in out["top_k_labels"].numpy()[0][:k]]
        indices = out["top_k_indices"].numpy()[0][:k]
        probabilities = out["probabilities"].numpy()[0][indices]
        results.append((path, list(zip(labels, probabilities.tolist())), None))
    return results


def _serving_error(message):
    """A serving signature's failure in a user's words: its assertion's data
    (one image is sent at a time, so "image 0 of image_bytes" is dropped),
    or the decoder's message."""
    import re

    from xbn.data.images import readable_decode_error

    if "assertion failed:" in message:
        tail = message.split("assertion failed:", 1)[1].split("{{", 1)[0]
        text = " ".join(item.strip() for item in re.findall(r"\[([^\[\]]*)\]", tail))
        return re.sub(r"^image 0 of image_bytes (is )?", "", text)
    return readable_decode_error(message)
