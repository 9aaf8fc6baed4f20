"""The ``--data`` sources: where images and labels come from.

A source is named by a spec string ``KIND`` or ``KIND:ARGUMENT`` and takes
options as ``--data-arg KEY=VALUE`` (``data_args`` in a recipe).  Each kind
is one module of this package that registers itself with
:func:`register_source`; ``xbn-train --help`` lists them from the registry
(:func:`data_help`).

Every source yields, per split, a :class:`Split` whose dataset produces
``(image, label)`` with ``image`` a decoded ``uint8 [H, W, 3]`` tensor (or
``float32`` with values in 0..255 for sources that store floats; sizes may
vary) and ``label`` an ``int32``, always in the same order.  A source
without a validation split of its own holds one out with :func:`hold_out`,
the same way for every source.
"""

import dataclasses
import importlib
from typing import Callable

import numpy as np

from xbn import _checks
from xbn.data import images

SPLIT_SEED = 20220301  # the fixed seed of every train/val/test split

# The augmentation and caching each kind of image needs, used for every
# setting left unset (None): photos take Inception-style crops and flips and
# ImageNet's 87.5% central crop; small scans (digits) have no border to spare
# and are not mirror-symmetric.
PHOTO_DEFAULTS = {"crop_scale": (0.08, 1.0), "flip": True, "eval_crop": 0.875}
SCAN_DEFAULTS = {"crop_scale": (0.6, 1.0), "flip": False, "eval_crop": 1.0}
# Decoded images are cached in memory by default when they fit in this.
CACHE_LIMIT = 2**30


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
            (``"`val_data` folder:/data/val"``), to name it in errors.
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
    """An opened ``--data`` spec: class names and splits."""

    spec: str
    kind: str
    class_names: list
    splits: dict
    skipped: list = dataclasses.field(default_factory=list)  # [(path, reason)]
    decoded_bytes: int = None  # of every split's images decoded, where known

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def defaults(self):
        """The ``crop_scale``, ``flip``, ``eval_crop`` and ``cache`` this data needs
        where a run leaves them unset: its kind's registered image defaults
        (:data:`PHOTO_DEFAULTS` or :data:`SCAN_DEFAULTS`; photos' for a
        source built outside the registry), and a cache when the decoded
        images fit in :data:`CACHE_LIMIT`."""
        kind = _SOURCES.get(self.kind)
        base = kind.image_defaults if kind else PHOTO_DEFAULTS
        cache = self.decoded_bytes is not None and self.decoded_bytes <= CACHE_LIMIT
        return {**base, "cache": cache}

    def split(self, name):
        if name not in self.splits:
            raise ValueError(
                f"`data` {self.spec}: there is no {name!r} split (it has "
                f"{', '.join(self.splits)})."
            )
        return self.splits[name]


@dataclasses.dataclass(frozen=True)
class SourceKind:
    """A registered kind of source.

    Attributes:
        name: the spec's kind (``"folder"``).
        open: ``open(spec, argument, val_split=, skip_bad_images=, progress=,
            **options)`` returns a :class:`DataSource`.
        argument: what follows the colon (``"PATH"``), or ``None`` for kinds
            that take none.
        example: an example argument, for error messages.
        options: ``{name: (default, help)}`` of its ``--data-arg`` options.
        image_defaults: the augmentation defaults of its images.
        description: one line for ``--help``.
    """

    name: str
    open: Callable
    argument: str = None
    example: str = None
    options: dict = dataclasses.field(default_factory=dict)
    image_defaults: dict = dataclasses.field(default_factory=lambda: dict(PHOTO_DEFAULTS))
    description: str = ""


_SOURCES = {}
# The modules that register the built-in sources (one line per source).
SOURCE_MODULES = (
    "xbn.data.sources.digits",
    "xbn.data.sources.digits_m",
    "xbn.data.sources.folder",
    "xbn.data.sources.tfrecord",
    "xbn.data.sources.tfds",
    "xbn.data.sources.synthetic",
    "xbn.data.sources.numpy_file",
)


def register_source(name, *, argument=None, example=None, options=None, image_defaults=None,
                    description=""):
    """Decorator registering ``open`` as the source kind ``name`` (see :class:`SourceKind`)."""

    def decorate(open_source):
        if name in _SOURCES:
            raise ValueError(f"register_source: the source {name!r} is already registered.")
        _SOURCES[name] = SourceKind(
            name, open_source, argument, example, dict(options or {}),
            dict(image_defaults or PHOTO_DEFAULTS), description,
        )
        return open_source

    return decorate


def source_kinds():
    """The registered source kinds, in registration order."""
    return tuple(_SOURCES)


def _usage(kind):
    return f"{kind.name}:{kind.argument}" if kind.argument else kind.name


def data_help():
    """``--data``'s help: every registered kind with its argument and options."""
    parts = []
    for kind in _SOURCES.values():
        options = f" (--data-arg {', '.join(kind.options)})" if kind.options else ""
        parts.append(f"{_usage(kind)}: {kind.description}{options}")
    return "; ".join(parts)


