"""One registry of model names, read by the library, the scripts, the
recipes and the tests (timm's ``@register_model``).

Each entry carries the model's *facts*, the things training, evaluation and
export need to know about it without restating them by hand: its family,
its normalization variant, its default input size and its preprocessing mode
(as in ``keras.applications``: ``"caffe"`` for ResNets, ``"tf"`` for
MobileNetV2); and how it is built: its family's :class:`Network` and its
configuration (a ``ResNetConfig`` row, say), which :func:`build` turns into
a model.  Every registered builder's body is that one call::

    @register_model(family="resnet", variant="xbn", network=RESNET, config=RESNET50, ...)
    def resnet50_xbn(include_top=True, weights=None, ..., xbn_groups=64, ...):
        return build(resnet50_xbn, locals())
"""

import dataclasses
import re
from typing import Any, Callable

from xbn import _checks
from xbn.errors import UsageError, UsageTypeError

PREPROCESSING_MODES = ("caffe", "tf", "torch")
VARIANTS = ("vanilla", "xbn", "gnws")


@dataclasses.dataclass(frozen=True)
class ModelFacts:
    """What the rest of xbn knows about a registered model.

    Attributes:
        name: the registered name (``"resnet50_xbn"``).
        family: ``"resnet"``, ``"resnext"``, ``"resnet_cifar"``, ``"mobilenetv2"``
            or ``"shufflenetv2"``.
        variant: ``"vanilla"``, ``"xbn"`` (XBNBlock) or ``"gnws"`` (GN+WS).
        default_size: the side of the square input it was designed for.
        preprocessing: the ``keras.applications`` preprocessing mode.
        description: one line for listings.
        keras_application: the ``keras.applications`` builder the model is
            layer for layer equal to (``"ResNet50"``), or ``None``.
        small_args: builder arguments for small inputs (32 to 64 pixels: the
            digits job, the study, quick benchmarks), e.g. MobileNetV2's
            ``{"alpha": 0.35}``.
        min_size: the smallest input side it takes (keras.applications'
            32; the CIFAR ResNets 8, two pixels at their last stage).
    """

    name: str
    family: str
    variant: str
    default_size: int
    preprocessing: str
    description: str
    keras_application: str = None
    small_args: dict = dataclasses.field(default_factory=dict)
    min_size: int = 32

    def as_dict(self):
        return dataclasses.asdict(self)

    @property
    def base(self):
        """The name without its variant suffix (``resnet50_xbn`` -> ``resnet50``)."""
        suffix = f"_{self.variant}"
        return self.name[: -len(suffix)] if self.name.endswith(suffix) else self.name


@dataclasses.dataclass(frozen=True)
class Network:
    """How a family's networks are built, for :func:`build` (one per family module).

    Attributes:
        trunk: ``trunk(inputs, config, norms, owner, **own) -> (x, features)``:
            the network from its input to its last feature map, ``own`` being
            the family's own builder arguments (MobileNetV2's ``alpha``) and
            ``owner`` the builder's name, for errors;
            ``features`` maps each stride (4, 8, ...) to the last feature map
            at that stride, in order (what ``features_only=True`` returns).
        layout: ``layout(config, layout, owner) -> (config, bn)``: the
            configuration in ``layout`` (``None``: its default) and the
            BatchNorm spec of that layout.
        xbn_roles: ``xbn_roles(config, args, owner) -> roles``: the norm roles
            the XBNBlock rule makes GroupNorms; takes (pops) the family's own
            XBN arguments from ``args`` (ResNet's ``xbn_position``).
        head: ``head(config, own) -> dict``: the classifier's
            :func:`xbn.models.common.classifier_top` options (``use_bias``,
            ``dropout``) of that configuration.
    """

    trunk: Callable
    layout: Callable
    xbn_roles: Callable
    head: Callable = lambda config, own: {}


@dataclasses.dataclass(frozen=True)
class _Entry:
    builder: Callable
    facts: ModelFacts
    network: Network
    config: Any


_REGISTRY = {}


def register_model(
    *, family, variant, network, default_size, preprocessing, description, config=None,
    keras_application=None, small_args=None, min_size=32, doc=None,
):
    """Decorator registering a builder under its function name (see :class:`ModelFacts`).

    Every family registers its public builders this one way: an explicit
    keras.applications-style signature whose body is ``return
    build(NAME, locals())``, decorated with its facts, its family's
    :class:`Network`, its ``config`` (what the network builds: a table row
    such as ``RESNET50``) and ``doc``, the docstring (a family formats one
    shared template per model, so ``help()``, editors and
    ``inspect.signature`` all see the real thing).
    """
    if variant not in VARIANTS:
        raise UsageError(f"register_model: variant must be one of {VARIANTS}; got {variant!r}")
    if preprocessing not in PREPROCESSING_MODES:
        raise UsageError(
            f"register_model: preprocessing must be one of {PREPROCESSING_MODES}; "
            f"got {preprocessing!r}"
        )
    if not isinstance(network, Network):
        raise UsageTypeError(f"register_model: `network` must be a Network; got {network!r}.")

    def decorate(builder):
        name = builder.__name__
        if name in _REGISTRY:
            raise UsageError(f"register_model: {name!r} is already registered")
        facts = ModelFacts(
            name, family, variant, default_size, preprocessing, description, keras_application,
            dict(small_args or {}), min_size,
        )
        _REGISTRY[name] = _Entry(builder, facts, network, config)
        builder.facts = facts
        if doc is not None:
            builder.__doc__ = doc
        return builder

    return decorate


