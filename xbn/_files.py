"""Files that are never left half-written, locked while in use, and readable by others.

Every file and folder xbn writes (checkpoints, metrics, tables, models,
exports) goes through this module:

- :func:`atomic_write_bytes`/:func:`atomic_write_text` and :func:`atomic_path`
  (for writers that want a path, such as ``model.save``) write beside the
  destination under a temporary name and rename into place; a crash or a
  full disk leaves the old file or the new one, never a torn one;
- :func:`atomic_directory` builds a folder under a temporary name and swaps
  it into place in one step (Linux ``renameat2(RENAME_EXCHANGE)``), so a
  reader always finds a complete folder, the old one or the new, even while
  ``--overwrite`` replaces it;
- what they write gets the permissions the umask gives an ordinary file
  (``0644`` under umask 022), not the owner-only ``0600``/``0700`` of
  temporary files, so a serving process or a colleague can read an export;
- temporaries are named ``.NAME.tmp-HOST-PID-XXXX``: those of processes that
  are gone (``kill -9``) are removed by the next write of the same name;
- :class:`FolderLock` keeps a second process off a folder in use, naming the
  holder; the kernel drops the lock when its process dies, however it dies;
- a full disk is reported as a :class:`DiskFullError`: one line naming the
  folder, the space needed and what to do (:func:`ensure_space`,
  :func:`disk_full_errors`).

:func:`replace_section` keeps generated tables inside hand-written Markdown:
the text between ``<!-- begin:NAME -->`` and ``<!-- end:NAME -->`` is
replaced and the rest of the file is left alone.
"""

import contextlib
import ctypes
import datetime
import errno
import json
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

_HOST = socket.gethostname().replace("-", "_")


class DiskFullError(OSError):
    """No space left where xbn writes; the message names the folder and the fix."""


class FolderInUseError(RuntimeError):
    """Another process holds the folder (see :class:`FolderLock`)."""