def parse_spec(spec):
    """``"folder:/data/x"`` -> ``("folder", "/data/x")``; checks the kind."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"`data` must be a non-empty string such as 'digits'; got {spec!r}.")
    name, _, arg = spec.partition(":")
    if name not in _SOURCES:
        usages = ", ".join(_usage(kind) for kind in _SOURCES.values())
        raise ValueError(f"`data` {spec!r}: unknown source {name!r}. Use one of: {usages}.")
    kind = _SOURCES[name]
    if kind.argument and not arg:
        raise ValueError(
            f"`data` {spec!r}: {name} needs an argument, e.g. {name}:{kind.example}."
        )
    if not kind.argument and arg:
        raise ValueError(f"`data` {spec!r}: {name} takes no argument; use `data` {name}.")
    return name, arg


def check_data_args(spec, data_args):
    """The options of ``spec``'s kind with ``data_args`` over the defaults;
    refuses options the kind does not take, naming those it does."""
    name, _ = parse_spec(spec)
    kind = _SOURCES[name]
    data_args = dict(data_args or {})
    for key in data_args:
        if key not in kind.options:
            known = ", ".join(kind.options) or "none"
            raise ValueError(
                f"`data_args` {key}: the {name} source takes no option {key!r}"
                f"{_checks.close_match(key, kind.options)}. Its "
                f"options: {known}."
            )
    return {key: data_args.get(key, default) for key, (default, _) in kind.options.items()}


def load_source(
    spec,
    *,
    val_split=0.1,
    val_data=None,
    test_data=None,
    skip_bad_images=False,
    data_args=None,
    progress=None,
):
    """Open the source named by ``spec`` (see the module docstring).

    Args:
        spec: the ``--data`` value.
        val_split: fraction of each class held out for validation when the
            source has no validation split of its own and ``val_data`` is
            not given.
        val_data, test_data: specs of separate validation/test sources of the
            same classes (of the same kind's options).
        skip_bad_images: drop files that are not decodable images (and
            report them in ``DataSource.skipped``) instead of failing.
        data_args: the source's options (``--data-arg``), e.g.
            ``{"label_offset": -1}`` for 1-based TFRecords.
        progress: optional callable ``progress(message)`` for long scans.

    Returns:
        A :class:`DataSource` with ``train`` and ``val`` splits, and ``test``
        where there is one.
    """
    val_split = _checks.check_float("load_source", "val_split", val_split, minimum=0.0, maximum=0.9)
    name, arg = parse_spec(spec)
    options = check_data_args(spec, data_args)
    source = _SOURCES[name].open(
        spec, arg, val_split=val_split, skip_bad_images=skip_bad_images, progress=progress,
        **options,
    )
    for split in source.splits.values():
        split.origin = split.origin or f"`data` {spec}"
    for role, other in (("val", val_data), ("test", test_data)):
        if other:
            same_kind = parse_spec(other)[0] == name
            extra = load_source(
                other, val_split=0.0, skip_bad_images=skip_bad_images,
                data_args=data_args if same_kind else None, progress=progress,
            )
            if extra.class_names != source.class_names:
                raise ValueError(
                    f"`{role}_data` {other}: its classes {extra.class_names[:10]} differ from "
                    f"those of `data` {spec}: {source.class_names[:10]}."
                )
            split = extra.splits["train"]
            source.splits[role] = dataclasses.replace(split, name=role, origin=f"`{role}_data` {other}")
            source.skipped += extra.skipped
    for split_name, split in source.splits.items():
        if split.size == 0:
            raise ValueError(f"`data` {spec}: the {split_name} split is empty.")
    return source


def data_record(settings):
    """What a run's settings say about its data, in the form exports record
    (``xbn.json``'s ``data``) and :func:`open_recorded` reads; ``None`` for
    settings without data."""
    if not settings or "data" not in settings:
        return None
    return {
        "spec": settings["data"], "val_split": settings.get("val_split", 0.1),
        "val_data": settings.get("val_data"), "test_data": settings.get("test_data"),
        "data_args": dict(settings.get("data_args") or {}),
    }


def open_recorded(record, data=None, val_split=None, skip_bad_images=False, progress=None,
                  where="this model"):
    """Open the data a run or an export recorded (:func:`data_record`), or
    ``data`` instead: the recorded data comes back with the same splits and
    options, so its held-out split is the one training never saw; other data
    is opened whole (``val_split`` 0 unless given).

    Returns ``(source, own)``; ``own`` says whether it is the recorded data.
    ``where`` names the run or export in the error raised when nothing is
    recorded and no ``data`` is given.
    """
    record = record or {}
    data = data or record.get("spec")
    if data is None:
        raise ValueError(
            f"{where} does not record the data it was trained on (it was not made from an "
            "xbn-train run folder); say which data to use with `data`."
        )
    own = data == record.get("spec")
    if own:
        source = load_source(
            data, val_split=record.get("val_split", 0.1) if val_split is None else val_split,
            val_data=record.get("val_data"), test_data=record.get("test_data"),
            skip_bad_images=skip_bad_images, data_args=record.get("data_args"), progress=progress,
        )
    else:
        source = load_source(
            data, val_split=0.0 if val_split is None else val_split,
            skip_bad_images=skip_bad_images, progress=progress,
        )
    return source, own


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


for _module in SOURCE_MODULES:
    importlib.import_module(_module)
