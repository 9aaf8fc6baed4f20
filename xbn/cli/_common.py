"""Helpers every console script shares: value parsing and clean failure.

A console script reports bad input as one clear line on stderr and exit
status 2, never a traceback: :func:`run_main` turns the library's
``ValueError``/``TypeError``/``FileNotFoundError``/``FileExistsError`` (whose
messages name the problem and the fix) into that.
"""

import ast
import errno
import functools
import os
import re
import sys
import tempfile


def quiet_tensorflow():
    """Import TensorFlow without its C++ start-up chatter on the terminal.

    ``TF_CPP_MIN_LOG_LEVEL`` silences most of it, but absl prints a few lines
    ("Could not find cuda drivers ...") before it reads any setting.  The
    import runs with file descriptor 2 sent to a temporary file, which is
    replayed if the import fails, so no real error is ever hidden.  Set
    ``XBN_VERBOSE_TF=1`` to see everything.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules or os.environ.get("XBN_VERBOSE_TF"):
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


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


def parse_key_values(items, flag="--model-arg"):
    """``["alpha=0.35", "xbn_groups=8"]`` -> ``{"alpha": 0.35, "xbn_groups": 8}``."""
    result = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(
                f"{flag} expects KEY=VALUE with KEY a Python identifier, e.g. "
                f"{flag} alpha=0.35; got {item!r}."
            )
        result[key.strip()] = parse_value(value.strip())
    return result


# Python argument names whose command-line flag is not the name with dashes.
FLAG_ALIASES = {"model_args": "--model-arg", "data_args": "--data-arg", "fmt": "--format",
                "learning_rate": "--lr"}


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


def run_main(prog, body, argv):
    """Run ``body(argv)``; report expected errors as one line, exit status 2.

    Expected errors are the library's ``ValueError``/``TypeError`` (bad
    settings or input), missing or existing files and folders, a folder in
    use, a full disk and a place that cannot be written (a read-only file
    system, no permission); their messages name the problem and the fix.
    """
    from xbn import _files

    try:
        return body(argv)
    except (
        ValueError, TypeError, RuntimeError, FileNotFoundError, FileExistsError,
        NotADirectoryError, _files.DiskFullError,
    ) as error:
        print(error_line(prog, error), file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno not in UNWRITABLE:
            raise
        print(error_line(prog, unwritable_message(error)), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
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
    return argparse.ArgumentParser(prog=prog, description=kwargs.pop("description", description), **kwargs)


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
