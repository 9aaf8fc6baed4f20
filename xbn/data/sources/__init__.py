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
:mod:`~xbn.data.sources.loading`'s :func:`load_source` (opening a spec
with its separate validation and test data); one module per kind registers
itself.
"""

import importlib

from xbn.data.sources.base import (
    CACHE_LIMIT,
    PHOTO_DEFAULTS,
    SCAN_DEFAULTS,
    SPLIT_SEED,
    DataSource,
    SourceKind,
    Split,
)
from xbn.data.sources.loading import load_source
from xbn.data.sources.records import data_record, is_recorded, open_recorded
from xbn.data.sources.registry import (
    SOURCE_MODULES,
    check_data_args,
    data_help,
    parse_spec,
    register_source,
    source_kinds,
)
from xbn.data.sources.splits import array_split, hold_out, refuse_bad, stratified_split

__all__ = [
    "CACHE_LIMIT", "PHOTO_DEFAULTS", "SCAN_DEFAULTS", "SPLIT_SEED", "SOURCE_MODULES", "DataSource",
    "SourceKind", "Split", "array_split", "check_data_args", "data_help", "data_record", "hold_out",
    "is_recorded", "load_source", "open_recorded", "parse_spec", "refuse_bad", "register_source", "source_kinds",
    "stratified_split",
]


for _module in SOURCE_MODULES:
    importlib.import_module(_module)
