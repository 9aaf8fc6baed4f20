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

SUITES = ("layers", "models", "export", "pipeline")


def _suite_module(name):
    import importlib

    return importlib.import_module(f"xbn.bench.{name}")


def machine():
    """Facts about where the figures were taken."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    device = "CPU"
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        device = details.get("device_name", "GPU")
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "device": device,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "platform": platform.platform(),
    }


def run(suites=SUITES, quick=False, repeats=10, warmup=3, options=None, progress=print):
    """Run ``suites`` and return the full result document."""
    rows = []
    for name in suites:
        if name not in SUITES:
            raise ValueError(
                f"xbn-bench: unknown suite {name!r}; the suites are {', '.join(SUITES)}."
            )
        progress(f"[xbn-bench] suite {name} ...")
        module = _suite_module(name)
        rows += module.run(quick=quick, repeats=repeats, warmup=warmup, **(options or {}).get(name, {}))
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["xbn-bench", *sys.argv[1:]]),
        "machine": machine(),
        "quick": quick,
        "repeats": repeats,
        "rows": rows,
    }
