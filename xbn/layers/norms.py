"""The norm table: every kind of normalization and convolution, registered once.

Model builders never name a norm layer class.  They describe each position
of a network with a :class:`NormSpec` (a registered *kind* and its options)
and ask :func:`make_norm` for the layer, as timm's ``create_norm`` does; a
variant names its convolution class (``Conv2D``, or ``WSConv2D`` for weight
standardization) as an object, as timm passes ``block=Bottleneck``.  Everything
else that must know what a kind *is* asks this table too: folding
(:mod:`xbn.fold`), BatchNorm statistics, precise BN and the estimation
shift all call :func:`is_batch_norm`.

Kinds registered here:

=========  =====================================================  ==========
kind       layer                                                  batch stats
=========  =====================================================  ==========
``bn``     :class:`~xbn.layers.BatchNorm`                          yes
``brn``    :class:`~xbn.layers.BatchNorm` with ``renorm=True``     yes
           (batch renormalization, Ioffe 2017)
``gn``     :class:`~xbn.layers.GroupNorm`                          no
``none``   ``keras.layers.Identity`` (no normalization)            no
=========  =====================================================  ==========

Adding a kind is one :func:`register_norm` call, usually beside the layer's
class; every family and variant can then use it.

Group counts that do not divide the channels
--------------------------------------------
MobileNetV2's widths follow ``_make_divisible(v, 8)``, so a requested group
count need not divide a layer's channels (16 groups against 24 channels at
``alpha=0.75``).  :func:`resolve_groups` then uses the **largest group count
that divides the channels and is no larger than requested** (12 for 24
channels and 16 requested); the GroupNorm layer's config records the count
actually used and the one requested (``requested_groups``), and the model
builder warns once, naming both.  Asking for more groups than channels caps
the count at the channel count (InstanceNorm), as the XBNBlock code does.
"""

import dataclasses
import inspect
from typing import Callable

import keras

from xbn import _checks
from xbn.errors import UsageError, UsageTypeError
from xbn.layers.batch_norm import BatchNorm
from xbn.layers.group_norm import GroupNorm


@dataclasses.dataclass(frozen=True)
class NormKind:
    """A registered kind of normalization.

    Attributes:
        name: the kind (``"bn"``).
        build: ``build(channels, name, axis, **options)`` returns the layer.
        options: the options a spec of this kind may set, with their defaults.
        batch_statistics: whether its layers normalize with statistics of the
            batch in training and keep moving averages for inference (what
            folding, precise BN and the estimation shift look for).
        layer_class: the class its layers are instances of.
        tag: the short name that replaces ``bn`` in a keras.applications
            BatchNorm name at this position (``conv2_block1_2_gn``); ``None``
            keeps the BatchNorm name.
        description: one line for listings.
    """

    name: str
    build: Callable
    options: dict
    batch_statistics: bool
    layer_class: type
    tag: str = None
    description: str = ""


_NORMS = {}


def register_norm(name, build, *, options, batch_statistics, layer_class, tag=None, description=""):
    """Register a norm kind (see :class:`NormKind`); returns it."""
    if name in _NORMS:
        raise UsageError(f"register_norm: the norm kind {name!r} is already registered.")
    kind = NormKind(name, build, dict(options), batch_statistics, layer_class, tag, description)
    _NORMS[name] = kind
    return kind


def norm_kinds():
    """The registered norm kinds, in registration order."""
    return tuple(_NORMS)


def norm_kind(name):
    """The :class:`NormKind` registered as ``name``."""
    _checks.check_choice("NormSpec", "kind", name, norm_kinds())
    return _NORMS[name]


@dataclasses.dataclass(frozen=True, init=False)
class NormSpec:
    """How to normalize at one position: a registered kind and its options.

    Only the options the kind takes are accepted (a GroupNorm has no
    momentum), and every option left out takes the kind's default.

    >>> NormSpec("gn", groups=64, epsilon=1e-5)
    NormSpec('gn', epsilon=1e-05, groups=64)
    >>> NormSpec("bn", groups=2)
    Traceback (most recent call last):
    ...
    xbn.errors.UsageError: NormSpec: the norm kind 'bn' takes no option 'groups'; its options are ...
    """

    kind: str
    options: tuple  # ((name, value), ...), sorted by name

    def __init__(self, kind="bn", **options):
        defaults = norm_kind(kind).options
        for key in options:
            if key not in defaults:
                raise UsageError(
                    f"NormSpec: the norm kind {kind!r} takes no option {key!r}; its options "
                    f"are {', '.join(defaults) or 'none'}."
                )
        object.__setattr__(self, "kind", kind)  # frozen: set once, here
        object.__setattr__(self, "options", tuple(sorted(options.items())))

    def resolved(self):
        """Every option of the kind, the spec's own over the defaults."""
        return {**_NORMS[self.kind].options, **dict(self.options)}

    def replace(self, kind=None, **options):
        """A spec with ``options`` changed (only those the kind takes, when the
        kind changes too: options the new kind lacks are dropped)."""
        if kind is None or kind == self.kind:
            return NormSpec(self.kind, **{**dict(self.options), **options})
        keep = {k: v for k, v in self.options if k in norm_kind(kind).options}
        return NormSpec(kind, **{**keep, **options})

    def __repr__(self):
        options = "".join(f", {k}={v!r}" for k, v in self.options)
        return f"NormSpec({self.kind!r}{options})"


