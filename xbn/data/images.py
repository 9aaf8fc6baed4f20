"""Image files: what counts as one, and finding the ones that do not decode.

:func:`sniff_format` reads a file's first bytes and tells a JPEG, PNG, BMP or
GIF from anything else (a text file renamed ``.jpg``, an empty file): the
cheap check every file of a folder dataset gets before training starts.
:func:`find_undecodable` decodes files one by one with the same decoder the
pipeline uses, to name the file behind a decode error (a truncated JPEG
passes the header check) or to drop such files with ``--skip-bad-images``.

Images stored as floats (TFDS tensors, ``.npz`` arrays) can hold NaN or
infinity, which some CPUs' kernels silently turn into finite values (max
pooling gives -3.4e38 for NaN on AVX-512 machines), so training would go on
with garbage.  :func:`check_finite` makes the pipeline fail on such an
example instead, naming it, and :func:`named_bad_input` turns that failure
into a :class:`NonFiniteImageError` whose message names the record.
"""

import contextlib
import re
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


class NonFiniteImageError(BadImageError):
    """An example whose pixels include NaN or infinity; the message names it."""


# Marks the assertion messages of check_finite, so that named_bad_input can
# tell them from any other InvalidArgumentError of the pipeline.
_MARK = "xbn-non-finite-image"


def check_finite(image, index, where):
    """``image`` unchanged, or a pipeline error naming example ``index`` of ``where``.

    Integer images pass without any work.  For float images the check runs
    inside the tf.data pipeline (once per example, before any cache), so a
    bad example fails the epoch that first reads it.

    Args:
        image: one example's image tensor.
        index: its position in the split (an int64 scalar tensor).
        where: what the split is, e.g. ``"the 'train' split of --data tfds:mnist"``.
    """
    import tensorflow as tf

    if not image.dtype.is_floating:
        return image
    check = tf.debugging.Assert(
        tf.reduce_all(tf.math.is_finite(image)),
        [_MARK, "example", index, f"of {where} has non-finite pixel values (NaN or inf)"],
    )
    with tf.control_dependencies([check]):
        return tf.identity(image)


def non_finite_message(text):
    """The readable message inside a pipeline error raised by :func:`check_finite`, or None."""
    if _MARK not in text:
        return None
    # TensorFlow prints each datum as "[value]", escapes quotes and appends
    # the graph node ("{{function_node ...}}"), which means nothing to a user.
    tail = text.split(_MARK, 1)[1].split("{{", 1)[0].replace("\\'", "'")
    parts = re.findall(r"\[([^\[\]]*)\]", tail)
    words = " ".join(p.strip() for p in parts if p.strip())
    return (
        f"{words}. Training on them would go on with values that some CPUs turn into "
        "arbitrary finite numbers: fix or drop that example."
    )


@contextlib.contextmanager
def named_bad_input():
    """Turn a :func:`check_finite` failure into a :class:`NonFiniteImageError`."""
    import tensorflow as tf

    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        message = non_finite_message(error.message)
        if message is None:
            raise
        raise NonFiniteImageError(message) from None


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
