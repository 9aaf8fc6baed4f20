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

The package is split by job: :mod:`~xbn.data.sources.base` (the data
classes), :mod:`~xbn.data.sources.registry` (kinds, specs, options),
:mod:`~xbn.data.sources.splits` (split arithmetic),
:mod:`~xbn.data.sources.records` (what a run trained on) and this module's
:func:`load_source` (opening a spec with its separate validation and test
data); one module per kind registers itself.
"""

import dataclasses
import importlib

from xbn import _checks
from xbn.data.sources.base import (
    CACHE_LIMIT,
    PHOTO_DEFAULTS,
    SCAN_DEFAULTS,
    SPLIT_SEED,
    DataSource,
    SourceKind,
    Split,
)
from xbn.data.sources.records import data_record, is_recorded, open_recorded
from xbn.data.sources.registry import (
    _SOURCES,
    SOURCE_MODULES,
    check_data_args,
    data_help,
    parse_spec,
    register_source,
    source_kinds,
)
from xbn.data.sources.splits import array_split, hold_out, refuse_bad, stratified_split
from xbn.errors import UsageError

__all__ = [
    "CACHE_LIMIT", "PHOTO_DEFAULTS", "SCAN_DEFAULTS", "SPLIT_SEED", "SOURCE_MODULES", "DataSource",
    "SourceKind", "Split", "array_split", "check_data_args", "data_help", "data_record", "hold_out",
    "is_recorded", "load_source", "open_recorded", "parse_spec", "refuse_bad", "register_source", "source_kinds",
    "stratified_split",
]


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
    val_split = _checks.check_float(f"`data` {spec}", "val_split", val_split, minimum=0.0, maximum=0.9)
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
                raise UsageError(
                    f"`{role}_data` {other}: its classes {extra.class_names[:10]} differ from "
                    f"those of `data` {spec}: {source.class_names[:10]}."
                )
            split = extra.splits["train"]
            source.splits[role] = dataclasses.replace(split, name=role, origin=f"`{role}_data` {other}")
            source.skipped += extra.skipped
    for split_name, split in source.splits.items():
        if split.size == 0:
            raise UsageError(f"`data` {spec}: the {split_name} split is empty.")
    return source


for _module in SOURCE_MODULES:
    importlib.import_module(_module)
