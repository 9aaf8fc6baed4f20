"""The ``--data`` sources: where images and labels come from.

A source is named by a spec string:

``digits``
    scikit-learn's handwritten digits (1,797 real 8x8 scans, shipped inside
    the scikit-learn wheel), grey levels 0..16 scaled to 0..255 and repeated
    over three channels, with a fixed stratified train/val/test split of
    70/10/20 %.  The split never depends on ``--seed``.
``folder:PATH``
    one subfolder per class of JPEG/PNG/BMP/GIF files (any sizes).  A
    validation split is carved per class (``val_split``), or given as a
    second folder (``--val-data folder:PATH``).
``tfrecord:GLOB``
    TFRecord files in the ImageNet layout of the TF Model Garden
    (``image/encoded``, ``image/class/label``, optionally
    ``image/class/text``).  ``label_offset`` shifts the labels (``-1`` for the
    Model Garden's 1-based ImageNet records).
``tfds:NAME``
    a TensorFlow Datasets dataset already prepared under ``tfds_data_dir``
    (the ``tfds`` extra); never downloaded.
``synthetic``
    random images generated on the fly, for benchmarks.

Every source yields, per split, a :class:`Split` whose dataset produces
``(image, label)`` with ``image`` a decoded ``uint8 [H, W, 3]`` tensor (or
``float32`` with values in 0..255 for sources that store floats; sizes may
vary) and ``label`` an ``int32``, always in the same order.
"""

import dataclasses
import glob
import os
from pathlib import Path
from typing import Callable

import numpy as np

from xbn import _checks
from xbn.data import images

SPLIT_SEED = 20220301  # the fixed seed of every train/val/test split
KINDS = ("digits", "folder", "tfrecord", "tfds", "synthetic")
DIGITS_FRACTIONS = (0.7, 0.1, 0.2)


