"""``folder:PATH``: one subfolder per class of image files (any sizes).

A validation split is held out per class (``--val-split``), or given as a
second folder (``--val-data folder:PATH``).  Every file is decoded once,
in parallel, before training (:func:`xbn.data.images.check_files`).
"""

from pathlib import Path

import numpy as np

from xbn.data import images
from xbn.data.sources import DataSource, Split, hold_out, refuse_bad, register_source
from xbn.errors import UsageError


def file_split(name, paths, labels):
    """A split of image files decoded on the fly."""
    import tensorflow as tf

    def make():
        files = tf.data.Dataset.from_tensor_slices(
            ([str(p) for p in paths], np.asarray(labels, np.int32))
        )
        return files.map(
            lambda path, label: (images.decode(tf.io.read_file(path)), label),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    return Split(name, len(paths), make, list(paths))


def _class_folders(spec, root):
    if not root.exists():
        raise FileNotFoundError(f"`data` {spec}: the folder {root} does not exist.")
    if not root.is_dir():
        raise NotADirectoryError(f"`data` {spec}: {root} is a file, not a folder of class folders.")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        loose = [p for p in root.iterdir() if p.is_file() and images.is_image_name(p)]
        hint = (
            f" It holds {len(loose)} image files directly: put them in one subfolder per class."
            if loose else ""
        )
        raise UsageError(
            f"`data` {spec}: {root} has no class subfolders; expected "
            f"{root}/<class name>/<image files>.{hint}"
        )
    return class_dirs


@register_source(
    "folder", argument="PATH", example="/data/flowers",
    description="one subfolder of JPEG/PNG/BMP/GIF files per class",
)
def open_folder(spec, arg, val_split, skip_bad_images, progress):
    class_dirs = _class_folders(spec, Path(arg).expanduser())
    paths, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        files = sorted(
            p for p in class_dir.rglob("*") if p.is_file() and images.is_image_name(p)
        )
        if not files:
            raise UsageError(
                f"`data` {spec}: the class folder {class_dir} has no .jpg, .jpeg, .png, "
                ".bmp or .gif files; remove it or add images."
            )
        paths += files
        labels += [label] * len(files)
    shapes, skipped = images.check_files(paths, progress)
    if skipped and not skip_bad_images:
        refuse_bad(spec, skipped)
    keep = np.asarray([p in shapes for p in paths])
    labels = np.asarray(labels, np.int64)
    for label, class_dir in enumerate(class_dirs):
        if not np.any(labels[keep] == label):
            raise UsageError(
                f"`data` {spec}: every image of the class folder {class_dir} was skipped "
                "as unreadable."
            )
    train, val = hold_out(labels, val_split, keep)
    splits = {"train": file_split("train", [paths[i] for i in train], labels[train])}
    if len(val):
        splits["val"] = file_split("val", [paths[i] for i in val], labels[val])
    decoded = sum(h * w * 3 for h, w in shapes.values())
    return DataSource(spec, "folder", [d.name for d in class_dirs], splits, skipped, decoded)
