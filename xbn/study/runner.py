"""Train and measure the study's runs, in parallel, resumably.

Every :class:`~xbn.study.plan.Cell` is an ``xbn-train`` run in
``OUT/runs/<form>-bs<batch>-s<seed>`` trained with its moving statistics
left as trained (no precise BN), then measured:

- ``top1_ema``: test top-1 in inference mode with BatchNorm's moving
  averages (exponential moving averages, momentum 0.9) as trained;
- ``mean_shift``, ``var_shift`` and ``layer_shifts``: the estimation shift
  of every BatchNorm on the test split (:func:`xbn.diagnostics.estimation_shift`);
- ``corruption``: test top-1 per corruption and severity, moving statistics
  as trained (:mod:`xbn.data.corruptions`), where the plan asks;
- ``top1_precise_bn``: test top-1 after precise BN
  (:func:`xbn.diagnostics.recalibrate_bn` on the training split).

The row goes to ``study_row.json`` in the run folder, and every finished
row to ``OUT/results.json``.  A run whose row exists is reused (a missing
corruption score is added), an interrupted run resumes from its last epoch,
and a run folder trained with other settings is refused.

Small-batch steps cost mostly per-operation overhead, which one thread
runs as fast as two: with ``jobs=2`` two single-threaded worker processes
train two runs at once, about twice the throughput of one two-threaded
process on two cores.
"""

import concurrent.futures
import functools
import json
import multiprocessing
import os
import time
from pathlib import Path

ROW_FILE = "study_row.json"
RESULTS_FILE = "results.json"


def _config(cell, plan, out):
    from xbn.training import TrainConfig

    return TrainConfig(
        model=cell.form.model, model_args=cell.form.args, data=plan.data, batch_size=cell.batch_size,
        epochs=plan.epochs, steps_per_epoch=plan.steps_per_epoch, lr=plan.lr(cell.batch_size),
        warmup_epochs=1.0 if plan.epochs > 1 else 0.0, image_size=plan.image_size, recalibrate_bn=0,
        export=False, verbose=False, seed=cell.seed, out=str(Path(out) / "runs" / cell.name),
    )


def _refuse_other_settings(config):
    from xbn.training import changed_settings

    changed = changed_settings(config)
    if changed:
        details = "; ".join(f"{k}: {old!r} there, {new!r} asked" for k, (old, new) in changed.items())
        raise ValueError(
            f"{config.out_dir} holds a run with other settings ({details}). Use another --out "
            "folder for this study, or delete that run to retrain it."
        )


def _identity(cell, plan, train_size=None):
    """The row's description of the run: what was trained, how long."""
    if train_size is None:
        from xbn.data import load_source

        train_size = load_source(plan.data).split("train").size
    steps_per_epoch = train_size // cell.batch_size
    if plan.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, plan.steps_per_epoch)
    return {
        "model": cell.form.label, "registered": cell.form.model, "model_args": cell.form.args,
        "norm": cell.form.norm, "batch_size": cell.batch_size, "seed": cell.seed, "epochs": plan.epochs,
        "steps": plan.epochs * steps_per_epoch, "lr": plan.lr(cell.batch_size),
    }


def measure_cell(cell, plan, out, row=None):
    """Train (or resume, or reuse) one run and measure it; returns its row."""
    import keras

    from xbn.data import Augment, Pipeline
    from xbn.data.sources import data_record, open_recorded
    from xbn.diagnostics import estimation_shift, recalibrate_bn
    from xbn.training import NonFiniteLossError, train
    from xbn.training.steps import accuracy_function
    from xbn.training.trained import load_run

    config = _config(cell, plan, out)
    _refuse_other_settings(config)
    keras.backend.clear_session()
    run_dir = config.out_dir
    if row is None:
        try:
            metrics = train(config, log=lambda message: None)
        except NonFiniteLossError as error:  # a result of the design, not a crash: recorded
            return {**_identity(cell, plan), "diverged": str(error), "top1_ema": None, "top1_precise_bn": None,
                    "mean_shift": None, "var_shift": None, "layer_shifts": [], "corruption": {},
                    "train_seconds": None, "run": str(Path("runs") / cell.name)}
    loaded = load_run(run_dir)
    model = loaded.model
    source, _ = open_recorded(data_record(loaded.settings))
    pipeline = Pipeline(source, loaded.image_size, loaded.preprocessing, 64,
                        augment=Augment(eval_crop=loaded.eval_crop))
    top1 = accuracy_function(model, 1)
    if row is None:
        shift = estimation_shift(model, pipeline.evaluation("test"))
        row = {
            **_identity(cell, plan, source.split("train").size),
            "top1_ema": metrics["test"]["top1"], "top1_precise_bn": None,
            "mean_shift": shift.mean_shift if shift.layers else None,
            "var_shift": shift.var_shift if shift.layers else None,
            "layer_shifts": [
                {"name": layer.name, "depth": layer.depth, "mean_shift": layer.mean_shift,
                 "var_shift": layer.var_shift} for layer in shift.layers
            ],
            "corruption": {},
            "train_seconds": metrics["train_seconds"],
            "run": str(Path("runs") / cell.name),
        }
    # Corruptions are scored with the moving statistics as trained, before precise BN.
    for name, severity in cell.corruption:
        scores = row["corruption"].setdefault(name, {})
        if str(severity) not in scores:
            scores[str(severity)] = top1(pipeline.evaluation("test", corruption=(name, severity)))["top1"]
    if row["top1_precise_bn"] is None:
        if row["layer_shifts"]:
            recalibrate_bn(model, pipeline.evaluation("train"), plan.precise_bn_batches)
            row["top1_precise_bn"] = top1(pipeline.evaluation("test"))["top1"]
        else:  # nothing to recalibrate
            row["top1_precise_bn"] = row["top1_ema"]
    return row


