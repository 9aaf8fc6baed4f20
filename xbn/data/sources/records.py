"""What a run trained on, as runs and exports record it, and reopening it
with the same splits and options."""
from xbn.errors import UsageError


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
                  where="this model", data_args=None):
    """Open the data a run or an export recorded (:func:`data_record`), or
    ``data`` instead: the recorded data comes back with the same splits and
    options, so its held-out split is the one training never saw; other data
    is opened whole (``val_split`` 0 unless given).

    ``data_args`` are the source's options (``{"renders": (1, 1, 1)}``):
    the recorded data with options other than its own is other data.

    Returns ``(source, own)``; ``own`` says whether it is the recorded data.
    ``where`` names the run or export in the error raised when nothing is
    recorded and no ``data`` is given.
    """
    from xbn.data.sources.loading import load_source as _load

    record = record or {}
    data = data or record.get("spec")
    if data is None:
        raise UsageError(
            f"{where} does not record the data it was trained on (it was not made from an "
            "xbn-train run folder); say which data to use with `data`."
        )
    own = is_recorded(record, data, data_args)
    if own:
        source = _load(
            data, val_split=record.get("val_split", 0.1) if val_split is None else val_split,
            val_data=record.get("val_data"), test_data=record.get("test_data"),
            skip_bad_images=skip_bad_images, data_args=record.get("data_args"), progress=progress,
        )
    else:
        source = _load(
            data, val_split=0.0 if val_split is None else val_split,
            skip_bad_images=skip_bad_images, data_args=data_args, progress=progress,
        )
    return source, own


def is_recorded(record, data, data_args=None):
    """Whether ``data`` with ``data_args`` (``None``: any) is the data
    ``record`` holds, options included."""
    record = record or {}
    return data == record.get("spec") and (data_args is None or _as_json(data_args) == _as_json(
        record.get("data_args") or {}))  # a record read from JSON has lists where the caller may give tuples


def _as_json(options):
    import json

    return json.loads(json.dumps(dict(options), sort_keys=True))