@dataclasses.dataclass
class Split:
    """One split of a source.

    Attributes:
        name: ``"train"``, ``"val"`` or ``"test"``.
        size: number of examples.
        make: builds the ``tf.data.Dataset`` of ``(uint8 image, int32 label)``.
        paths: for file-backed splits, the files in dataset order (to name
            the file behind a decode error).
        origin: the ``--data`` flag and spec the split was read from
            (``"--val-data folder:/data/val"``), to name it in errors.
    """

    name: str
    size: int
    make: Callable
    paths: list = None
    origin: str = None

    def describe(self):
        """``"the 'train' split of --data digits"``: for error messages."""
        return f"the '{self.name}' split of {self.origin or 'the data'}"

    def indexed(self):
        """``make()`` as ``(index, (image, label))`` with float images checked.

        Float images are checked for NaN and infinity here, where every
        source's examples enter a pipeline (see
        :func:`xbn.data.images.check_finite`); integer images pass untouched.
        """
        import tensorflow as tf

        ds = self.make().enumerate()
        if not ds.element_spec[1][0].dtype.is_floating:
            return ds
        where = self.describe()
        return ds.map(
            lambda index, example: (
                index, (images.check_finite(example[0], index, where), example[1])
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )


@dataclasses.dataclass
class DataSource:
    """A parsed ``--data`` spec: class names and splits."""

    spec: str
    kind: str
    class_names: list
    splits: dict
    skipped: list = dataclasses.field(default_factory=list)  # [(path, reason)]

    @property
    def num_classes(self):
        return len(self.class_names)

    def split(self, name):
        if name not in self.splits:
            raise ValueError(
                f"--data {self.spec}: there is no {name!r} split (it has "
                f"{', '.join(self.splits)})."
            )
        return self.splits[name]


def parse_spec(spec):
    """``"folder:/data/x"`` -> ``("folder", "/data/x")``; checks the kind."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"--data must be a non-empty string such as 'digits'; got {spec!r}.")
    kind, _, arg = spec.partition(":")
    if kind not in KINDS:
        raise ValueError(
            f"--data {spec!r}: unknown source {kind!r}. Use one of: digits, folder:PATH, "
            "tfrecord:GLOB, tfds:NAME, synthetic."
        )
    if kind in ("folder", "tfrecord", "tfds") and not arg:
        raise ValueError(f"--data {spec!r}: {kind} needs an argument, e.g. {kind}:{_EXAMPLES[kind]}.")
    if kind in ("digits", "synthetic") and arg:
        raise ValueError(f"--data {spec!r}: {kind} takes no argument; use --data {kind}.")
    return kind, arg


_EXAMPLES = {"folder": "/data/flowers", "tfrecord": "/data/imagenet/train-*", "tfds": "cifar10"}


def load_source(
    spec,
    *,
    val_split=0.1,
    val_data=None,
    test_data=None,
    skip_bad_images=False,
    image_size=64,
    num_classes=None,
    label_offset=0,
    tfds_data_dir=None,
    synthetic_size=(512, 128, 128),
    progress=None,
):
    """Open the source named by ``spec`` (see the module docstring).

    Args:
        spec: the ``--data`` value.
        val_split: fraction of each class held out for validation when the
            source has no validation split of its own and ``val_data`` is
            not given.
        val_data, test_data: specs of separate validation/test sources of the
            same classes.
        skip_bad_images: drop files that are not decodable images (and
            report them in ``DataSource.skipped``) instead of failing.
        image_size: side of the synthetic images.
        num_classes: class count of ``synthetic`` (default 10) or of
            ``tfrecord`` data without ``image/class/text`` (default: scanned).
        label_offset: added to TFRecord labels.
        tfds_data_dir: where TFDS datasets are prepared.
        synthetic_size: (train, val, test) sizes of the synthetic source.
        progress: optional callable ``progress(message)`` for long scans.

    Returns:
        A :class:`DataSource` with ``train`` and ``val`` splits, and ``test``
        where there is one.
    """
    val_split = _checks.check_float("--val-split", "val_split", val_split, minimum=0.0, maximum=0.9)
    kind, arg = parse_spec(spec)
    common = dict(val_split=val_split, skip_bad_images=skip_bad_images, progress=progress)
    if kind == "digits":
        source = _digits(spec)
    elif kind == "folder":
        source = _folder(spec, arg, **common)
    elif kind == "tfrecord":
        source = _tfrecord(spec, arg, num_classes=num_classes, label_offset=label_offset, **common)
    elif kind == "tfds":
        source = _tfds(spec, arg, tfds_data_dir, val_split)
    else:
        source = _synthetic(spec, image_size, num_classes or 10, synthetic_size)
    for split in source.splits.values():
        split.origin = split.origin or f"--data {spec}"
    for role, other in (("val", val_data), ("test", test_data)):
        if other:
            extra = load_source(
                other, val_split=0.0, skip_bad_images=skip_bad_images, image_size=image_size,
                num_classes=num_classes, label_offset=label_offset, tfds_data_dir=tfds_data_dir,
                progress=progress,
            )
            if extra.class_names != source.class_names:
                raise ValueError(
                    f"--{role}-data {other}: its classes {extra.class_names[:10]} differ from "
                    f"those of --data {spec}: {source.class_names[:10]}."
                )
            split = extra.splits["train"]
            source.splits[role] = dataclasses.replace(split, name=role, origin=f"--{role}-data {other}")
            source.skipped += extra.skipped
    for name, split in source.splits.items():
        if split.size == 0:
            raise ValueError(f"--data {spec}: the {name} split is empty.")
    return source


def _stratified_split(labels, fractions, seed=SPLIT_SEED):
    """Index arrays per split, the same fraction of every class in each."""
    rng = np.random.default_rng(seed)
    parts = [[] for _ in fractions]
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        bounds = np.round(np.cumsum(fractions)[:-1] * len(idx)).astype(int)
        for part, chunk in zip(parts, np.split(idx, bounds)):
            part.extend(chunk.tolist())
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def _array_split(name, images_array, labels):
    """A split backed by in-memory uint8 images."""
    import tensorflow as tf

    def make():
        return tf.data.Dataset.from_tensor_slices(
            (images_array, labels.astype(np.int32))
        )

    return Split(name, len(labels), make)


def _digits(spec):
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # (N, 8, 8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    labels = digits.target.astype(np.int64)
    train, val, test = _stratified_split(labels, DIGITS_FRACTIONS)
    splits = {
        name: _array_split(name, rgb[idx], labels[idx])
        for name, idx in (("train", train), ("val", val), ("test", test))
    }
    return DataSource(spec, "digits", [str(d) for d in range(10)], splits)


def _file_split(name, paths, labels):
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


def _check_files(spec, paths, skip_bad_images, progress):
    """Drop or report files that are not images; returns (good, skipped)."""
    if skip_bad_images:
        if progress:
            progress(f"verifying {len(paths)} images (--skip-bad-images) ...")
        bad = images.find_undecodable(paths)
    else:
        bad = [(p, "not a JPEG, PNG, BMP or GIF file") for p in paths if images.sniff_format(p) is None]
        if bad:
            listed = "; ".join(f"{p} ({why})" for p, why in bad[:3])
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            raise images.BadImageError(
                f"--data {spec}: bad image file(s): {listed}{more}. Remove or fix them, "
                "or pass --skip-bad-images to skip such files."
            )
    bad_set = {p for p, _ in bad}
    return [p for p in paths if p not in bad_set], bad


def _folder(spec, arg, val_split, skip_bad_images, progress):
    root = Path(arg).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"--data {spec}: the folder {root} does not exist.")
    if not root.is_dir():
        raise NotADirectoryError(f"--data {spec}: {root} is a file, not a folder of class folders.")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        loose = [p for p in root.iterdir() if p.is_file() and images.is_image_name(p)]
        hint = (
            f" It holds {len(loose)} image files directly: put them in one subfolder per class."
            if loose else ""
        )
        raise ValueError(
            f"--data {spec}: {root} has no class subfolders; expected "
            f"{root}/<class name>/<image files>.{hint}"
        )
    paths, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        files = sorted(
            p for p in class_dir.rglob("*") if p.is_file() and images.is_image_name(p)
        )
        if not files:
            raise ValueError(
                f"--data {spec}: the class folder {class_dir} has no .jpg, .jpeg, .png, "
                ".bmp or .gif files; remove it or add images."
            )
        paths += files
        labels += [label] * len(files)
    good, skipped = _check_files(spec, paths, skip_bad_images, progress)
    good = set(good)
    labels = np.asarray([l for p, l in zip(paths, labels) if p in good], np.int64)
    paths = [p for p in paths if p in good]
    for label, class_dir in enumerate(class_dirs):
        if not np.any(labels == label):
            raise ValueError(
                f"--data {spec}: every image of the class folder {class_dir} was skipped "
                "as unreadable."
            )
    if val_split > 0:
        train, val = _stratified_split(labels, (1.0 - val_split, val_split))
    else:
        train, val = np.arange(len(labels)), np.asarray([], np.int64)
    splits = {"train": _file_split("train", [paths[i] for i in train], labels[train])}
    if len(val):
        splits["val"] = _file_split("val", [paths[i] for i in val], labels[val])
    return DataSource(spec, "folder", [d.name for d in class_dirs], splits, skipped)


def _tfrecord_files(spec, pattern):
    files = sorted(glob.glob(os.path.expanduser(pattern)))
    if not files:
        raise FileNotFoundError(f"--data {spec}: no file matches {pattern!r}.")
    return files


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


def _tfrecord(spec, pattern, val_split, skip_bad_images, progress, num_classes, label_offset):
    import tensorflow as tf

    files = _tfrecord_files(spec, pattern)
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
        raise ValueError(f"--data {spec}: corrupt TFRecord data: {error.message}") from None
    except tf.errors.InvalidArgumentError as error:
        raise ValueError(
            f"--data {spec}: the records are not in the ImageNet layout "
            f"(image/encoded, image/class/label): {error.message.splitlines()[0]}"
        ) from None
    labels = np.asarray(labels, np.int64)
    if not len(labels):
        raise ValueError(f"--data {spec}: the TFRecord files hold no records.")
    if labels.min() < 0:
        raise ValueError(
            f"--data {spec}: labels must be >= 0 after --label-offset {label_offset}; "
            f"found {labels.min()}."
        )
    count = num_classes or int(labels.max()) + 1
    if labels.max() >= count:
        raise ValueError(f"--data {spec}: label {labels.max()} >= --num-classes {count}.")
    names = [texts.get(i, str(i)) for i in range(count)]

    bad_index = set()
    skipped = []
    if skip_bad_images:
        if progress:
            progress(f"verifying {len(labels)} encoded images (--skip-bad-images) ...")
        encoded = tf.data.TFRecordDataset(files).map(lambda r: _parse_record(r, ("image/encoded",)))
        for i, item in enumerate(encoded):
            try:
                images.decode(item["image/encoded"])
            except tf.errors.InvalidArgumentError as error:
                bad_index.add(i)
                skipped.append((f"record {i} of {pattern}", error.message.splitlines()[0]))
    keep = np.asarray([i not in bad_index for i in range(len(labels))])
    if val_split > 0:
        train_idx, val_idx = _stratified_split(labels[keep], (1.0 - val_split, val_split))
        kept_positions = np.flatnonzero(keep)
        train_idx, val_idx = kept_positions[train_idx], kept_positions[val_idx]
    else:
        train_idx, val_idx = np.flatnonzero(keep), np.asarray([], np.int64)

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
    return DataSource(spec, "tfrecord", names, splits, skipped)


def _tfds(spec, name, data_dir, val_split):
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ValueError(
            f"--data {spec}: TensorFlow Datasets is not installed; install the extra with "
            "pip install 'xbn[tfds]'."
        ) from None
    data_dir = os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # tfds raises its own DatasetNotFoundError
        raise ValueError(f"--data {spec}: unknown TFDS dataset {name!r}: {error}") from None
    if not builder.info.splits or not os.path.isdir(builder.data_dir):
        raise FileNotFoundError(
            f"--data {spec}: {name!r} is not prepared under {data_dir}, and xbn never "
            f"downloads. Prepare it on a machine with network access (tfds build {name} "
            f"--data_dir {data_dir}) and copy the folder here, or pass --tfds-data-dir."
        )
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise ValueError(f"--data {spec}: the dataset needs 'image' and 'label' features.")
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
        raise ValueError(f"--data {spec}: the dataset has no 'train' split ({available}).")
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
    return DataSource(spec, "tfds", names, splits)


def _synthetic(spec, image_size, num_classes, sizes):
    import tensorflow as tf

    image_size = _checks.check_int("--data synthetic", "image_size", image_size, minimum=1)

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

    train, val, test = sizes
    splits = {
        "train": split("train", train, 0),
        "val": split("val", val, train),
        "test": split("test", test, train + val),
    }
    return DataSource(spec, "synthetic", [f"class_{i}" for i in range(num_classes)], splits)
