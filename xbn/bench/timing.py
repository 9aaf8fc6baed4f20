"""Timing and memory measurement for ``xbn-bench``.

Each case is a zero-argument callable that runs one unit of work (a training
step, a forward pass) and returns tensors; they are pulled to the host so the
work has really finished before the clock stops.  :func:`measure` warms up
(tracing, autotuning, caches), then reports the median of several repeats.
:class:`PeakMemory` records the peak memory a case needs: the GPU allocator's
peak where there is a GPU, else the peak resident set size of the process
above what it held when the case began (sampled every few milliseconds).
"""

import dataclasses
import os
import statistics
import threading
import time

from xbn.errors import UsageError


@dataclasses.dataclass
class Timing:
    """Median seconds per call over ``repeats`` calls, and the spread."""

    median_s: float
    min_s: float
    max_s: float
    repeats: int
    peak_mb: float | None = None

    def as_dict(self):
        return dataclasses.asdict(self)


def _block(result):
    """Force completion: fetch every tensor of ``result`` to the host."""
    from xbn.bench import backends

    backends.block(result)


def measure(fn, warmup=3, repeats=10):
    """Time ``fn`` after ``warmup`` calls: median/min/max of ``repeats`` calls."""
    if warmup < 0 or repeats < 1:
        raise UsageError(
            f"measure: need warmup >= 0 and repeats >= 1; got warmup={warmup}, "
            f"repeats={repeats}."
        )
    for _ in range(warmup):
        _block(fn())
    times = []
    with PeakMemory() as memory:
        for _ in range(repeats):
            start = time.perf_counter()
            _block(fn())
            times.append(time.perf_counter() - start)
    return Timing(
        median_s=statistics.median(times),
        min_s=min(times),
        max_s=max(times),
        repeats=repeats,
        peak_mb=memory.peak_mb,
    )


def compare(contenders, warmup=3, repeats=10):
    """Time several callables interleaved; returns ``{name: Timing}``.

    Calls alternate between the contenders, in forward then reverse order
    each round (A B, B A, ...), so that drift in the machine's speed (other
    load, thermal state, allocator warm-up) affects every contender alike.
    Peak memory is measured for each contender separately, after the timing.
    """
    names = list(contenders)
    for name in names:
        for _ in range(warmup):
            _block(contenders[name]())
    times = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else reversed(names):
            start = time.perf_counter()
            _block(contenders[name]())
            times[name].append(time.perf_counter() - start)
    result = {}
    for name in names:
        with PeakMemory() as memory:
            _block(contenders[name]())
        t = times[name]
        result[name] = Timing(
            median_s=statistics.median(t), min_s=min(t), max_s=max(t),
            repeats=repeats, peak_mb=memory.peak_mb,
        )
    return result


def _rss_bytes():
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


class PeakMemory:
    """Context manager recording the peak memory used inside the block (MB)."""

    def __init__(self, interval_s=0.005):
        self.interval_s = interval_s
        self.peak_mb = None
        self._stop = threading.Event()
        self._thread = None
        self._gpu = None

    def __enter__(self):
        from xbn.bench import backends

        self._gpu = backends.peak_memory()
        if self._gpu is False:  # not measurable per case on this device
            return self
        if self._gpu:
            self._gpu[0]()
            return self
        self._base = _rss_bytes()
        if self._base is None:
            return self
        self._peak = self._base

        def sample():
            while not self._stop.is_set():
                current = _rss_bytes()
                if current is not None and current > self._peak:
                    self._peak = current
                self._stop.wait(self.interval_s)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._gpu is False:
            return False
        if self._gpu:
            self.peak_mb = self._gpu[1]()
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak_mb = max(self._peak - self._base, 0) / 2**20
        return False
