"""Image files: what counts as one, and finding the ones that do not decode.

:func:`sniff_format` reads a file's first bytes and tells a JPEG, PNG, BMP or
GIF from anything else (a text file renamed ``.jpg``, an empty file).
:func:`check_files` and :func:`check_records` then decode every image once,
in parallel, with the decoder the pipeline uses, before training starts: a
truncated JPEG passes the header check but not this one, and is named (or,
with ``--skip-bad-images``, dropped with a readable reason) instead of
crashing an epoch.  :func:`readable_decode_error` turns TensorFlow's decoder
messages into a user's words.

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

from xbn.errors import UsageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# The file signatures of the formats TensorFlow decodes: the one definition,
# used by the folder source and by the export's serve_bytes signature.
SIGNATURES = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
)


class BadImageError(UsageError):
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


def format_flags(encoded):
    """``{format: bool tensor}`` for a string tensor of encoded files, by :data:`SIGNATURES`."""
    import tensorflow as tf

    flags = {}
    for magic, kind in SIGNATURES:
        hit = tf.strings.substr(encoded, 0, len(magic)) == magic
        flags[kind] = flags[kind] | hit if kind in flags else hit
    return flags


def sniff_format(path):
    """``"jpeg"``, ``"png"``, ``"gif"``, ``"bmp"``, or ``None`` for a non-image."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return None
    for magic, kind in SIGNATURES:
        if head.startswith(magic):
            return kind
    return None


