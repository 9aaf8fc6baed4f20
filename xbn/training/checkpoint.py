"""Checkpoints that survive ``kill -9``.

Each finished epoch is saved as a folder ``checkpoints/epoch-NNNN`` holding
the model weights, the optimizer's variables and the run state (history),
built under a temporary name and renamed into place; only then is the
pointer ``checkpoints/latest.json`` replaced (atomically).  A crash at any
moment leaves the pointer on a complete checkpoint.  The two newest are
kept.
"""

import json
import shutil
from pathlib import Path

import keras
import numpy as np

from xbn import _files
from xbn.errors import UsageError

KEEP = 2


def save(directory, epoch, model, optimizer, state):
    """Write the checkpoint of ``epoch`` (finished epochs) and point at it."""
    directory = Path(directory)
    name = f"epoch-{epoch:04d}"
    with _files.atomic_directory(directory / name, overwrite=True) as tmp:
        model.save_weights(tmp / "model.weights.h5")
        arrays = {f"v{i:05d}": keras.ops.convert_to_numpy(v.value) for i, v in enumerate(optimizer.variables)}
        with open(tmp / "optimizer.npz", "wb") as handle:
            np.savez(handle, **arrays)
        (tmp / "state.json").write_text(json.dumps({"epoch": epoch, **state}, indent=1))
    _files.atomic_write_text(directory / "latest.json", json.dumps({"epoch": epoch, "path": name}))
    for old in sorted(directory.glob("epoch-*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)


def latest(directory):
    """The newest complete checkpoint folder, or None."""
    pointer = Path(directory) / "latest.json"
    if not pointer.exists():
        return None
    info = json.loads(pointer.read_text())
    path = Path(directory) / info["path"]
    return path if (path / "state.json").exists() else None


def read_state(path):
    """The run state (``epoch``, history) a checkpoint folder holds."""
    return json.loads((Path(path) / "state.json").read_text())


def restore(path, model, optimizer=None):
    """Load a checkpoint folder into ``model`` and ``optimizer`` (``None``:
    the model's weights only, e.g. where a new training phase starts with a
    fresh optimizer); returns its state."""
    path = Path(path)
    model.load_weights(path / "model.weights.h5")
    if optimizer is None:
        return read_state(path)
    with np.load(path / "optimizer.npz") as arrays:
        values = [arrays[k] for k in sorted(arrays.files)]
    if len(values) != len(optimizer.variables):
        raise UsageError(
            f"checkpoint {path}: it holds {len(values)} optimizer variables, the optimizer "
            f"has {len(optimizer.variables)}; was it written with other settings?"
        )
    for variable, value in zip(optimizer.variables, values):
        variable.assign(value)
    return read_state(path)