# -- permissions ------------------------------------------------------------------
def umask():
    """The process's umask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # briefly: there is no other portable way to read it
    os.umask(mask)
    return mask


def _file_mode():
    return 0o666 & ~umask()


def _folder_mode():
    return 0o777 & ~umask()


# -- temporaries ------------------------------------------------------------------
def _temp_prefix(destination):
    return f".{destination.name}.tmp-{_HOST}-{os.getpid()}-"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temporaries(destination):
    """Remove the temporaries of ``destination`` left by dead processes on this host.

    Returns the paths removed.  Temporaries of live processes, and of other
    hosts (a shared file system), are left alone.
    """
    destination = Path(destination)
    removed = []
    if not destination.parent.is_dir():
        return removed
    prefix = f".{destination.name}.tmp-{_HOST}-"
    for path in destination.parent.iterdir():
        if not path.name.startswith(prefix):
            continue
        pid = path.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_path(destination):
    """A temporary file path beside ``destination``, renamed onto it on success.

    For writers that insist on a path (``model.save``, ``plt.savefig``)::

        with atomic_path("run/model.keras") as tmp:
            model.save(tmp)

    The temporary keeps the destination's suffix (keras checks it, and
    ``.weights.h5`` whole).  On any exception it is removed and
    ``destination`` is untouched.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(destination)
    suffix = ".weights.h5" if destination.name.endswith(".weights.h5") else destination.suffix
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(destination), suffix=suffix, dir=destination.parent)
    os.close(fd)
    try:
        with disk_full_errors(destination.parent, f"writing {destination.name}"):
            yield Path(tmp)
            os.chmod(tmp, _file_mode())
            os.replace(tmp, destination)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` atomically (same-directory temp + rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def atomic_write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


# -- folders ------------------------------------------------------------------------
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a, b):
    """Swap two paths in one atomic step (Linux ``renameat2``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False  # an old kernel, or a file system without the flag
    raise OSError(code, os.strerror(code), str(b))


@contextlib.contextmanager
def atomic_directory(destination, overwrite=False):
    """Build a directory under a temporary name, then move it into place.

    Yields the temporary path to fill.  On success the directory takes the
    place of ``destination``: a new one is renamed into place; an existing
    one (only with ``overwrite``) is swapped in one atomic step where the
    kernel can (Linux), so that a reader never finds ``destination`` missing
    or half-written, and the old folder is removed afterwards.  On any
    exception the temporary directory is removed and ``destination`` is
    untouched.

    Raises:
        FileExistsError: if ``destination`` exists and ``overwrite`` is False
            (checked before any work is done).
    """
    destination = Path(destination)
    if destination.exists() and not overwrite:
        raise FileExistsError(
            f"{destination} already exists; pass `overwrite` to "
            "replace it, or choose another destination."
        )
    destination.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(destination)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(destination), dir=destination.parent))
    try:
        os.chmod(tmp, _folder_mode())
        with disk_full_errors(destination.parent, f"writing {destination.name}"):
            yield tmp
        if not destination.exists():
            os.replace(tmp, destination)
        elif _exchange(tmp, destination):
            shutil.rmtree(tmp, ignore_errors=True)  # the old folder, now at tmp
        else:
            old = Path(tempfile.mkdtemp(prefix=_temp_prefix(destination), dir=destination.parent))
            os.replace(destination, old / "previous")
            os.replace(tmp, destination)
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# -- full disks ---------------------------------------------------------------------
def _megabytes(size):
    return f"{size / 2**20:,.1f} MB"


def ensure_space(folder, needed, what, advice=""):
    """Raise :class:`DiskFullError` if ``folder``'s file system has less than
    ``needed`` bytes free (checked before writing, which is where a full disk
    otherwise ends in h5py noise or a crash)."""
    folder = Path(folder)
    probe = folder if folder.exists() else next(p for p in folder.parents if p.exists())
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise DiskFullError(
            errno.ENOSPC,
            f"not enough space in {folder} for {what}: it needs about {_megabytes(needed)} and "
            f"{_megabytes(free)} are free. {advice}".strip(),
        )


def _is_full(error):
    if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)
    return "No space left on device" in text or "Disk quota exceeded" in text or "errno = 28" in text


@contextlib.contextmanager
def disk_full_errors(folder, what, needed=None, advice=""):
    """Turn a full disk while writing into a :class:`DiskFullError` naming
    ``folder``, ``what`` was being written and ``advice`` (h5py, TensorFlow
    and Python all report it in their own words)."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as error:  # noqa: BLE001 - anything that says the disk is full
        if not _is_full(error):
            raise
        size = f"; it needs about {_megabytes(needed)}" if needed else ""
        free = shutil.disk_usage(folder).free if Path(folder).exists() else 0
        raise DiskFullError(
            errno.ENOSPC,
            f"the disk of {folder} filled up while {what}{size} ({_megabytes(free)} free). {advice}".strip(),
        ) from None


# -- locks ----------------------------------------------------------------------------
class FolderLock:
    """An exclusive lock on a folder, held by this process until :meth:`release`.

    The lock is a ``flock`` on ``FOLDER/.lock``: the kernel drops it when the
    process ends, however it ends (``kill -9`` too), so a stale lock never
    blocks anyone; the file keeps the holder's description so that the
    process refused can name it.  Used as a context manager or with
    :meth:`acquire`/:meth:`release`.

    Args:
        folder: the folder to lock (created if missing).
        what: what the holder is doing, e.g. ``"xbn-train --epochs 3 ..."``.
    """

    NAME = ".lock"

    def __init__(self, folder, what):
        self.folder = Path(folder)
        self.what = what
        self._fd = None

    def acquire(self):
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / self.NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, _file_mode())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                raise
            raise FolderInUseError(
                f"{self.folder} is in use by {self.holder()}; wait for it to finish, or choose "
                "another folder."
            ) from None
        holder = {
            "pid": os.getpid(), "host": socket.gethostname(), "what": self.what,
            "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(holder) + "\n").encode())
        self._fd = fd
        return self

    def holder(self):
        """The current holder, in words (from the lock file)."""
        try:
            info = json.loads((self.folder / self.NAME).read_text())
            return f"process {info['pid']} on {info['host']} ({info['what']}, since {info['since']})"
        except (OSError, ValueError, KeyError):
            return "another process"

    def release(self):
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


# -- generated Markdown -------------------------------------------------------------------
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
