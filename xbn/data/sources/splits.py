"""The split arithmetic every source shares: stratified splits with a fixed
seed, the held-out validation split, in-memory splits and the refusal of
unreadable images."""

import numpy as np

from xbn.data import images
from xbn.data.sources.base import SPLIT_SEED, Split


def stratified_split(labels, fractions, seed=SPLIT_SEED):
    """Index arrays per split, the same fraction of every class in each."""
    rng = np.random.default_rng(seed)
    parts = [[] for _ in fractions]
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        bounds = np.round(np.cumsum(fractions)[:-1] * len(idx)).astype(int)
        for part, chunk in zip(parts, np.split(idx, bounds)):
            part.extend(chunk.tolist())
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def hold_out(labels, val_split, keep=None):
    """``(train indices, val indices)``: ``val_split`` of every class held out
    for validation, the same way for every source (a fixed seed, stratified);
    ``keep`` (a boolean mask) leaves examples out of both."""
    labels = np.asarray(labels)
    positions = np.arange(len(labels)) if keep is None else np.flatnonzero(keep)
    if val_split <= 0:
        return positions, np.asarray([], np.int64)
    train, val = stratified_split(labels[positions], (1.0 - val_split, val_split))
    return positions[train], positions[val]


def array_split(name, images_array, labels):
    """A split backed by in-memory images."""
    import tensorflow as tf

    def make():
        return tf.data.Dataset.from_tensor_slices((images_array, labels.astype(np.int32)))

    return Split(name, len(labels), make)


def refuse_bad(spec, bad, what="file"):
    """Raise :class:`~xbn.data.images.BadImageError` listing unreadable images."""
    listed = "; ".join(f"{where} ({why})" for where, why in bad[:3])
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    raise images.BadImageError(
        f"`data` {spec}: {len(bad)} unreadable image {what}(s): {listed}{more}. Remove or fix "
        "them, or pass `skip_bad_images` to train without them."
    )
