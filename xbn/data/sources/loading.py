"""Opening a ``--data`` spec with its separate validation and test data."""

import dataclasses

from xbn import _checks
from xbn.data.sources.registry import _SOURCES, check_data_args, parse_spec
from xbn.errors import UsageError


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
    source.image_defaults = dict(_SOURCES[name].image_defaults)
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
