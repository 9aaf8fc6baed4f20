"""Moving weights between models layer by layer, by name.

keras.applications models, xbn's vanilla models and their XBN and GN+WS
twins name every layer the way keras.applications does, so weights can move
between any two of them by layer name: every layer the two share gets its
weights, and the report says which layers of the target were left at their
initial values (an XBN model's GroupNorms, say) and which source layers
found no home.

Three file formats are read, all without building the source model:

- Keras 3 ``.weights.h5`` files (``model.save_weights``);
- whole-model ``.keras`` files (``model.save``);
- legacy Keras 2 HDF5 weight files, such as keras' ImageNet files
  ``resnet50_weights_tf_dim_ordering_tf_kernels.h5``.
"""

import dataclasses
import io
import warnings
import zipfile
from pathlib import Path

import numpy as np

from xbn.errors import UsageError


@dataclasses.dataclass
class TransferReport:
    """What :func:`transfer_weights` or :func:`load_weights` did.

    Attributes:
        loaded: target layers that received weights.
        left_initial: target layers with weights that received none (no
            source layer of that name, or shapes that do not match: see
            ``mismatched``).
        mismatched: ``{layer: reason}`` for same-name layers whose weights
            did not fit.
        unused: source layers with weights that no target layer took.
    """

    loaded: list
    left_initial: list
    mismatched: dict
    unused: list

    def summary(self):
        parts = [f"{len(self.loaded)} layers loaded"]
        if self.left_initial:
            shown = ", ".join(self.left_initial[:6])
            more = f" and {len(self.left_initial) - 6} more" if len(self.left_initial) > 6 else ""
            parts.append(f"{len(self.left_initial)} left at their initial values ({shown}{more})")
        if self.unused:
            parts.append(f"{len(self.unused)} source layers unused")
        return "; ".join(parts)


def _layer_weights(model):
    """``{layer name: [arrays]}`` for the layers of a model that have weights."""
    return {layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in model.layers if layer.weights}


def _read_keras3_h5(handle):
    """Layer name -> arrays from a Keras 3 weights file (h5py File)."""
    found = {}

    def visit(path, obj):
        if path.endswith("/vars") or path == "vars":
            if len(obj.keys()) and "name" in obj.attrs:
                keys = sorted(obj.keys(), key=int)
                found[obj.attrs["name"]] = [np.asarray(obj[k]) for k in keys]

    handle.visititems(visit)
    return found


def _read_legacy_h5(handle):
    """Layer name -> arrays from a Keras 2 HDF5 weights file."""
    group = handle["model_weights"] if "model_weights" in handle else handle
    found = {}
    for raw in group.attrs["layer_names"]:
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        names = group[name].attrs.get("weight_names", [])
        arrays = [np.asarray(group[name][n.decode() if isinstance(n, bytes) else n]) for n in names]
        if arrays:
            found[name] = arrays
    return found


def read_weights(path):
    """``{layer name: [arrays]}`` from a ``.weights.h5``, ``.keras`` or legacy ``.h5`` file."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_weights: no such file: {path}")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if "model.weights.h5" not in archive.namelist():
                raise UsageError(
                    f"read_weights: {path} is a zip file but not a .keras model "
                    "(it has no model.weights.h5)."
                )
            data = io.BytesIO(archive.read("model.weights.h5"))
        with h5py.File(data, "r") as handle:
            return _read_keras3_h5(handle)
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise UsageError(
            f"read_weights: {path} is neither an HDF5 weights file (.weights.h5, .h5) "
            f"nor a .keras file: {error}"
        ) from None
    with handle:
        legacy = "layer_names" in handle.attrs or "model_weights" in handle
        return _read_legacy_h5(handle) if legacy else _read_keras3_h5(handle)


def transfer_weights(source, target):
    """Copy weights into ``target`` from every same-named layer of ``source``.

    Args:
        source: a keras model, or a ``{layer name: [arrays]}`` mapping (see
            :func:`read_weights`).
        target: the keras model to fill.

    Returns:
        A :class:`TransferReport`.
    """
    available = source if isinstance(source, dict) else _layer_weights(source)
    loaded, left, mismatched = [], [], {}
    used = set()
    for layer in target.layers:
        if not layer.weights:
            continue
        arrays = available.get(layer.name)
        if arrays is None:
            left.append(layer.name)
            continue
        wanted = [tuple(w.shape) for w in layer.weights]
        given = [tuple(a.shape) for a in arrays]
        if wanted != given:
            mismatched[layer.name] = f"expects shapes {wanted}, the source has {given}"
            left.append(layer.name)
            continue
        layer.set_weights(arrays)
        loaded.append(layer.name)
        used.add(layer.name)
    unused = [name for name in available if name not in used]
    return TransferReport(loaded, left, mismatched, unused)


def load_weights(model, path, strict=True):
    """Load a weights file into ``model`` by layer name and report.

    Warns (``UserWarning``) when some of the model's layers were left at
    their initial values, e.g. the GroupNorms of an XBN model loaded from a
    vanilla model's weights.  Raises when no layer matched, and, with
    ``strict`` (the default), when most layers found nothing of their name
    and shape: the file is then another model's, or the same model built
    with other arguments (another ``alpha``), and a model that is mostly
    untrained is no load at all.

    Args:
        model: the model to fill.
        path: a ``.weights.h5``, ``.keras`` or legacy ``.h5`` file.
        strict: refuse a load that leaves most layers untouched.

    Returns:
        A :class:`TransferReport`.
    """
    report = transfer_weights(read_weights(path), model)
    weighted = len(report.loaded) + len(report.left_initial)
    mismatched = "; ".join(f"{k}: {v}" for k, v in list(report.mismatched.items())[:2])
    detail = f" (e.g. {mismatched})" if mismatched else ""
    if not report.loaded:
        raise UsageError(
            f"load_weights: no layer of {model.name!r} matches a layer of {path} by name "
            f"and shape ({report.summary()}){detail}; is it a weights file of another model?"
        )
    if strict and 2 * len(report.loaded) < weighted:
        raise UsageError(
            f"load_weights: only {len(report.loaded)} of the {weighted} layers of {model.name!r} "
            f"with weights found weights of their name and shape in {path}{detail}. The file is "
            "of another model, or of this one built with other arguments (alpha, groups, "
            "layout); build the model as the weights were trained, or pass strict=False to "
            "load what fits anyway."
        )
    if report.left_initial:
        warnings.warn(f"Loaded {path} into {model.name!r}: {report.summary()}.", stacklevel=3)
    return report
