"""The error types xbn raises for what a caller got wrong.

A bad argument, setting, file or piece of data raises a :class:`UsageError`
(a ``ValueError``, as keras raises for its arguments) or a
:class:`UsageTypeError` (a ``TypeError`` too), whose message names the
thing and the fix.  The console scripts print these as one line and exit
with status 2; every other exception is a bug, in xbn or below it, and keeps
its traceback.  ``XBN_DEBUG=1`` (or a script's ``--debug``) shows the whole
traceback of a usage error too.
"""


class UsageError(ValueError):
    """A caller's mistake: a bad argument, setting, file or piece of data."""


class UsageTypeError(UsageError, TypeError):
    """A caller's mistake of type: an argument that is not what it must be."""