def _worker_init(threads):
    # Before TensorFlow loads in this (spawned) process.
    for variable in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ[variable] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _work(cell, plan, out, row):
    from xbn import _files

    started = time.perf_counter()
    row = measure_cell(cell, plan, out, row)
    _files.atomic_write_text(Path(out) / "runs" / cell.name / ROW_FILE, json.dumps(row, indent=1) + "\n")
    return row, time.perf_counter() - started


def _stored_row(cell, plan, out):
    path = Path(out) / "runs" / cell.name / ROW_FILE
    if not path.is_file():
        return None
    _refuse_other_settings(_config(cell, plan, out))
    return json.loads(path.read_text())


def _complete(row, cell):
    if row is not None and row.get("diverged"):
        return True
    return row is not None and row["top1_precise_bn"] is not None and all(
        str(s) in row["corruption"].get(n, {}) for n, s in cell.corruption
    )


def _outcomes(todo, plan, out, stored, jobs):
    """``(cell, outcome)`` as runs finish; ``outcome()`` returns ``(row, seconds)`` or raises its error."""
    if jobs == 1:
        for cell in todo:
            yield cell, functools.partial(_work, cell, plan, out, stored[cell.name])
        return
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(jobs, context, _worker_init, (1,)) as pool:
        futures = {pool.submit(_work, cell, plan, out, stored[cell.name]): cell for cell in todo}
        for future in concurrent.futures.as_completed(futures):
            yield futures[future], future.result


def write_results(out, plan, rows, command=None):
    """``OUT/results.json``: the command, the plan and every finished row, in plan order."""
    from xbn import _files

    document = {"command": command, "plan": plan.describe(), "rows": rows}
    return _files.atomic_write_text(Path(out) / RESULTS_FILE, json.dumps(document, indent=1) + "\n")


def run_study(plan, out="runs/study", jobs=1, log=print, command=None):
    """Run every cell of ``plan`` (reusing finished ones); returns the rows.

    Args:
        plan: a :class:`~xbn.study.plan.Plan`.
        out: the study's folder.
        jobs: runs trained at once, each in its own single-threaded process
            (``1``: in this process, with its thread settings).
        log: a ``log(message)`` callback.
        command: the command line recorded in ``results.json``.
    """
    from xbn._progress import Progress

    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1; got {jobs!r}.")
    out = Path(out)
    cells = plan.cells()
    stored = {cell.name: _stored_row(cell, plan, out) for cell in cells}  # refuses other settings first
    rows = {name: row for name, row in stored.items() if row is not None}
    todo = [cell for cell in cells if not _complete(stored[cell.name], cell)]
    log(f"[study] {len(cells)} runs: {len(cells) - len(todo)} finished and reused, {len(todo)} to train or "
        f"complete, {jobs} at a time; folder {out}")
    bar = Progress(len(todo), "study runs")
    done = 0

    failures = []

    def failed(cell, error):
        failures.append(f"{cell.name}: {type(error).__name__}: {error}")
        log(f"[study] {cell.name} failed ({type(error).__name__}: {error}); the other runs go on")

    def finished(cell, row, seconds):
        nonlocal done
        done += 1
        rows[cell.name] = row
        write_results(out, plan, [rows[c.name] for c in cells if c.name in rows], command)
        bar.update(done, run=cell.name, top1="diverged" if row.get("diverged") else f"{row['top1_ema']:.3f}",
                   seconds=f"{seconds:.0f}")

    for cell, outcome in _outcomes(todo, plan, out, stored, jobs):
        try:
            row, seconds = outcome()
        except Exception as error:  # noqa: BLE001 - reported with the others below
            failed(cell, error)
        else:
            finished(cell, row, seconds)
    bar.finish()
    if failures:
        raise RuntimeError(
            f"{len(failures)} of {len(todo)} study runs failed; the finished ones are saved in "
            f"{out / RESULTS_FILE}, and the same command retries the others.\n  " + "\n  ".join(failures)
        )
    ordered = [rows[c.name] for c in cells]
    write_results(out, plan, ordered, command)
    return ordered
