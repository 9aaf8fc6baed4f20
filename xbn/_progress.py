"""Progress of long work, on a terminal and in a log.

On a terminal, :class:`Progress` redraws one line in place (count, bar,
rate, time left, and any figures the caller adds).  Anywhere else (a log
file, a CI job, a pipe) it writes a plain line at every tenth of the work and
at the end: no carriage returns, no colour codes, no 4 KB line per epoch.
"""

import sys
import time


def _duration(seconds):
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Progress:
    """Progress of ``total`` steps of work called ``label``.

    Args:
        total: the number of steps (None when unknown).
        label: what is being done, e.g. ``"epoch 3/15"``.
        stream: where to write (default: ``sys.stdout``).
        enabled: False writes nothing (quiet runs, non-chief workers).
        interactive: redraw in place (default: whether ``stream`` is a terminal).
    """

    WIDTH = 24

    def __init__(self, total, label, stream=None, enabled=True, interactive=None):
        self.total = total
        self.label = label
        self.stream = stream or sys.stdout
        self.enabled = enabled
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.interactive = isatty() if interactive is None else interactive
        self.start = time.perf_counter()
        self.done = 0
        self._next_tenth = 1
        self._finished = False

    def _line(self, figures):
        elapsed = time.perf_counter() - self.start
        parts = [self.label]
        if self.total:
            filled = int(self.WIDTH * self.done / self.total)
            bar = "=" * filled + ("." * (self.WIDTH - filled))
            parts.append(f"{self.done}/{self.total} [{bar}]")
            if 0 < self.done < self.total:
                parts.append(f"{_duration(elapsed * (self.total - self.done) / self.done)} left")
            else:
                parts.append(_duration(elapsed))
        else:
            parts.append(f"{self.done} done, {_duration(elapsed)}")
        parts += [f"{name} {value}" for name, value in figures.items()]
        return "  ".join(parts)

    def update(self, done, **figures):
        """``done`` steps are finished; ``figures`` are shown beside the count
        (already formatted, e.g. ``loss="0.4321"``)."""
        self.done = done
        if not self.enabled:
            return
        if self.interactive:
            self.stream.write("\r" + self._line(figures) + "\x1b[K")
            self.stream.flush()
        elif self.total and done >= self.total * self._next_tenth / 10 and done < self.total:
            self.stream.write(self._line(figures) + "\n")
            self.stream.flush()
            while self._next_tenth <= 10 and done >= self.total * self._next_tenth / 10:
                self._next_tenth += 1

    def finish(self, **figures):
        """The last line, with the final figures."""
        if self._finished:
            return
        self._finished = True
        if self.total:
            self.done = self.total
        if self.enabled:
            self.stream.write(("\r" if self.interactive else "") + self._line(figures) +
                              ("\x1b[K\n" if self.interactive else "\n"))
            self.stream.flush()
