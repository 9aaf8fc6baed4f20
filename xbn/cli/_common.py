"""Helpers every console script shares: value parsing and clean failure.

A console script reports what its user got wrong as one clear line on
stderr and exit status 2: :func:`run_main` turns the library's
:class:`xbn.errors.UsageError` (a bad argument, setting, file or piece of
data), missing or existing files and folders, a folder in use, a full disk
and a place that cannot be written into that, in the words of its own flags
(:func:`in_flags`).  Anything else is a bug, in xbn or below it, and keeps
its traceback.  ``--debug`` (any script) or ``XBN_DEBUG=1`` shows the
traceback of a usage error too.
"""

import ast
import errno
import functools
import os
import re
import sys

from xbn.errors import UsageError


def quiet_tensorflow():
    """TensorFlow imported without its C++ start-up chatter, after keras'
    backend (:func:`xbn._backend.tensorflow`: the order PyTorch's triton needs)."""
    from xbn import _backend

    _backend.tensorflow()


def data_help():
    """The registered ``--data`` sources, for ``--help``."""
    from xbn.data.sources import data_help

    return data_help()


def parse_value(text):
    """A command-line value as a Python literal where it is one, else a string.

    >>> parse_value("0.35"), parse_value("p2"), parse_value("(64, 64, 3)"), parse_value("None")
    (0.35, 'p2', (64, 64, 3), None)
    """
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


# An example of each KEY=VALUE flag, for its error message.
KEY_VALUE_EXAMPLES = {"--model-arg": "alpha=0.35", "--data-arg": "label_offset=-1"}


def parse_key_values(items, flag="--model-arg"):
    """``["alpha=0.35", "xbn_groups=8"]`` -> ``{"alpha": 0.35, "xbn_groups": 8}``."""
    result = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise UsageError(
                f"{flag} expects KEY=VALUE with KEY a Python identifier, e.g. "
                f"{flag} {KEY_VALUE_EXAMPLES.get(flag, 'name=value')}; got {item!r}."
            )
        result[key.strip()] = parse_value(value.strip())
    return result


# Python argument names whose command-line flag is not the name with dashes.
FLAG_ALIASES = {"model_args": "--model-arg", "data_args": "--data-arg", "fmt": "--format",
                "learning_rate": "--lr", "form_normal_epochs": "--normal-epochs",
                "form_convergence_factors": "--convergence-factors"}


@functools.lru_cache(maxsize=None)
def program_flags(prog):
    """The option strings of console script ``prog`` (``xbn-train`` ->
    ``xbn.cli.train.build_parser()``); empty for a program without one."""
    import importlib

    try:
        module = importlib.import_module(f"xbn.cli.{prog.removeprefix('xbn-')}")
    except ImportError:
        return frozenset()
    build = getattr(module, "build_parser", None)
    if build is None:
        return frozenset()
    return frozenset(flag for action in build()._actions for flag in action.option_strings)


def in_flags(message, prog):
    """``message`` in the words of ``prog``'s command line: the library names
    arguments as Python does (`` `batch_size` ``); where ``prog`` has that
    option, the name becomes its flag (``--batch-size``)."""
    flags = program_flags(prog)

    def flag(match):
        name = match.group(1)
        candidate = FLAG_ALIASES.get(name, "--" + name.replace("_", "-"))
        return candidate if candidate in flags else match.group(0)

    return re.sub(r"`([A-Za-z_][A-Za-z0-9_]*)`", flag, message)


def error_line(prog, error):
    """``PROG: error: MESSAGE`` on one line, without a doubled ``PROG:`` prefix,
    argument names turned into ``prog``'s flags (:func:`in_flags`)."""
    message = str(error)
    if isinstance(error, OSError) and error.strerror and not error.filename:
        message = error.strerror  # DiskFullError(errno, message): the message alone
    prefix = f"{prog}: "
    while message.startswith(prefix):
        message = message[len(prefix):]
    return f"{prog}: error: {in_flags(message, prog)}"


