"""Using an export: top-1/top-5 on a data source, top-k labels of image files.

Only ``tf.saved_model.load`` and the export's signatures are used: no model
code, no custom layers.  Data comes from the same ``--data`` sources as
training, center-cropped the way the export's ``serve_bytes`` does it.
"""

from pathlib import Path

import numpy as np

from xbn.export.savedmodel import load_info


def load_export(directory):
    """``(loaded SavedModel, xbn.json info)``."""
    import tensorflow as tf

    info = load_info(directory)
    if info.get("format", "saved_model") != "saved_model":
        raise ValueError(
            f"{directory} holds a {info['format']} export; xbn-evaluate and xbn-predict "
            "serve SavedModel exports."
        )
    return tf.saved_model.load(str(directory)), info


def evaluate_export(directory, data, split=None, batch_size=64, val_split=0.0, skip_bad_images=False, progress=None):
    """Top-1 and top-5 accuracy of an export on a ``--data`` source.

    Args:
        directory: the export folder.
        data: a ``--data`` spec.
        split: ``train``, ``val`` or ``test``; default: ``test`` where the
            source has one, else everything (the ``train`` split of a source
            read with ``val_split=0``).
        batch_size: images per call of the signature.
        val_split, skip_bad_images: as for training.

    Returns:
        ``{"examples", "top1", "topk", "k", "split"}``.
    """
    import tensorflow as tf

    from xbn.data import load_source
    from xbn.data.images import named_bad_input
    from xbn.data.pipeline import eval_image

    loaded, info = load_export(directory)
    source = load_source(data, val_split=val_split, skip_bad_images=skip_bad_images, progress=progress)
    if source.class_names != info["class_names"]:
        raise ValueError(
            f"--data {data}: its classes {source.class_names[:8]} are not the export's "
            f"{info['class_names'][:8]} (same names in the same order are needed)."
        )
    split = split or ("test" if "test" in source.splits else "train")
    size, crop = info["image_size"], info["eval_crop"]
    dataset = (
        source.split(split).indexed()
        .map(lambda _, example: (eval_image(example[0], size, crop), example[1]),
             num_parallel_calls=tf.data.AUTOTUNE)
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
    return {"split": split, "examples": count, "top1": top1 / count, "topk": topk / count, "k": k}


def predict_files(directory, paths, top_k=None):
    """Top-k labels of each image file; bad files get an error, not an exception.

    Returns:
        ``[(path, [(label, probability), ...] or None, error or None)]``.
    """
    import tensorflow as tf

    loaded, info = load_export(directory)
    serve = loaded.signatures["serve_bytes"]
    k = min(top_k or info["top_k"], info["top_k"])
    results = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as error:
            results.append((path, None, f"cannot read the file: {error.strerror}"))
            continue
        try:
            out = serve(image_bytes=tf.constant([data]))
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
            message = error.message.splitlines()[0]
            if "is not a JPEG" in error.message:
                message = "not a JPEG, PNG, BMP or GIF image"
            results.append((path, None, message))
            continue
        labels = [label.decode() for label in out["top_k_labels"].numpy()[0][:k]]
        indices = out["top_k_indices"].numpy()[0][:k]
        probabilities = out["probabilities"].numpy()[0][indices]
        results.append((path, list(zip(labels, probabilities.tolist())), None))
    return results
