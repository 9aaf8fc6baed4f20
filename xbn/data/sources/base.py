"""The data classes every source returns (:class:`Split`, :class:`DataSource`),
the registry's record of a kind (:class:`SourceKind`), and the constants the
sources share."""

import dataclasses
from typing import Callable

from xbn.data import images
from xbn.errors import UsageError

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
    image_defaults: dict = None  # its kind's (SourceKind.image_defaults), set by load_source

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def defaults(self):
        """The ``crop_scale``, ``flip``, ``eval_crop`` and ``cache`` this data needs
        where a run leaves them unset: its kind's registered image defaults
        (:data:`PHOTO_DEFAULTS` or :data:`SCAN_DEFAULTS`, recorded by
        :func:`xbn.data.sources.load_source`; photos' for a source built
        outside it), and a cache when the decoded images fit in
        :data:`CACHE_LIMIT`."""
        base = self.image_defaults or PHOTO_DEFAULTS
        cache = self.decoded_bytes is not None and self.decoded_bytes <= CACHE_LIMIT
        return {**base, "cache": cache}

    def split(self, name):
        if name not in self.splits:
            raise UsageError(
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
