"""The registry of source kinds: registration, spec parsing, option checks
and ``--data``'s help text."""

from xbn import _checks
from xbn.data.sources.base import PHOTO_DEFAULTS, SourceKind
from xbn.errors import UsageError

_SOURCES = {}
# The modules that register the built-in sources (one line per source).
SOURCE_MODULES = (
    "xbn.data.sources.digits",
    "xbn.data.sources.digits_m",
    "xbn.data.sources.mnist",
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
            raise UsageError(f"register_source: the source {name!r} is already registered.")
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
        raise UsageError(f"`data` must be a non-empty string such as 'digits'; got {spec!r}.")
    name, _, arg = spec.partition(":")
    if name not in _SOURCES:
        usages = ", ".join(_usage(kind) for kind in _SOURCES.values())
        raise UsageError(f"`data` {spec!r}: unknown source {name!r}. Use one of: {usages}.")
    kind = _SOURCES[name]
    if kind.argument and not arg:
        raise UsageError(
            f"`data` {spec!r}: {name} needs an argument, e.g. {name}:{kind.example}."
        )
    if not kind.argument and arg:
        raise UsageError(f"`data` {spec!r}: {name} takes no argument; use `data` {name}.")
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
            raise UsageError(
                f"`data_args` {key}: the {name} source takes no option {key!r}"
                f"{_checks.close_match(key, kind.options)}. Its "
                f"options: {known}."
            )
    return {key: data_args.get(key, default) for key, (default, _) in kind.options.items()}
