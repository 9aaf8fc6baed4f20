"""Argument validation shared by every part of xbn.

Each helper returns the validated (and normalised) value or raises a
``ValueError``/``TypeError`` whose message names the owner, the argument, what
was expected and what was received, e.g.::

    BatchNorm: argument `momentum` must be a finite number in [0.0, 1.0). Received: momentum=1.5

so that a user can fix the call without reading the source.
"""

import numbers

from xbn.errors import UsageError, UsageTypeError


def _fail(owner, name, expected, value, error=ValueError):
    error = {ValueError: UsageError, TypeError: UsageTypeError}.get(error, error)
    raise error(f"{owner}: argument `{name}` must be {expected}. Received: {name}={value!r}")


def check_bool(owner, name, value):
    """Return ``value`` if it is a Python or NumPy bool."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    _fail(owner, name, "True or False", value, TypeError)


def check_int(owner, name, value, minimum=None, maximum=None, allowed=(), type_error=TypeError):
    """Return ``value`` as an ``int`` within ``[minimum, maximum]``.

    ``allowed`` lists extra sentinel values accepted as they are (e.g. ``-1``
    for "all channels").  ``type_error`` is the exception for a value that is
    no integer at all (keras raises ``ValueError`` for some arguments, e.g.
    ``GroupNormalization(groups=1.5)``; drop-ins do the same).
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value in allowed:
        return int(value)
    bounds = _describe_bounds(minimum, maximum, True, True)
    extra = "".join(f" or {a!r}" for a in allowed)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        _fail(owner, name, f"an integer{bounds}{extra}", value, type_error)
    if (minimum is not None and value < minimum) or (
        maximum is not None and value > maximum
    ):
        _fail(owner, name, f"an integer{bounds}{extra}", value)
    return int(value)


def check_float(
    owner,
    name,
    value,
    minimum=None,
    maximum=None,
    min_inclusive=True,
    max_inclusive=True,
):
    """Return ``value`` as a finite ``float`` within the given bounds."""
    bounds = _describe_bounds(minimum, maximum, min_inclusive, max_inclusive)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _fail(owner, name, f"a number{bounds}", value, TypeError)
    value = float(value)
    too_low = minimum is not None and (
        value < minimum or (not min_inclusive and value == minimum)
    )
    too_high = maximum is not None and (
        value > maximum or (not max_inclusive and value == maximum)
    )
    if value != value or value in (float("inf"), float("-inf")) or too_low or too_high:
        _fail(owner, name, f"a finite number{bounds}", value)
    return value


def check_choice(owner, name, value, choices):
    """Return ``value`` if it is one of ``choices``."""
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        _fail(owner, name, f"one of {listed}", value)
    return value


def close_match(name, known):
    """``" (did you mean 'alpha'?)"`` for the closest of ``known`` to a
    misspelt ``name``, or ``""`` when none is close."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _describe_bounds(minimum, maximum, min_inclusive, max_inclusive):
    if minimum is None and maximum is None:
        return ""
    if maximum is None:
        return f" {'>=' if min_inclusive else '>'} {minimum}"
    if minimum is None:
        return f" {'<=' if max_inclusive else '<'} {maximum}"
    left = "[" if min_inclusive else "("
    right = "]" if max_inclusive else ")"
    return f" in {left}{minimum}, {maximum}{right}"


def check_crop_scale(owner, value):
    """``(min, max)`` with ``0 < min <= max <= 1``: a random crop's area range
    (for training settings, recipes, flags and ``Augment`` alike)."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise UsageError(f"{owner}: `crop_scale` must be two numbers (MIN, MAX); got {value!r}.")
    low, high = (check_float(owner, "crop_scale", v, minimum=0.0, maximum=1.0, min_inclusive=False) for v in value)
    if low > high:
        raise UsageError(
            f"{owner}: `crop_scale` must be (MIN, MAX) with MIN <= MAX ({high:g}, {low:g}?); got {value!r}."
        )
    return (low, high)


def check_eval_crop(owner, value):
    """The central fraction kept at evaluation, in ``(0, 1]``."""
    return check_float(owner, "eval_crop", value, minimum=0.0, maximum=1.0, min_inclusive=False)
