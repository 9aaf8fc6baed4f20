"""Files that are never left half-written.

Every file xbn writes (checkpoints, metrics, tables, exports) goes through
:func:`atomic_write_bytes`/:func:`atomic_write_text` or
:func:`atomic_directory`: the content is written beside the destination
under a temporary name and renamed into place, so a crash or a full disk
leaves either the old file or the new one, never a torn one.

:func:`replace_section` keeps generated tables inside hand-written Markdown:
the text between ``<!-- begin:NAME -->`` and ``<!-- end:NAME -->`` is
replaced and the rest of the file is left alone.
"""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` atomically (same-directory temp + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(destination, overwrite=False):
    """Build a directory under a temporary name, then move it into place.

    Yields the temporary path to fill.  On success the directory is renamed
    to ``destination`` (replacing an existing one only if ``overwrite``); on
    any exception the temporary directory is removed and ``destination`` is
    untouched.

    Raises:
        FileExistsError: if ``destination`` exists and ``overwrite`` is False
            (checked before any work is done).
    """
    destination = Path(destination)
    if destination.exists() and not overwrite:
        raise FileExistsError(
            f"{destination} already exists; pass overwrite=True (--overwrite) to "
            "replace it, or choose another destination."
        )
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        yield tmp
        if destination.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{destination.name}.old.", dir=destination.parent))
            os.replace(destination, old / "previous")
            os.replace(tmp, destination)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, destination)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_section(path, name, content):
    """Replace the generated section ``name`` of a Markdown file.

    The section is the text between the lines ``<!-- begin:NAME -->`` and
    ``<!-- end:NAME -->``; if the markers are missing they are appended.
    """
    path = Path(path)
    begin, end = f"<!-- begin:{name} -->", f"<!-- end:{name} -->"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{begin}\n{content.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + ("\n\n" if text.strip() else "") + block + "\n"
    atomic_write_text(path, text)