def registration(name):
    """``(facts, network, config)`` of the registered model ``name``."""
    entry = _entry(name)
    return entry.facts, entry.network, entry.config


def _natural_key(name):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_models(family=None, variant=None):
    """The registered model names in natural order (resnet50 before resnet101).

    Args:
        family: only the models of this family (``"resnet"``, ``"mobilenetv2"``, ...).
        variant: only the models of this variant (``"vanilla"``, ``"xbn"``, ``"gnws"``).

    >>> list_models(family="mobilenetv2")
    ['mobilenetv2', 'mobilenetv2_gnws', 'mobilenetv2_xbn']
    >>> list_models(family="resnext", variant="xbn")
    ['resnext50_32x4d_xbn', 'resnext101_32x8d_xbn']
    """
    if variant is not None and variant not in VARIANTS:
        raise UsageError(f"list_models: variant must be one of {VARIANTS}; got {variant!r}.")
    names = [
        name for name, entry in _REGISTRY.items()
        if (family is None or entry.facts.family == family) and (variant is None or entry.facts.variant == variant)
    ]
    if family is not None and not names and not any(e.facts.family == family for e in _REGISTRY.values()):
        families = sorted({e.facts.family for e in _REGISTRY.values()})
        raise UsageError(f"list_models: unknown family {family!r}; the families are {', '.join(families)}.")
    return sorted(names, key=_natural_key)


def twin(name, variant):
    """The registered ``variant`` form of the model ``name`` (``twin("resnet50",
    "xbn")`` -> ``"resnet50_xbn"``), or ``None`` where there is none."""
    base = _entry(name).facts.base
    for other, entry in _REGISTRY.items():
        if entry.facts.base == base and entry.facts.variant == variant:
            return other
    return None


def unregister_model(name):
    """Remove ``name`` from the registry (models registered by plugins or tests)."""
    _entry(name)
    del _REGISTRY[name]


def _entry(name):
    if not isinstance(name, str) or name not in _REGISTRY:
        raise UsageError(
            f"Unknown model {name!r}. The registered models are: {', '.join(list_models())}."
        )
    return _REGISTRY[name]


def get_builder(name):
    """The builder function registered as ``name``."""
    return _entry(name).builder


def check_arguments(name, kwargs, exclude=(), flag="argument"):
    """Raise a ``ValueError`` naming every argument of ``kwargs`` that the
    builder of ``name`` does not take, with a close match and the list of
    those it does take (``exclude``: arguments not to offer)."""
    import inspect

    parameters = inspect.signature(get_builder(name)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    known = [p for p in parameters if p not in exclude]
    for key in kwargs:
        if key not in parameters:
            raise UsageError(
                f"{flag} {key}: {name} takes no argument {key!r}{_checks.close_match(key, known)}. Its arguments: "
                f"{', '.join(known)}."
            )


def get_model(name, /, **kwargs):
    """Build the registered model ``name`` with the builder's keyword arguments
    (``name=`` among them names the keras model: ``get_model("resnet50",
    name="backbone")``).

    >>> from xbn.models import get_model
    >>> model = get_model("mobilenetv2_xbn", alpha=0.35, input_shape=(32, 32, 3), classes=10)
    >>> model.name, model.output_shape
    ('mobilenetv2_xbn', (None, 10))
    """
    check_arguments(name, kwargs)
    return get_builder(name)(**kwargs)


def model_facts(model_or_name):
    """The :class:`ModelFacts` of a registered name or of a model built by xbn.

    A model is looked up by its facts (a zoo model keeps its registered name
    in its config, so they survive a ``.keras`` round trip and any
    ``name=``), else by its name.
    """
    if isinstance(model_or_name, str):
        return _entry(model_or_name).facts
    facts = getattr(model_or_name, "xbn_facts", None)
    if facts is not None:
        return facts
    name = getattr(model_or_name, "name", None)
    if name in _REGISTRY:
        return _REGISTRY[name].facts
    raise UsageError(
        f"model_facts: the model {name!r} was not built by an xbn builder and its name "
        f"is not a registered model; pass the registered name instead (one of "
        f"{', '.join(list_models())})."
    )
