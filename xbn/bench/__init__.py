"""``xbn-bench``: xbn's speed and memory claims, measured side by side.

Each suite returns rows of the form::

    {"suite", "case", "unit", "xbn", "baseline", "baseline_name",
     "speedup", "goal", "peak_mb"}

where ``speedup`` is how many times faster xbn is than the baseline (higher
is better, whatever the unit) and ``goal`` the speed-up the project promises
(``None`` where the row is informational).  :func:`run` adds the machine and
the command; :mod:`xbn.bench.report` writes the JSON and the Markdown table.
"""

import datetime
import os
import platform
import sys

from xbn.errors import UsageError

SUITES = ("layers", "models", "export", "pipeline")
# The suites that measure TensorFlow itself (SavedModel serving, tf.data).
TENSORFLOW_SUITES = ("export", "pipeline")


def _suite_module(name):
    import importlib

    return importlib.import_module(f"xbn.bench.{name}")


def _commit():
    """The git commit of the xbn checkout the figures come from (``+dirty`` with
    local changes); ``XBN_COMMIT`` names it where the tree was copied without
    its git folder (a GPU machine)."""
    import subprocess

    if os.environ.get("XBN_COMMIT"):
        return os.environ["XBN_COMMIT"]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def machine():
    """Facts about where the figures were taken: the keras backend and the
    device it computes on, the CPU and its vector extensions (speed depends
    on them), the software and the commit."""
    import xbn
    from xbn import _hardware
    from xbn.bench import backends

    info = _hardware.cpu()
    return {
        "backend": backends.backend(),
        "device": backends.device(),
        "cpu": info["model"],
        "cpu_info": info,
        "cpu_label": _hardware.cpu_label(info),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        **backends.versions(),
        "xbn": xbn.__version__,
        "commit": _commit(),
        "platform": platform.platform(),
    }


def run(suites=SUITES, quick=False, repeats=10, warmup=3, options=None, progress=print, on_suite=None):
    """Run ``suites`` and return the full result document.

    ``on_suite(document)`` is called after each suite with the rows so far,
    so that a run cut short (a time limit on a lent GPU) keeps what it
    measured.
    """
    rows = []
    document = None
    for name in suites:
        if name not in SUITES:
            raise UsageError(
                f"xbn-bench: unknown suite {name!r}; the suites are {', '.join(SUITES)}."
            )
        from xbn.bench import backends

        if name in TENSORFLOW_SUITES and backends.backend() != "tensorflow":
            raise UsageError(
                f"xbn-bench: the {name} suite measures TensorFlow's "
                f"{'SavedModel serving' if name == 'export' else 'tf.data input pipeline'}; "
                f"run it with `backend` tensorflow (this run's backend is {backends.backend()})."
            )
        progress(f"[xbn-bench] suite {name} ...")
        module = _suite_module(name)
        rows += module.run(quick=quick, repeats=repeats, warmup=warmup, **(options or {}).get(name, {}))
        document = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["xbn-bench", *sys.argv[1:]]),
            "machine": machine(),
            "quick": quick,
            "repeats": repeats,
            "rows": list(rows),
        }
        if on_suite is not None:
            on_suite(document)
    return document
