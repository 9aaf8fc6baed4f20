"""Image files: what counts as one, and finding the ones that do not decode.

:func:`sniff_format` reads a file's first bytes and tells a JPEG, PNG, BMP or
GIF from anything else (a text file renamed ``.jpg``, an empty file): the
cheap check every file of a folder dataset gets before training starts.
:func:`find_undecodable` decodes files one by one with the same decoder the
pipeline uses, to name the file behind a decode error (a truncated JPEG
passes the header check) or to drop such files with ``--skip-bad-images``.
"""

from pathlib import Path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
)


class BadImageError(ValueError):
    """A file that is not a readable image; the message names the file."""


def sniff_format(path):
    """``"jpeg"``, ``"png"``, ``"gif"``, ``"bmp"``, or ``None`` for a non-image."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return None
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return None


def is_image_name(path):
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def decode(contents):
    """Decode encoded image bytes to ``uint8 [H, W, 3]`` (first GIF frame)."""
    import tensorflow as tf

    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def find_undecodable(paths, progress=None):
    """The files among ``paths`` that fail to decode, as ``[(path, reason)]``."""
    import tensorflow as tf

    bad = []
    for i, path in enumerate(paths):
        if sniff_format(path) is None:
            bad.append((path, "not a JPEG, PNG, BMP or GIF file"))
        else:
            try:
                image = decode(tf.io.read_file(str(path)))
                if image.shape[0] == 0 or image.shape[1] == 0:
                    bad.append((path, "empty image"))
            except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as error:
                bad.append((path, error.message.splitlines()[0]))
        if progress is not None:
            progress(i + 1)
    return bad
