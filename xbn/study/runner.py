"""Train and measure the study's runs, in parallel, resumably.

Every :class:`~xbn.study.plan.Cell` is an ``xbn-train`` run in
``OUT/runs/<name>`` trained with its moving statistics left as trained (no
precise BN), then measured according to its purpose:

- ``tuning`` runs: ``val_top1``, validation top-1 with the moving statistics;
- ``convergence`` runs: ``top1_ema`` (test top-1);
- ``study`` runs:

  - ``top1_ema``: test top-1 in inference mode with BatchNorm's moving
    averages (momentum 0.9) as trained, and ``top1_precise_bn`` after
    precise BN (:func:`xbn.diagnostics.recalibrate_bn` on the training
    split), with ``precise_bn_changed``, the test images whose prediction
    precise BN changed, ``precise_bn_passes`` and ``precise_bn_converged``
    (its :class:`~xbn.diagnostics.RecalibrationReport`'s; absent in rows
    measured before they were recorded);
  - ``layer_shifts``: every BatchNorm's estimation shift on the test split,
    on the unaugmented training split (``train_mean_shift`` ...), and the
    same shift between the population statistics of the two halves of the
    test split (``noise_mean_shift`` ...), twice the split's sampling error
    (the noise floor is half of it: :func:`xbn.study.analysis.noise_floor`);
  - ``corruption``: test top-1 per corruption and severity, where the plan
    asks (:mod:`xbn.data.corruptions`);
  - ``shift_top1``: top-1 on the plan's ``shift_data`` (the plain digits'
    test split: the same scans, not blended), a distribution shift.

The row goes to ``study_row.json`` in the run folder, and every finished
row to ``OUT/results.json``.  A run whose row exists is reused (a missing
corruption score is added), an interrupted run resumes from its last epoch,
and a run folder trained with other settings is refused.  The tuning runs
come first: the study runs take the learning rate they chose
(:func:`chosen_scales`).

Small-batch steps cost mostly per-operation overhead, which one thread
runs as fast as two: with ``jobs=2`` two single-threaded worker processes
train two runs at once, about twice the throughput of one two-threaded
process on two cores.  A worker dies with the study (it watches its
parent), so a killed study leaves no worker holding a run folder.
"""

import concurrent.futures
import functools
import json
import math
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np

from xbn import _checks
from xbn.errors import UsageError

ROW_FILE = "study_row.json"
RESULTS_FILE = "results.json"


@functools.lru_cache(maxsize=8)
def _split_size(data, split, data_args=()):
    from xbn.data import load_source

    return load_source(data, data_args=dict(data_args)).split(split).size


def _train_size(plan):
    return _split_size(plan.data, "train", plan.data_args)


def _steps(cell, plan):
    """``(steps per epoch, epochs)`` of a run."""
    per_epoch = _train_size(plan) // cell.batch_size
    if plan.steps_per_epoch:
        per_epoch = min(per_epoch, plan.steps_per_epoch)
    return per_epoch, cell.epochs or plan.epochs


def _model_args(cell, plan):
    """The form's builder arguments, with batch renormalization's ramp sized
    to this run's steps."""
    args = cell.form.args
    if cell.form.norm == "brn":
        from xbn.study.plan import brn_ramp

        per_epoch, epochs = _steps(cell, plan)
        warmup = per_epoch if epochs > 1 else 0
        args = {**args, "bn_options": {**args.get("bn_options", {}),
                                       "renorm_ramp": brn_ramp(per_epoch * epochs, warmup)}}
    return args


def _run_folder(cell, out):
    """``OUT/runs/<name>``: the run's folder, which holds its row."""
    return Path(out) / "runs" / cell.name


def _config(cell, plan, out):
    from xbn.training import TrainConfig

    epochs = cell.epochs or plan.epochs
    return TrainConfig(
        model=cell.form.model, model_args=_model_args(cell, plan), data=plan.data, data_args=dict(plan.data_args),
        batch_size=cell.batch_size,
        epochs=epochs, steps_per_epoch=plan.steps_per_epoch, lr=plan.lr(cell.batch_size, cell.lr_scale),
        warmup_epochs=1.0 if epochs > 1 else 0.0, image_size=plan.image_size, recalibrate_bn=0,
        export=False, verbose=False, seed=cell.seed, out=str(_run_folder(cell, out)),
    )


