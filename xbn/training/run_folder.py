"""The run folder of ``xbn-train``: the one place that knows its layout.

::

    RUN/
      .lock          held while a process trains here (see xbn._files.FolderLock)
      run.json       settings as given, settings as resolved, model facts,
                     class names, split sizes (what export and analysis read)
      checkpoints/   epoch-NNNN/ folders and latest.json
      logs/          TensorBoard
      history.csv, curves.png
      model.keras    the final model (inference-ready statistics)
      metrics.json   final metrics
      export/        the SavedModel
      .worker-N/     metrics of the non-chief workers of a multi-worker run

Everything that reads or writes a run folder goes through this module:
:class:`RunFolder` (training: open, lock, resume or refuse), :func:`read_run`
and :func:`changed_settings` (export, estimation shift, the study).
"""

import json
import os
import shlex
import shutil
import sys
from pathlib import Path

import xbn
from xbn import _files
from xbn.errors import UsageError

RUN_FILE = "run.json"
MODEL_FILE = "model.keras"
METRICS_FILE = "metrics.json"
CHECKPOINTS = "checkpoints"
EXPORT = "export"
WORKER_PREFIX = ".worker-"


def holder():
    """Who trains, in the words a folder-in-use error shows: ``XBN_LOCK_HOLDER``
    where a program sets it (the study's workers), else this process's
    command line (``xbn-train --epochs 3 ...``)."""
    named = os.environ.get("XBN_LOCK_HOLDER")
    if named:
        return named
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if program in ("xbn-train", "train.py"):
        program = "xbn-train"
    return " ".join([program, *map(shlex.quote, sys.argv[1:])])


def is_run(root):
    """Whether ``root`` holds an ``xbn-train`` run (a ``run.json``)."""
    return (Path(root) / RUN_FILE).is_file()


def read_run(root):
    """The ``run.json`` of a run folder, as a dict.

    Raises:
        FileNotFoundError: naming the folder, when it is not a run folder.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist.")
    if not is_run(root):
        raise FileNotFoundError(f"{root} is not an xbn-train run folder (it has no {RUN_FILE}).")
    return json.loads((root / RUN_FILE).read_text())


def read_metrics(root):
    """The final metrics of a finished run, or None while it is not finished."""
    path = Path(root) / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def resolved_settings(info):
    """The settings a run really used: what was given, with its data source's
    defaults filled in (``run.json`` files older than the resolved record
    hold the given settings only)."""
    return {**info["settings"], **info.get("resolved", {})}


def changed_settings(root, settings):
    """Where the run in ``root`` was started with other settings.

    Compares ``settings`` (a :meth:`TrainConfig.training_settings`) with the
    settings stored in ``root``'s ``run.json``.  Returns ``{name: (stored,
    current)}``, empty when they agree or when the folder holds no run yet.
    """
    if not is_run(root):
        return {}
    stored = read_run(root)["settings"]
    current = json.loads(json.dumps(settings))  # tuples -> lists, as stored
    return {k: (stored.get(k), v) for k, v in current.items() if stored.get(k) != v}


class RunFolder:
    """A run folder as one training process uses it.

    The chief worker (or the only process) locks the folder for the whole
    run; a second process on the same folder is refused at once, with the
    holder named.  Other workers of a multi-worker run keep their metrics in
    ``.worker-N`` and only read the chief's checkpoints.

    Args:
        root: the folder.
        settings: the run's defining settings (compared on resumption).
        chief: whether this process writes the folder.
        task: this worker's index.
        overwrite: start over in an existing run folder.
    """

    def __init__(self, root, settings, chief=True, task=0, overwrite=False):
        self.root = Path(root)
        self.settings = settings
        self.chief = chief
        self.own = self.root if chief else self.root / f"{WORKER_PREFIX}{task}"
        self.overwrite = overwrite
        self._lock = None
        self._created = False

    @property
    def checkpoints(self):
        return self.root / CHECKPOINTS

    def open(self):
        """Lock and check the folder; returns the stored metrics if the run is finished.

        Raises:
            FolderInUseError: another process trains in this folder.
            ValueError: the folder holds a run with other settings.
            FileExistsError: the folder holds something that is not a run.
        """
        if self.root.exists() and not self.root.is_dir():
            raise FileExistsError(f"`out` {self.root} is a file; name a folder for the run (a new one, or an "
                                  "earlier run's to resume it).")
        if not self.chief:
            # A finished run is finished for every worker, or they would
            # wait forever on collectives the chief never joins.
            self.own.mkdir(parents=True, exist_ok=True)
            return read_metrics(self.root)
        self._created = not self.root.exists()
        self._lock = _files.FolderLock(self.root, holder()).acquire()
        try:
            return self._check()
        except BaseException:
            self.release()
            raise

    def _contents(self):
        return [p for p in self.root.iterdir() if p.name != _files.FolderLock.NAME]

    def _check(self):
        if self.overwrite:
            for path in self._contents():
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        if is_run(self.root):
            changed = changed_settings(self.root, self.settings)
            if changed:
                listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))
                raise UsageError(
                    f"{self.root} holds a run with other settings ({listed}). Resume it with its "
                    "own settings, start over with `overwrite`, or choose another `out`."
                )
            return read_metrics(self.root)
        strangers = [p.name for p in self._contents() if not p.name.startswith(WORKER_PREFIX)]
        if strangers:
            raise FileExistsError(
                f"{self.root} exists and is not an xbn-train run folder (it holds "
                f"{', '.join(sorted(strangers)[:3])}); choose another `out` or pass `overwrite` "
                "to replace it."
            )
        return None

    def write_run(self, settings, resolved, facts, source, image_size, weights=None, backend=None,
                  preprocessing=None):
        """Write ``run.json`` (the chief only).

        ``weights``: where the run started from (:class:`xbn.training.start.StartReport`
        as a dict); ``backend``: the keras backend it trains on;
        ``preprocessing``: the model's, where its named weights change its family's.
        """
        if not self.chief:
            return
        facts = facts.as_dict()
        if preprocessing is not None:
            facts["preprocessing"] = preprocessing
        info = {
            "xbn_version": xbn.__version__,
            "settings": settings,
            "resolved": resolved,
            "facts": facts,
            "class_names": source.class_names,
            "num_classes": source.num_classes,
            "image_size": image_size,
            "splits": {name: split.size for name, split in source.splits.items()},
            # model.keras outputs logits; the export adds the softmax.
            "outputs": "logits",
            "weights": weights,
            "backend": backend,
        }
        _files.atomic_write_text(self.root / RUN_FILE, json.dumps(info, indent=2) + "\n")

    def write_metrics(self, metrics):
        _files.atomic_write_text(self.own / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")

    def discard_if_unused(self):
        """Remove the folder if this process created it and wrote nothing into it
        (a run that failed before it began leaves no empty folder behind)."""
        if self.chief and self._created and self.root.exists() and not self._contents():
            shutil.rmtree(self.root, ignore_errors=True)

    def release(self):
        if self._lock is not None:
            self._lock.release()
            self._lock = None
