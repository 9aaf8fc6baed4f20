"""Small real image datasets written on the fly, for the data, training and
export tests: digits scans and scikit-image's bundled photos, as class
folders of JPEG/PNG/BMP/GIF files and as ImageNet-layout TFRecords."""

import io
from pathlib import Path

import numpy as np
from PIL import Image

FORMATS = {"png": "PNG", "jpg": "JPEG", "bmp": "BMP", "gif": "GIF"}


def digits(per_class=6, classes=(0, 1, 2), size=32):
    """Real digit scans as RGB uint8 images of ``size`` pixels, with labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images, labels = [], []
    for label in classes:
        for scan in data.images[data.target == label][:per_class]:
            grey = Image.fromarray(np.uint8(scan * 255 / 16)).resize((size, size), Image.BILINEAR)
            images.append(np.repeat(np.asarray(grey)[..., None], 3, axis=-1))
            labels.append(label)
    return images, np.asarray(labels)


def photos():
    """scikit-image's bundled RGB photos (shipped in the wheel)."""
    import skimage.data

    return {name: getattr(skimage.data, name)() for name in ("astronaut", "coffee", "chelsea", "rocket")}


def encode(image, fmt="png"):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=FORMATS[fmt])
    return buffer.getvalue()


def write_folder(root, per_class=6, classes=(0, 1, 2), size=32):
    """A class-folder dataset of digit scans, cycling through every format.

    Returns ``{path: (label, image)}`` of what was written.
    """
    root = Path(root)
    images, labels = digits(per_class, classes, size)
    written = {}
    for i, (image, label) in enumerate(zip(images, labels)):
        fmt = list(FORMATS)[i % len(FORMATS)]
        path = root / f"digit_{label}" / f"{i:03d}.{fmt}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode(image, fmt))
        written[path] = (int(label), image)
    return written


def write_tfrecords(path, images, labels, texts=None, shards=2, fmt="jpg"):
    """ImageNet-layout TFRecords (TF Model Garden): image/encoded, image/class/label."""
    import tensorflow as tf

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    files = [path / f"train-{i:05d}-of-{shards:05d}" for i in range(shards)]
    writers = [tf.io.TFRecordWriter(str(f)) for f in files]
    for i, (image, label) in enumerate(zip(images, labels)):
        feature = {
            "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encode(image, fmt)])),
            "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
        }
        if texts is not None:
            feature["image/class/text"] = tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[texts[int(label)].encode()])
            )
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        writers[i % shards].write(example.SerializeToString())
    for writer in writers:
        writer.close()
    return str(path / "train-*")