def resolve_groups(requested, channels):
    """The largest divisor of ``channels`` that is at most ``requested``.

    >>> resolve_groups(16, 24), resolve_groups(64, 64), resolve_groups(64, 32)
    (12, 64, 32)
    """
    requested = _checks.check_int("resolve_groups", "requested", requested, minimum=1)
    channels = _checks.check_int("resolve_groups", "channels", channels, minimum=1)
    for groups in range(min(requested, channels), 0, -1):
        if channels % groups == 0:
            return groups
    raise AssertionError("unreachable: 1 divides every channel count")


def layer_name(bn_name, tag):
    """The name of the ``tag`` layer at the position of the BatchNorm ``bn_name``.

    Keeps keras.applications' spelling style: ``conv2_block1_2_bn`` ->
    ``conv2_block1_2_gn``, ``block_3_depthwise_BN`` -> ``block_3_depthwise_GN``,
    ``bn_Conv1`` -> ``gn_Conv1``.
    """
    if tag is None:
        return bn_name
    for old, new in (("_bn", f"_{tag}"), ("_BN", f"_{tag.upper()}")):
        if bn_name.endswith(old):
            return bn_name[: -len(old)] + new
    if bn_name.startswith("bn_"):
        return f"{tag}_" + bn_name[3:]
    return f"{bn_name}_{tag}"


def gn_name(bn_name):
    """The name of the GroupNorm that replaces the BatchNorm ``bn_name``."""
    return layer_name(bn_name, "gn")


def make_norm(spec, channels, name, axis=-1):
    """The normalization layer ``spec`` describes, for ``channels`` channels.

    Args:
        spec: a :class:`NormSpec`.
        channels: the channel count of the input (for GroupNorm's groups).
        name: the BatchNorm name keras.applications uses at this position;
            other kinds get :func:`layer_name` of it with their tag.
        axis: the channel axis.
    """
    if not isinstance(spec, NormSpec):
        raise UsageTypeError(f"make_norm: `spec` must be a NormSpec; got {spec!r}.")
    kind = _NORMS[spec.kind]
    return kind.build(channels, layer_name(name, kind.tag), axis, **spec.resolved())


def is_batch_norm(layer):
    """Whether ``layer`` normalizes with batch statistics and keeps moving
    averages: the layers of every kind registered with
    ``batch_statistics=True``, and keras' own ``BatchNormalization``."""
    classes = tuple(k.layer_class for k in _NORMS.values() if k.batch_statistics)
    return isinstance(layer, classes + (keras.layers.BatchNormalization,))


def _batch_norm(channels, name, axis, **options):
    return BatchNorm(axis=axis, name=name, **options)


def _batch_renorm(channels, name, axis, **options):
    return BatchNorm(axis=axis, name=name, renorm=True, **options)


def _group_norm(channels, name, axis, groups, epsilon):
    used = resolve_groups(groups, channels)
    return GroupNorm(groups=used, axis=axis, epsilon=epsilon, name=name,
                     requested_groups=None if used == groups else groups)


def _identity(channels, name, axis):
    return keras.layers.Identity(name=name)


def _defaults(function, *names):
    parameters = inspect.signature(function).parameters
    return {name: parameters[name].default for name in names}


_BN_OPTIONS = ("epsilon", "momentum", "synchronized")
register_norm(
    "bn", _batch_norm, options=_defaults(BatchNorm.__init__, *_BN_OPTIONS),
    batch_statistics=True, layer_class=BatchNorm, description="BatchNorm",
)
register_norm(
    "brn", _batch_renorm,
    options=_defaults(BatchNorm.__init__, *_BN_OPTIONS, "renorm_clipping", "renorm_momentum", "renorm_ramp"),
    batch_statistics=True, layer_class=BatchNorm,
    description="batch renormalization (BatchNorm with renorm=True)",
)
register_norm(
    "gn", _group_norm, options={"groups": 32, "epsilon": 1e-5}, batch_statistics=False,
    layer_class=GroupNorm, tag="gn", description="GroupNorm",
)
register_norm(
    "none", _identity, options={}, batch_statistics=False, layer_class=keras.layers.Identity,
    tag="id", description="no normalization (identity)",
)
