"""SavedModel export with image-in / labels-out signatures.

The SavedModel is written with ``keras.export.ExportArchive`` and has two
signatures, both returning ``probabilities``, ``top_k_indices``,
``top_k_labels`` and, for models that output logits, ``logits``:

``serving_default``
    ``images``: float32 ``[batch, height, width, 3]`` RGB values in
    ``[0, 255]`` at the model's input size; the model's preprocessing runs in
    the graph.
``serve_bytes``
    ``image_bytes``: string ``[batch]`` of encoded JPEG/PNG/BMP/GIF files of
    any size; decoding, resizing (shorter side to ``size / eval_crop``),
    center cropping and preprocessing run in the graph.

The batch dimension is dynamic.  Bad input (an empty batch, a byte string
that is not an image) fails with a message from the signature, and the
serving process carries on.  What clients need to know (class names, input
size, preprocessing, crop) is also written to ``assets.extra/xbn.json``.

The export is atomic: it is built in a temporary folder beside the
destination, reloaded with plain ``tf.saved_model.load`` and compared with
the source model on real and random images, and only then renamed into
place.  Any failure leaves nothing behind.
"""

import json
from pathlib import Path

import numpy as np

import xbn
from xbn import _checks, _files
from xbn.errors import UsageError
from xbn.export.formats import write_litert, write_onnx
from xbn.export.signatures import MAX_PIXELS, header_size, serving_functions, verify_saved_model, write_saved_model
from xbn.export.verify import (
    TOLERANCE,
    ExportError,
    check_batch,
    compute_dtype,
    has_logits,
    image_size,
    reference,
    tolerance,
)

__all__ = [
    "FORMATS", "INFO_FILE", "MAX_PIXELS", "TOLERANCE", "ExportError", "compute_dtype", "export_model",
    "header_size", "load_info", "serving_functions", "tolerance",
]

INFO_FILE = Path("assets.extra") / "xbn.json"

FORMATS = ("saved_model", "litert", "onnx")
# Names of single files, which an export (a folder) is not.
FILE_SUFFIXES = (".tflite", ".litert", ".onnx", ".pb", ".keras", ".h5", ".zip")


def export_model(
    model, out, *, class_names, preprocessing, model_name=None, eval_crop=0.875, fold=True,
    overwrite=False, top_k=5, fmt="saved_model", max_pixels=MAX_PIXELS, data=None, log=print,
):
    """Export ``model`` for serving (see the module docstring).

    Args:
        model: a keras model taking preprocessed images, with a static input.
        out: destination folder (replaced only with ``overwrite``).
        class_names: one name per output class.
        preprocessing: the model's preprocessing mode (its facts).
        model_name: registered name, recorded in ``xbn.json``.
        eval_crop: central fraction kept by ``serve_bytes``.
        fold: fold BatchNorm into the convolutions first.
        overwrite: replace an existing ``out``.
        top_k: labels returned per image.
        fmt: ``"saved_model"``, ``"litert"`` or ``"onnx"``.
        max_pixels: ``serve_bytes`` refuses larger images before decoding them.
        data: where the model was trained and held out, ``{"spec",
            "val_split", "split"}`` (recorded so that ``xbn-evaluate`` can
            score the held-out split by default).
        log: progress callback.

    The export is verified against the source model on real and random
    images, within what its precision allows (:func:`tolerance`: 1e-4 of the
    output scale in float32, more under float16 or bfloat16 policies); the
    bound and the difference found are recorded in ``xbn.json``.

    Returns:
        ``(path, info)``: the folder written and its ``xbn.json`` content.
    """
    classes = _check_arguments(model, class_names, fmt, max_pixels)
    if Path(out).suffix.lower() in FILE_SUFFIXES:
        raise UsageError(
            f"export: `out` {out} names a file, but an export is a folder (the model, "
            f"{INFO_FILE.as_posix()} with its class names and preprocessing); name a folder, e.g. "
            f"{Path(out).with_suffix('')}-{fmt.replace('_', '-')}."
        )
    source = model
    fold_summary = None
    if fold:
        from xbn.fold import fold_batchnorm

        model, report = fold_batchnorm(model)
        fold_summary = report.summary()
        log(f"export: {fold_summary}")
    info = {
        "xbn_version": xbn.__version__,
        "format": fmt,
        "model": model_name or source.name,
        "class_names": list(class_names),
        "image_size": image_size(model),
        "preprocessing": preprocessing,
        "eval_crop": eval_crop,
        "top_k": min(top_k, classes),
        "outputs": ["probabilities", "top_k_indices", "top_k_labels"] + (["logits"] if has_logits(source) else []),
        "folded": bool(fold),
        "fold_report": fold_summary,
        "precision": compute_dtype(source),
        "tolerance": tolerance(source),
        "max_pixels": max_pixels,
        "data": data,
    }
    weights = sum(np.prod(w.shape) * 4 for w in model.weights)
    _files.ensure_space(
        Path(out).parent, int(2 * weights) + 50 * 2**20, f"the export {Path(out).name}",
        "Nothing was written; free some space and export again.",
    )
    with _files.atomic_directory(out, overwrite=overwrite) as tmp:
        info["difference"] = _write_verified(model, source, tmp, info, log)
        (tmp / INFO_FILE).parent.mkdir(parents=True, exist_ok=True)
        _files.atomic_write_text(tmp / INFO_FILE, json.dumps(info, indent=2) + "\n")
    log(f"export: wrote {out}")
    return Path(out), info


def _check_arguments(model, class_names, fmt, max_pixels):
    """The number of classes, once the arguments of :func:`export_model` are checked."""
    if fmt not in FORMATS:
        raise UsageError(f"export: `fmt` must be one of {', '.join(FORMATS)}; got {fmt!r}.")
    _checks.check_int("export", "max_pixels", max_pixels, minimum=1, type_error=ValueError)
    classes = int(model.output_shape[-1])
    if len(class_names) != classes:
        raise ExportError(
            f"export: {len(class_names)} class names for a model with {classes} outputs; "
            "give one name per class (`class_names`; on the command line a file, one per line)."
        )
    return classes


def _write_verified(model, source, folder, info, log):
    """Write ``model`` in ``info["format"]`` into ``folder`` and return its
    largest difference from ``source`` on real and random images (raises
    past ``info["tolerance"]``)."""
    preprocessing, limit = info["preprocessing"], info["tolerance"]
    images = check_batch(source)
    expected = reference(source, preprocessing, images)
    if info["format"] == "saved_model":
        write_saved_model(model, folder, info["class_names"], preprocessing, info["eval_crop"], info["top_k"],
                          info["max_pixels"])
        return verify_saved_model(folder, images, expected, source, log, limit)
    write = write_litert if info["format"] == "litert" else write_onnx
    return write(model, preprocessing, folder, images, expected, source, log, limit)


def load_info(directory):
    """The ``xbn.json`` of an export folder (raises a clear error if absent)."""
    if not Path(directory).exists():
        raise FileNotFoundError(f"the export folder {directory} does not exist.")
    path = Path(directory) / INFO_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory} is not an xbn export (it has no {INFO_FILE}); create one with xbn-export."
        )
    return json.loads(path.read_text())
