"""``numpy:PATH.npz``: images and labels in a NumPy ``.npz`` file.

The file holds ``images`` (``uint8`` or float values in 0..255, shaped
``(N, H, W)`` for grey or ``(N, H, W, 1 or 3)``) and integer ``labels``
``(N,)`` from 0; optionally ``class_names`` (one string per class) and
ready-made ``val_images``/``val_labels`` and ``test_images``/``test_labels``.
Without a validation split of its own, ``--val-split`` of every class is
held out.  Option: ``num_classes`` where the labels do not use every class.

Write one with ``np.savez("data.npz", images=x, labels=y)``.
"""

import os

import numpy as np

from xbn import _checks
from xbn.data.sources import DataSource, array_split, hold_out, register_source
from xbn.errors import UsageError


def _images(spec, name, array):
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise UsageError(
            f"`data` {spec}: {name!r} holds {array.dtype} values, not pixel numbers; it must be uint8 or float "
            "values in 0..255 (decode image files first, or use `data` folder:DIR for files)."
        )
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array)
        if bad.any():
            index = int(np.argwhere(bad.reshape(len(array), -1).any(axis=1))[0, 0])
            raise UsageError(
                f"`data` {spec}: {name!r} holds {int(bad.sum())} NaN or infinite pixel value(s), the first in "
                f"image {index}; replace or drop them (np.nan_to_num, or a mask over the images)."
            )
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise UsageError(
            f"`data` {spec}: {name!r} must be shaped (N, H, W), (N, H, W, 1) or (N, H, W, 3); "
            f"it is {array.shape}."
        )
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer) and array.min() >= 0 and array.max() <= 255:
        return array.astype(np.uint8)
    raise UsageError(
        f"`data` {spec}: {name!r} must hold uint8 or float values in 0..255; it is "
        f"{array.dtype} from {array.min()} to {array.max()}."
    )


def _labels(spec, name, array, count):
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise UsageError(f"`data` {spec}: {name!r} must be a 1-D integer array; it is {array.dtype} {array.shape}.")
    if len(array) != count:
        raise UsageError(f"`data` {spec}: {name!r} has {len(array)} entries for {count} images.")
    if len(array) and array.min() < 0:
        raise UsageError(f"`data` {spec}: {name!r} must count from 0; found {array.min()}.")
    return array.astype(np.int64)


@register_source(
    "numpy", argument="PATH.npz", example="/data/scans.npz",
    options={"num_classes": (None, "class count where the labels do not use every class")},
    description="a NumPy .npz file of images and labels",
)
def open_numpy(spec, path, val_split, skip_bad_images, progress, num_classes):
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`data` {spec}: the file {path} does not exist.")
    import zipfile

    if not zipfile.is_zipfile(path):
        raise UsageError(f"`data` {spec}: {path} is not a NumPy .npz archive (a zip file of arrays, as np.savez "
                         "writes); write one with np.savez(PATH, images=..., labels=...).")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise UsageError(f"`data` {spec}: {path} is not a readable NumPy .npz file ({error}).") from None
    with archive:
        missing = [key for key in ("images", "labels") if key not in archive.files]
        if missing:
            raise UsageError(
                f"`data` {spec}: {path} has no {' or '.join(map(repr, missing))} array (it has "
                f"{', '.join(archive.files) or 'none'}); save it with "
                "np.savez(PATH, images=..., labels=...)."
            )
        parts = {}
        for role, prefix in (("train", ""), ("val", "val_"), ("test", "test_")):
            if f"{prefix}images" in archive.files:
                x = _images(spec, f"{prefix}images", archive[f"{prefix}images"])
                y = _labels(spec, f"{prefix}labels", archive[f"{prefix}labels"], len(x))
                parts[role] = (x, y)
        names = [str(n) for n in archive["class_names"]] if "class_names" in archive.files else None
    top = max(int(y.max()) for _, y in parts.values() if len(y)) + 1
    used = len(np.unique(np.concatenate([y for _, y in parts.values()])))
    if num_classes is None and names is None and top > max(2 * used, used + 10):
        raise UsageError(
            f"`data` {spec}: the labels go up to {top - 1}, but only {used} different labels occur; labels count "
            f"the classes from 0, so renumber them 0..{used - 1}, or, if the data really has {top} classes (or "
            f"more), say so with `data_args` num_classes={top}."
        )
    count = num_classes or (len(names) if names else top)
    count = _checks.check_int(spec, "num_classes", count, minimum=1)
    if top > count:
        raise UsageError(f"`data` {spec}: label {top - 1} >= the {count} classes; pass `data_args` num_classes=N.")
    names = names or [str(i) for i in range(count)]
    if len(names) != count:
        raise UsageError(f"`data` {spec}: 'class_names' names {len(names)} classes, the labels {count}.")
    x, y = parts["train"]
    if "val" not in parts:
        train, val = hold_out(y, val_split)
        parts["train"], parts["val"] = (x[train], y[train]), (x[val], y[val])
    splits = {role: array_split(role, *part) for role, part in parts.items() if len(part[1])}
    decoded = sum(part[0].size for part in parts.values())
    return DataSource(spec, "numpy", names, splits, decoded_bytes=decoded)