def _refuse_other_settings(config):
    from xbn.training import changed_settings

    changed = changed_settings(config)
    if changed:
        details = "; ".join(f"{k}: {old!r} there, {new!r} asked" for k, (old, new) in changed.items())
        raise UsageError(
            f"{config.out_dir} holds a run with other settings ({details}). Use another `out` "
            "folder for this study, or delete that run to retrain it."
        )


def _identity(cell, plan):
    """The row's description of the run: what was trained, how long."""
    per_epoch, epochs = _steps(cell, plan)
    return {
        "model": cell.form.label, "registered": cell.form.model, "model_args": _model_args(cell, plan),
        "norm": cell.form.norm, "batch_size": cell.batch_size, "seed": cell.seed, "purpose": cell.purpose,
        "epochs": epochs, "steps": epochs * per_epoch, "lr_scale": cell.lr_scale,
        "lr": plan.lr(cell.batch_size, cell.lr_scale), "run": str(Path("runs") / cell.name),
    }


def _layer_rows(model, pipeline, collector):
    """Per BatchNorm in depth order: the shift on the test split, on the
    unaugmented training split, and between the test split's halves."""
    from xbn.diagnostics.estimation_shift import shift_metrics

    test = pipeline.evaluation("test")
    batches = math.ceil(pipeline.source.split("test").size / pipeline.batch_size)
    first, _ = collector.collect(test.take(batches // 2))
    second, _ = collector.collect(test.skip(batches // 2))
    train, _ = collector.collect(pipeline.evaluation("train"))
    positions = {layer.name: i for i, layer in enumerate(model.layers)}
    last = max(len(model.layers) - 1, 1)
    rows = []
    for layer in collector.layers:
        moving = (np.asarray(layer.moving_mean), np.asarray(layer.moving_variance))
        whole = _merge(first[layer.name], second[layer.name])
        row = {"name": layer.name, "depth": positions[layer.name] / last}
        for prefix, (mean, var, _) in (("", whole), ("train_", train[layer.name])):
            row[prefix + "mean_shift"], row[prefix + "var_shift"] = shift_metrics(*moving, mean, var, layer.epsilon)
        a, b = first[layer.name], second[layer.name]
        row["noise_mean_shift"], row["noise_var_shift"] = shift_metrics(a[0], a[1], b[0], b[1], layer.epsilon)
        rows.append(row)
    return rows


def _merge(a, b):
    """Pooled ``(mean, variance, count)`` of two ``(mean, variance, count)``
    (Chan et al.'s parallel formula, float64)."""
    mean_a, var_a, n_a = (np.asarray(v, np.float64) for v in a)
    mean_b, var_b, n_b = (np.asarray(v, np.float64) for v in b)
    n = n_a + n_b
    delta = mean_b - mean_a
    mean = mean_a + delta * n_b / n
    var = (var_a * n_a + var_b * n_b + delta**2 * n_a * n_b / n) / n
    return mean, var, n


def _average(layers, key):
    return float(np.mean([layer[key] for layer in layers])) if layers else None


def measure_cell(cell, plan, out, row=None):
    """Train (or resume, or reuse) one run and measure it; returns its row."""
    import keras

    from xbn.data import Augment, Pipeline
    from xbn.data.sources import data_record, load_source, open_recorded
    from xbn.diagnostics import StatisticsCollector, recalibrate_bn
    from xbn.training import NonFiniteLossError, train
    from xbn.training.steps import accuracy_function, prediction_function
    from xbn.training.trained import load_run

    config = _config(cell, plan, out)
    _refuse_other_settings(config)
    keras.backend.clear_session()
    if row is None:
        try:
            metrics = train(config, log=lambda message: None)
        except NonFiniteLossError as error:  # a result of the design, not a crash: recorded
            return {**_identity(cell, plan), "diverged": str(error), "top1_ema": None, "top1_precise_bn": None,
                    "val_top1": None, "mean_shift": None, "var_shift": None, "layer_shifts": [],
                    "corruption": {}, "train_seconds": None}
        row = {**_identity(cell, plan), "top1_ema": metrics["test"]["top1"], "val_top1": metrics["val"]["top1"],
               "train_seconds": metrics["train_seconds"], "corruption": {}, "top1_precise_bn": None}
        if cell.purpose != "study":
            return row
    loaded = load_run(config.out_dir)
    model = loaded.model
    source, _ = open_recorded(data_record(loaded.settings))

    def pipeline_of(data_source):
        return Pipeline(data_source, loaded.image_size, loaded.preprocessing, 64,
                        augment=Augment(eval_crop=loaded.eval_crop))

    pipeline = pipeline_of(source)
    top1 = accuracy_function(model, 1)
    if "layer_shifts" not in row:
        collector = StatisticsCollector(model)
        layers = _layer_rows(model, pipeline, collector) if collector.layers else []
        row["layer_shifts"] = layers
        for prefix in ("", "train_", "noise_"):
            row[prefix + "mean_shift"] = _average(layers, prefix + "mean_shift")
            row[prefix + "var_shift"] = _average(layers, prefix + "var_shift")
    if plan.shift_data and "shift_top1" not in row:
        row["shift_top1"] = top1(pipeline_of(load_source(plan.shift_data)).evaluation("test"))["top1"]
    # Corruptions are scored with the moving statistics as trained, before precise BN.
    for name, severity in cell.corruption:
        scores = row["corruption"].setdefault(name, {})
        if str(severity) not in scores:
            scores[str(severity)] = top1(pipeline.evaluation("test", corruption=(name, severity)))["top1"]
    if row["top1_precise_bn"] is None:
        if row["layer_shifts"]:
            predict, test = prediction_function(model), pipeline.evaluation("test")
            before, _ = predict(test)
            report = recalibrate_bn(model, pipeline.evaluation("train"), plan.precise_bn_batches)
            after, labels = predict(test)
            row["top1_precise_bn"] = float(np.mean(after == labels))
            row["precise_bn_changed"] = int(np.sum(before != after))
            row["precise_bn_passes"], row["precise_bn_converged"] = report.passes, report.converged
        else:  # nothing to recalibrate
            row["top1_precise_bn"], row["precise_bn_changed"] = row["top1_ema"], 0
    return row


def _worker_init(threads, parent):
    """A worker process's set-up: threads before TensorFlow loads, and a
    watch on the study that started it, so that a killed study (kill -9
    included) takes its workers with it instead of leaving them training
    and holding their run folders' locks."""
    for variable in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ[variable] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["XBN_LOCK_HOLDER"] = f"xbn-study (a worker of process {parent})"
    _quiet_retracing()
    import threading

    def watch():
        while True:
            if os.getppid() != parent:  # re-parented: the study is gone
                os._exit(1)
            time.sleep(1.0)

    threading.Thread(target=watch, name="xbn-study-parent-watch", daemon=True).start()


def _quiet_retracing():
    """Every run traces its own functions: TensorFlow's "retracing" warnings
    say nothing here and flooded the study's output."""
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def _work(cell, plan, out, row):
    from xbn import _files

    started = time.perf_counter()
    row = measure_cell(cell, plan, out, row)
    _files.atomic_write_text(_run_folder(cell, out) / ROW_FILE, json.dumps(row, indent=1) + "\n")
    return row, time.perf_counter() - started


def _stored_row(cell, plan, out):
    path = _run_folder(cell, out) / ROW_FILE
    if not path.is_file():
        return None
    _refuse_other_settings(_config(cell, plan, out))
    row = json.loads(path.read_text())
    if row.get("purpose", cell.purpose) != cell.purpose:
        # The folder is also another plan's run of another purpose (a form's
        # own normal epochs equal to another's convergence epochs): the
        # same training, whose row is taken as this run's where it can be.
        return twin_row(cell, plan, [row])
    return row


def _complete(row, cell, plan):
    if row is None:
        return False
    if row.get("diverged") or cell.purpose != "study":
        return True
    return (row["top1_precise_bn"] is not None and "layer_shifts" in row
            and ("shift_top1" in row or not plan.shift_data)
            and all(str(s) in row["corruption"].get(n, {}) for n, s in cell.corruption))


def _adopt_twins(cells, plan, out, stored, log):
    """Give each convergence run that has no row the row of a finished run
    in ``out`` that trained exactly what it would (:func:`twin_row`)."""
    from xbn import _files

    missing = [c for c in cells if c.purpose == "convergence" and stored[c.name] is None]
    if not missing:
        return
    finished = [json.loads(path.read_text()) for path in sorted((Path(out) / "runs").glob(f"*/{ROW_FILE}"))]
    for cell in missing:
        row = twin_row(cell, plan, finished)
        if row is not None:
            _run_folder(cell, out).mkdir(parents=True, exist_ok=True)
            _files.atomic_write_text(_run_folder(cell, out) / ROW_FILE, json.dumps(row, indent=1) + "\n")
            stored[cell.name] = row
            log(f"[study] {cell.name}: the same training as {row.get('same_run_as', row['run'])}, whose test "
                "top-1 it takes")


def _outcomes(todo, plan, out, stored, jobs):
    """``(cell, outcome)`` as runs finish; ``outcome()`` returns ``(row, seconds)`` or raises its error."""
    if jobs == 1:
        for cell in todo:
            yield cell, functools.partial(_work, cell, plan, out, stored[cell.name])
        return
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(jobs, context, _worker_init, (1, os.getpid())) as pool:
        futures = {pool.submit(_work, cell, plan, out, stored[cell.name]): cell for cell in todo}
        for future in concurrent.futures.as_completed(futures):
            yield futures[future], future.result


def write_results(out, plan, rows, command=None, scales=None):
    """``OUT/results.json``: the command, the plan, the chosen learning-rate
    scales and every finished row, in plan order."""
    from xbn import _files

    test_images = _split_size(plan.data, "test", plan.data_args)
    document = {"command": command, "plan": {**plan.describe(), "test_images": test_images},
                "rows": rows,
                "lr_scales": [{"model": m, "batch_size": b, "scale": s}
                              for (m, b), s in sorted((scales or {}).items())]}
    return _files.atomic_write_text(Path(out) / RESULTS_FILE, json.dumps(document, indent=1) + "\n")


def chosen_scales(rows):
    """``{(form, batch): scale}``: per form and batch, the tuning run's scale
    with the best validation top-1 (a tie goes to the scale nearest 1)."""
    best = {}
    for row in rows:
        if row.get("purpose") != "tuning":
            continue
        key = (row["model"], row["batch_size"])
        score = -1.0 if row.get("diverged") or row["val_top1"] is None else row["val_top1"]
        rank = (score, -abs(math.log(row["lr_scale"])))
        if key not in best or rank > best[key][0]:
            best[key] = (rank, row["lr_scale"])
    return {key: scale for key, (_, scale) in best.items()}


# Plan settings every row rests on beyond its own identity (model, batch,
# seed, epochs, learning rate): rows made with other ones are not reused.
SHARED_SETTINGS = ("data", "data_args", "image_size", "shift_data", "precise_bn_batches", "steps_per_epoch",
                   "warmup_epochs")


# What a row says of its run beyond its training: a convergence run takes
# the training of a finished run that differs from it in these alone.
NOT_TRAINING = ("purpose", "run")


def _training(identity):
    return json.dumps({k: v for k, v in identity.items() if k not in NOT_TRAINING}, sort_keys=True)


def twin_row(cell, plan, rows):
    """A convergence run's row taken from a finished run that trained
    exactly what it would (the same model, arguments, batch, seed, epochs,
    steps and learning rate): a form given fewer normal epochs
    (:attr:`~xbn.study.plan.Plan.form_normal_epochs`) is checked against
    twice them, which may be the plan's own normal epochs, whose runs are
    finished already.  ``None`` where ``rows`` hold no such run.

    A twin in another folder is named (``same_run_as``) and its training
    time not claimed again (its own row holds it); one in the cell's own
    folder (a run of another purpose there) is this run."""
    if cell.purpose != "convergence":
        return None
    identity = json.loads(json.dumps(_identity(cell, plan)))
    wanted = _training(identity)
    for row in rows:
        if (isinstance(row, dict) and not row.get("diverged") and row.get("top1_ema") is not None
                and _training({k: row.get(k) for k in identity}) == wanted):
            taken = {**identity, "top1_ema": row["top1_ema"], "val_top1": row.get("val_top1"),
                     "train_seconds": row.get("train_seconds"), "corruption": {}, "top1_precise_bn": None}
            if row["run"] != identity["run"]:
                taken.update(train_seconds=None, same_run_as=row["run"])
            return taken
    return None


def is_results(document):
    """Whether a parsed JSON document is a study's ``results.json``: a
    ``plan`` and a list of row objects."""
    return (isinstance(document, dict) and isinstance(document.get("plan"), dict)
            and isinstance(document.get("rows"), list) and all(isinstance(row, dict) for row in document["rows"]))


def reuse_rows(document, plan, out, log=print, source="the results", scales=None):
    """Seed ``OUT/runs`` with the finished rows of another study's results.

    A published ``results.json`` holds every row its study measured; a
    larger plan (more forms, seeds or batch sizes) then trains only what
    the rows lack, although their run folders are gone.  A row is reused
    where a run of ``plan`` has its name and exactly its identity (model,
    builder arguments, batch, seed, purpose, epochs, steps, learning rate)
    and holds every measurement that run needs, or, for a convergence run,
    where a row trained exactly what it would (:func:`twin_row`); a run
    folder already in ``out`` is never overwritten.

    Args:
        document: a parsed ``results.json``.
        plan: the :class:`~xbn.study.plan.Plan` to run.
        out: the study's folder.
        log: a ``log(message)`` callback.
        source: how messages name ``document`` (its path).
        scales: ``{(form, batch): scale}`` chosen by this plan's tuning
            runs (:func:`chosen_scales`); ``None``: those of ``document``'s
            tuning runs of the plan (before this plan's tuning has run; a
            form's scale the document lacks is interpolated, so
            :func:`run_study` reuses again once its tuning is done).

    Returns:
        The number of rows written.

    Raises:
        ValueError: ``document`` was made with other data, input size or
            schedule (:data:`SHARED_SETTINGS`), or is no study's results.
    """
    from xbn import _files

    if not is_results(document):
        raise UsageError(f"{source} is not a study's results.json (it has no 'plan' and 'rows').")
    mine = json.loads(json.dumps(plan.describe()))  # tuples as the file has them: lists
    changed = {k: (document["plan"].get(k), mine[k]) for k in SHARED_SETTINGS if document["plan"].get(k) != mine[k]}
    if changed:
        details = "; ".join(f"{k}: {old!r} there, {new!r} asked" for k, (old, new) in changed.items())
        raise UsageError(f"{source} was measured with other settings ({details}); its rows cannot be reused "
                         "by this plan. Drop `reuse`, or ask for the same settings.")
    by_name = {Path(row.get("run", "")).name: row for row in document["rows"]}
    tuning, tuned = plan.tuning_cells(), scales is not None
    if scales is None:
        scales = chosen_scales([by_name[c.name] for c in tuning if c.name in by_name])
    written = 0
    for cell in (*tuning, *plan.cells(scales)):
        row = by_name.get(cell.name) or twin_row(cell, plan, document["rows"])
        identity = json.loads(json.dumps(_identity(cell, plan)))
        if row is None or any(row.get(k) != v for k, v in identity.items()) or not _complete(row, cell, plan):
            continue
        path = _run_folder(cell, out) / ROW_FILE
        if path.parent.exists():
            continue
        path.parent.mkdir(parents=True)
        _files.atomic_write_text(path, json.dumps(row, indent=1) + "\n")
        written += 1
    log(f"[study] reused {written} of the {len(document['rows'])} rows of {source}"
        + (" with the learning rates this plan's tuning chose" if tuned else "")
        + "; the others are not runs of this plan, lack a measurement it needs, or are in the folder already")
    return written


def run_study(plan, out="runs/study", jobs=1, log=print, command=None, reuse=None, reuse_source="the results"):
    """Run every cell of ``plan`` (reusing finished ones); returns the rows.

    The tuning runs first, then the study and convergence runs with the
    learning rates they chose.  With ``reuse`` (a parsed ``results.json``)
    its finished rows are taken first (:func:`reuse_rows`), and again once
    the tuning has chosen the learning rates, which the tuning rows it
    lacked could change.

    Args:
        plan: a :class:`~xbn.study.plan.Plan`.
        out: the study's folder.
        jobs: runs trained at once, each in its own single-threaded process
            (``1``: in this process, with its thread settings).
        log: a ``log(message)`` callback.
        command: the command line recorded in ``results.json``.
        reuse: a published study's parsed ``results.json``, or ``None``.
        reuse_source: how messages name ``reuse`` (its path).
    """
    _checks.check_int("run_study", "jobs", jobs, minimum=1, type_error=ValueError)
    _quiet_retracing()
    out = Path(out)
    if reuse is not None:  # first: rows measured with other settings are refused before anything is written
        reuse_rows(reuse, plan, out, log, reuse_source)
    (out / "runs").mkdir(parents=True, exist_ok=True)  # an unwritable folder is refused here, once
    rows = {}
    tuning = plan.tuning_cells()
    if tuning:
        _run_cells(tuning, plan, out, jobs, log, command, rows, "tuning runs", lambda: {})
    scales = chosen_scales(rows.values())
    if reuse is not None and tuning:
        reuse_rows(reuse, plan, out, log, reuse_source, scales)
    cells = plan.cells(scales)
    _run_cells(cells, plan, out, jobs, log, command, rows, "study runs", lambda: scales, tuning)
    ordered = [rows[c.name] for c in (*tuning, *cells)]
    write_results(out, plan, ordered, command, scales)
    return ordered


def _run_cells(cells, plan, out, jobs, log, command, rows, what, scales, before=()):
    """Run ``cells`` (reusing finished ones) into ``rows``; results.json is
    rewritten as each finishes."""
    from xbn._progress import Progress

    stored = {cell.name: _stored_row(cell, plan, out) for cell in cells}  # refuses other settings first
    _adopt_twins(cells, plan, out, stored, log)
    rows.update({name: row for name, row in stored.items() if row is not None})
    todo = [cell for cell in cells if not _complete(stored[cell.name], cell, plan)]
    log(f"[study] {len(cells)} {what}: {len(cells) - len(todo)} finished and reused, {len(todo)} to train or "
        f"complete, {jobs} at a time; folder {out}")
    bar = Progress(len(todo), what)
    done = 0
    failures = []
    order = [*before, *cells]

    for cell, outcome in _outcomes(todo, plan, out, stored, jobs):
        try:
            row, seconds = outcome()
        except Exception as error:  # noqa: BLE001 - reported with the others below
            failures.append(f"{cell.name}: {type(error).__name__}: {error}")
            log(f"[study] {cell.name} failed ({type(error).__name__}: {error}); the other runs go on")
            continue
        done += 1
        rows[cell.name] = row
        write_results(out, plan, [rows[c.name] for c in order if c.name in rows], command, scales())
        score = row.get("val_top1") if cell.purpose == "tuning" else row["top1_ema"]
        bar.update(done, run=cell.name, top1="diverged" if row.get("diverged") else f"{score:.3f}",
                   seconds=f"{seconds:.0f}")
    bar.finish()
    if failures:  # reported in one line per run, the finished ones kept: no traceback
        raise UsageError(
            f"{len(failures)} of {len(todo)} {what} failed; the finished ones are saved in "
            f"{out / RESULTS_FILE}, and the same command retries the others.\n  " + "\n  ".join(failures)
        )
