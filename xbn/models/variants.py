"""Vanilla, XBN and GN+WS written once, as rules over the roles a family declares.

A family builds its network from *roles*: ResNet's ``stem``, ``shortcut``
and its block's slots ``p1``, ``p2`` (and ``p3``), MobileNetV2's ``stem``,
``expand``, ``depthwise``, ``project`` and ``last``.  It asks a
:class:`Norms` for the norm at each role, and the variants below are the only
places that decide what goes there:

- :func:`vanilla`: the family's BatchNorm everywhere;
- :func:`xbn`: the XBNBlock rule (Huang et al., CVPR 2022): a batch-free
  GroupNorm at the roles the family names (one per block, and the stem),
  the family's BatchNorm everywhere else;
- :func:`gnws`: GroupNorm everywhere and weight-standardized convolutions
  (Qiao et al., 2019).

``bn_kind`` and ``bn_options`` (every builder's arguments of the same names)
change the BatchNorm positions of any variant: ``bn_kind="brn"`` makes them
batch renormalization, ``"none"`` removes them, and ``bn_options`` sets the
kind's options (``momentum``, ``synchronized``, ``renorm_clipping``, ...).
"""

import dataclasses

from xbn import _checks
from xbn.errors import UsageError, UsageTypeError
from xbn.layers import Conv2D, WSConv2D
from xbn.layers.norms import NormSpec, make_norm, norm_kind, norm_kinds

# The XBNBlock code uses torch's nn.GroupNorm defaults: epsilon 1e-5.
GN_EPSILON = 1e-5


@dataclasses.dataclass(frozen=True)
class Norms:
    """The norm at every role of a network, and its conv kind.

    Attributes:
        default: the spec of every role not in ``at``.
        at: ``((role, spec), ...)``: the roles that differ from the default.
        conv: the class of the regular convolutions (``Conv2D``, or
            ``WSConv2D`` for weight standardization).
    """

    default: NormSpec
    at: tuple = ()
    conv: type = Conv2D

    def spec(self, role):
        """The :class:`NormSpec` at ``role``."""
        return dict(self.at).get(role, self.default)

    def norm(self, role, channels, name, axis=-1):
        """The norm layer at ``role`` (``name``: keras.applications' BatchNorm name there)."""
        return make_norm(self.spec(role), channels, name, axis=axis)

    def conv_layer(self, filters, kernel_size, name, **kwargs):
        """A regular convolution of this variant's class."""
        return self.conv(filters, kernel_size, name=name, **kwargs)


def batch_norm(base, bn_kind="bn", bn_options=None, owner="model"):
    """The family's BatchNorm spec ``base`` turned into ``bn_kind`` with ``bn_options``.

    Errors name the builder (``owner``) and the argument.
    """
    _checks.check_choice(owner, "bn_kind", bn_kind, norm_kinds())
    if bn_options is None:
        bn_options = {}
    if not isinstance(bn_options, dict):
        raise UsageTypeError(
            f"{owner}: `bn_options` must be a dict of {bn_kind!r} options such as "
            f"{{'momentum': 0.9}}; got {bn_options!r}."
        )
    known = norm_kind(bn_kind).options
    unknown = [key for key in bn_options if key not in known]
    if unknown:
        raise UsageError(
            f"{owner}: bn_options {unknown[0]!r} is not an option of the norm kind "
            f"{bn_kind!r}; its options are {', '.join(known) or 'none'}."
        )
    return base.replace(kind=bn_kind, **bn_options)


def vanilla(base, bn_kind="bn", bn_options=None, owner="model"):
    """The family's BatchNorm at every role."""
    return Norms(batch_norm(base, bn_kind, bn_options, owner))


def xbn(base, roles, groups, bn_kind="bn", bn_options=None, owner="model"):
    """The XBNBlock rule: a ``groups``-group GroupNorm at ``roles``, BatchNorm elsewhere."""
    groups = _checks.check_int(owner, "xbn_groups", groups, minimum=1)
    gn = NormSpec("gn", groups=groups, epsilon=GN_EPSILON)
    return Norms(batch_norm(base, bn_kind, bn_options, owner), tuple((role, gn) for role in roles))


def gnws(groups, owner="model"):
    """GN+WS: a ``groups``-group GroupNorm at every role, weight-standardized convs."""
    groups = _checks.check_int(owner, "gn_groups", groups, minimum=1)
    return Norms(NormSpec("gn", groups=groups, epsilon=GN_EPSILON), conv=WSConv2D)


def for_variant(variant, base, xbn_roles, args, owner="model"):
    """The :class:`Norms` of ``variant``, taking (popping) its arguments from
    the builder's ``args``: ``bn_kind`` and ``bn_options`` (vanilla, XBN),
    ``xbn_groups`` (XBN), ``gn_groups`` (GN+WS).

    Args:
        variant: ``"vanilla"``, ``"xbn"`` or ``"gnws"``.
        base: the family's BatchNorm spec (of the layout).
        xbn_roles: ``xbn_roles()`` gives the roles the XBN rule makes
            GroupNorms (called for XBN only: it takes the family's own XBN
            arguments from ``args``).
        args: the builder's arguments; those of the variant are removed.
        owner: the builder, for errors.
    """
    if variant == "gnws":
        return gnws(args.pop("gn_groups"), owner)
    bn_kind, bn_options = args.pop("bn_kind", "bn"), args.pop("bn_options", None)
    if variant == "vanilla":
        return vanilla(base, bn_kind, bn_options, owner)
    return xbn(base, xbn_roles(), args.pop("xbn_groups"), bn_kind, bn_options, owner)