def is_image_name(path):
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def read_image_file(path):
    """``(bytes, None)``, or ``(None, why)`` for a file that cannot be read
    or is empty: what predicting a list of files reports per file."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        return None, f"cannot read the file: {error.strerror}"
    if not data:
        return None, "the file is empty (0 bytes)"
    return data, None


def decode(contents):
    """Decode encoded image bytes to ``uint8 [H, W, 3]`` (first GIF frame)."""
    import tensorflow as tf

    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


FORMAT_NAMES = "JPEG, PNG, BMP or GIF"


def readable_decode_error(message):
    """A decoder's error in a user's words, with TensorFlow's internals removed.

    ``{{function_node __wrapped__DecodeImage...}} Invalid JPEG data or crop
    window, data size 2048 [Op:DecodeImage]`` becomes ``damaged or truncated
    JPEG data (Invalid JPEG data or crop window, data size 2048)``.
    """
    text = re.sub(r"\{\{[^}]*\}\}", "", message).split("[Op:", 1)[0]
    text = " ".join(text.replace("Graph execution error:", "").split()).strip(" .;:")
    lowered = text.lower()
    for kind in ("jpeg", "png", "gif", "bmp"):
        if kind in lowered and any(w in lowered for w in ("invalid", "truncat", "corrupt", "premature", "damaged")):
            return f"damaged or truncated {kind.upper()} data ({text})"
    if "unknown image file format" in lowered:
        return f"not a {FORMAT_NAMES} image"
    return text or "cannot be decoded"


def _cache_file(key):
    """Where the checks of one data set are remembered between runs."""
    import hashlib
    import os

    root = os.environ.get("XBN_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "xbn"
    )
    return Path(root) / "image-checks" / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".json")


def _load_cache(key):
    import json

    try:
        return json.loads(_cache_file(key).read_text())
    except (OSError, ValueError):
        return {}


def _save_cache(key, entries):
    import json

    from xbn import _files

    try:
        _files.atomic_write_text(_cache_file(key), json.dumps(entries))
    except OSError:
        pass  # a read-only home: checks are simply redone next time


def _decode_shapes(dataset, count, progress=None, label="checking images"):
    """``{index: (height, width)}`` of the examples of ``dataset`` that decode.

    ``dataset`` yields ``(index, encoded bytes)``; decoding runs in parallel
    in tf.data, and the examples that fail are dropped (``ignore_errors``),
    so that their indices are missing from the result.
    """
    import tensorflow as tf

    from xbn._progress import Progress

    def shape_of(index, encoded):
        return index, tf.shape(decode(encoded))[:2]

    shapes = dataset.map(shape_of, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    shapes = shapes.ignore_errors()
    bar = Progress(count, label, enabled=progress is not None and count > 0)
    found = {}
    for index, shape in shapes:
        found[int(index)] = (int(shape[0]), int(shape[1]))
        if len(found) % 64 == 0:
            bar.update(len(found))
    bar.finish()
    return found


def _reason(encoded):
    """Why ``encoded`` does not decode (decoding it once more, alone)."""
    import tensorflow as tf

    try:
        image = decode(encoded)
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as error:
        return readable_decode_error(error.message)
    if image.shape[0] == 0 or image.shape[1] == 0:
        return "an empty image (0 pixels)"
    return None


def check_files(paths, progress=None):
    """Decode every file of ``paths`` once, in parallel, as the pipeline will.

    A file that only looks like an image (the right first bytes, a truncated
    or damaged body) is found here, before training, not mid-epoch.  Results
    are remembered per file (path, size, modification time) in the user's
    cache (``$XBN_CACHE_DIR`` or ``~/.cache/xbn``), so a data set is decoded
    once, not at every run.

    Args:
        paths: image files.
        progress: a callable taking a message, or None for silence.

    Returns:
        ``(shapes, bad)``: ``shapes[path] = (height, width)`` of the files
        that decode, and ``[(path, reason)]`` for those that do not.
    """
    import os

    import tensorflow as tf

    paths = [Path(p) for p in paths]
    key = "files:" + (os.path.commonpath([str(p.resolve()) for p in paths]) if paths else "")
    cache = _load_cache(key)
    stamps, shapes, bad, todo = {}, {}, [], []
    for path in paths:
        try:
            stat = path.stat()
        except OSError as error:
            bad.append((path, f"cannot be read: {error.strerror}"))
            continue
        stamp = [stat.st_size, stat.st_mtime_ns]
        stamps[str(path)] = stamp
        known = cache.get(str(path))
        if known and known[:2] == stamp:
            if known[2] is None:
                bad.append((path, known[3]))
            else:
                shapes[path] = tuple(known[2])
        elif sniff_format(path) is None:
            bad.append((path, f"not a {FORMAT_NAMES} file"))
        else:
            todo.append(path)
    if todo:
        if progress:
            progress(f"checking {len(todo)} image file(s): decoding each once, in parallel "
                     f"({len(paths) - len(todo)} already checked) ...")
        from xbn._backend import quiet_stderr

        names = tf.data.Dataset.from_tensor_slices([str(p) for p in todo]).enumerate()
        # libjpeg prints its own warnings ("Improper call to JPEG library in
        # state 201") on a damaged file; the reasons below say it in words.
        with quiet_stderr():
            decoded = _decode_shapes(names.map(lambda i, p: (i, tf.io.read_file(p))), len(todo), progress)
            for index, path in enumerate(todo):
                if index in decoded:
                    shapes[path] = decoded[index]
                else:
                    bad.append((path, _reason(tf.io.read_file(str(path)))))
    entries = {str(p): [*stamps[str(p)], list(hw), None] for p, hw in shapes.items()}
    entries.update({str(p): [*stamps[str(p)], None, why] for p, why in bad if str(p) in stamps})
    if entries != {k: v for k, v in cache.items() if k in entries} or len(entries) != len(cache):
        _save_cache(key, entries)
    return shapes, sorted(bad)


def check_records(files, read_encoded, progress=None):
    """Decode the image of every TFRecord once, in parallel (see :func:`check_files`).

    Args:
        files: the TFRecord files, in reading order.
        read_encoded: maps a serialized record to its encoded image bytes.
        progress: a callable taking a message, or None.

    Returns:
        ``(shapes, bad)``: ``shapes[index] = (height, width)`` per record index
        (over all files, in order) and ``[(index, where, reason)]`` for the
        records that do not decode, ``where`` naming the file and record.
    """
    import os

    import tensorflow as tf

    key = "records:" + "|".join(f"{os.path.abspath(f)}:{os.path.getsize(f)}:{os.stat(f).st_mtime_ns}" for f in files)
    cache = _load_cache(key)
    if cache:
        shapes = {int(i): tuple(hw) for i, hw in cache["shapes"].items()}
        return shapes, [tuple(b) for b in cache["bad"]]
    if progress:
        progress(f"checking the images of {len(files)} TFRecord file(s): decoding each once, in parallel ...")
    counts = [sum(1 for _ in tf.data.TFRecordDataset(f)) for f in files]
    records = tf.data.TFRecordDataset(list(files)).enumerate()
    shapes = _decode_shapes(records.map(lambda i, r: (i, read_encoded(r))), sum(counts), progress)
    bad = []
    if len(shapes) < sum(counts):
        starts = [sum(counts[:k]) for k in range(len(counts))]
        for index, record in enumerate(tf.data.TFRecordDataset(list(files))):
            if index not in shapes:
                file_index = max(k for k, start in enumerate(starts) if start <= index)
                where = f"record {index - starts[file_index]} of {files[file_index]}"
                bad.append((index, where, _reason(read_encoded(record))))
    _save_cache(key, {"shapes": {str(i): list(hw) for i, hw in shapes.items()}, "bad": bad})
    return shapes, bad