# errno values of "this place cannot be written": a read-only file system,
# no permission.
UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def unwritable_message(error):
    """One line for an ``OSError`` of :data:`UNWRITABLE`: the place and the fix."""
    where = error.filename or "the output folder"
    reason = {errno.EROFS: "it is on a read-only file system"}.get(error.errno, "permission denied")
    return (f"cannot write {where}: {reason}. Choose a folder you can write to (--out, or the "
            "output argument of the command); nothing was written there.")


# What rerunning an interrupted command does, where it resumes.
RESUMES = {
    "xbn-train": "run the same command again to resume from the last finished epoch",
    "xbn-study": "run the same command again to resume: finished runs are kept and not trained again",
}
DEBUG_FLAG = "--debug"


def debugging():
    """Whether usage errors keep their traceback (``--debug`` or ``XBN_DEBUG=1``)."""
    return os.environ.get("XBN_DEBUG", "") not in ("", "0")


def run_main(prog, body, argv):
    """Run ``body(argv)``; report usage errors as one line, exit status 2.

    Usage errors are :class:`xbn.errors.UsageError` (bad settings or input),
    missing or existing files and folders, a folder in use, a full disk and
    a place that cannot be written (a read-only file system, no
    permission); their messages name the problem and the fix.  Any other
    exception propagates with its traceback (exit status 1).
    """
    from xbn import _files
    from xbn.errors import UsageError

    given = sys.argv[1:] if argv is None else argv
    if DEBUG_FLAG in given:
        argv = [a for a in given if a != DEBUG_FLAG]
        os.environ["XBN_DEBUG"] = "1"  # subprocesses (the export under TensorFlow) too
    try:
        return body(argv)
    except (
        UsageError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
        _files.DiskFullError, _files.FolderInUseError,
    ) as error:
        if debugging():
            raise
        print(error_line(prog, error), file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno not in UNWRITABLE or debugging():
            raise
        print(error_line(prog, unwritable_message(error)), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        resumes = RESUMES.get(prog)
        print(f"{prog}: interrupted" + (f"; {resumes}." if resumes else "."), file=sys.stderr)
        return 130


def parser_from_doc(prog, doc, **kwargs):
    """An ``ArgumentParser`` whose description is the first line of the
    module docstring ``doc`` (after ``"xbn-x: "``) and whose epilog is its
    ``Examples::`` section, if it has one."""
    import argparse

    description = doc.splitlines()[0].split(": ", 1)[1]
    if "Examples::" in doc:
        kwargs.setdefault("epilog", doc.split("Examples::")[1])
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
    parser = argparse.ArgumentParser(prog=prog, description=kwargs.pop("description", description), **kwargs)
    add_debug_flag(parser)
    return parser


def add_debug_flag(parser):
    """``--debug`` in a script's help (:func:`run_main` takes it out of the
    arguments before the parser sees them)."""
    import argparse

    parser.add_argument(DEBUG_FLAG, action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error, a usage error too (also XBN_DEBUG=1)")


def check_readme(path, section):
    """Refuse a ``--readme`` that is not there before any work is done (a
    mistyped path once became a new Markdown file, and its folder, after
    the whole run)."""
    if path is not None and not os.path.isfile(path):
        raise FileNotFoundError(f"--readme {path}: no such file; name an existing Markdown file (its generated "
                                f"'{section}' section is replaced, or appended where it has none).")


def console_main(prog, body):
    """The ``main(argv=None)`` of a console script: TensorFlow's start-up
    chatter silenced, then ``body(argv)`` under :func:`run_main`."""

    def main(argv=None):
        quiet_tensorflow()
        return run_main(prog, body, argv)

    main.__doc__ = f"The ``{prog}`` console script (see ``{prog} --help``)."
    return main


def add_data_arg(parser):
    """``--data-arg KEY=VALUE`` of the commands that score a ``--data``
    source (parse with :func:`parse_key_values`)."""
    parser.add_argument("--data-arg", action="append", metavar="KEY=VALUE",
                        help="an option of the --data source (its options are listed under --data), repeatable; "
                        "options other than the run's make its data other data, scored whole")


def add_model_arg(parser, help="builder argument of a registered model, repeatable (e.g. alpha=0.35)"):
    """``--model-arg KEY=VALUE`` (repeatable; parse with :func:`parse_key_values`)."""
    parser.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help=help)
