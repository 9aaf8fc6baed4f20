"""The strategy-aware training loop behind ``xbn-train``.

One loop for every strategy: a ``tf.function`` train step that runs the
forward/backward pass and the optimizer update per replica through
``strategy.run`` (Keras 3.15's ``model.fit`` fails under
``MultiWorkerMirroredStrategy``, keras issue 20585), with

- SGD (momentum, decoupled weight decay) or AdamW, linear warm-up then
  cosine decay, label smoothing; BatchNorm/GroupNorm scales and offsets and
  biases are exempt from weight decay;
- mixed precision (float16 with dynamic loss scaling, or bfloat16), XLA
  (``jit_compile``, one replica per worker), synchronized BatchNorm;
- a checkpoint after every epoch, written atomically, and resumption from
  the last finished epoch with the optimizer state when the same command is
  run again (after ``kill -9`` too);
- a progress bar per epoch, a CSV history, TensorBoard scalars, a PNG of the
  curves, and at the end: precise-BN recalibration, evaluation in inference
  mode, the ``.keras`` model, ``metrics.json`` and a summary table;
- a NaN or infinite loss stops the run with a clear message and keeps the
  last good checkpoint.

Run folder (``--out``)::

    run.json          settings, model facts, class names (what export reads)
    checkpoints/      epoch-NNNN/ folders and latest.json
    logs/             TensorBoard
    history.csv, curves.png
    model.keras       the final model (inference-ready statistics)
    metrics.json      final metrics
"""

import hashlib
import inspect
import time

import numpy as np

from xbn import _files
from xbn._policy import dtype_policy
from xbn.training import checkpoint, history, run_folder
from xbn.training.config import TrainConfig
from xbn.training.distribute import make_strategy, worker_role
from xbn.training.optimizer import make_optimizer
from xbn.training.report import summary_table

POLICIES = {"none": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
# A batch size that leaves out more than this share of the training split
# every epoch is worth a warning.
DROPPED_SHARE = 0.1


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class ExportFailedError(RuntimeError):
    """Training finished and its results are saved, but the export failed."""


def weights_digest(model):
    """SHA-256 of every weight's bytes: equal digests, identical weights."""
    digest = hashlib.sha256()
    for array in model.get_weights():
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def changed_settings(config):
    """Where the run in ``config.out_dir`` was started with other settings.

    ``{name: (stored, current)}`` over every setting that defines a run
    (see :func:`xbn.training.run_folder.changed_settings`).
    """
    return run_folder.changed_settings(config.out_dir, config.training_settings())


def train(config, log=print):
    """Train as ``config`` says; returns the final metrics (a dict).

    A finished run is not trained again: its results are reported (and a
    missing export made).

    Raises:
        ValueError, FileNotFoundError, FileExistsError: bad settings or data,
            with a message naming the problem and the fix (nothing is created
            before the settings are valid).
        xbn._files.FolderInUseError: another process trains in the folder.
        xbn._files.DiskFullError: the disk filled up (the last good
            checkpoint is named; rerun to resume).
        NonFiniteLossError: the loss became NaN/inf (the last good
            checkpoint is kept).
        xbn.data.images.NonFiniteImageError: an example of the data holds
            NaN or inf pixels (named in the message).
        ExportFailedError: the run finished and its results are saved, but
            its export failed.
    """
    config = config if isinstance(config, TrainConfig) else TrainConfig(**config)
    config.validate()
    strategy = make_strategy(config.strategy)  # first: multi-worker needs it before any op
    chief, task = worker_role(strategy)
    log = log if chief else (lambda *a, **k: None)
    for note in config.notes:
        log(f"xbn-train: note: {note}")
    folder = run_folder.RunFolder(
        config.out_dir, config.training_settings(), chief, task, config.overwrite
    )
    finished = folder.open()
    try:
        if finished is not None:
            return _report_finished(config, folder, finished, log)
        from xbn.data.images import named_bad_input

        with dtype_policy(POLICIES[config.mixed_precision]), named_bad_input():
            return _Run(config, strategy, folder, log).run()
    except BaseException:
        folder.discard_if_unused()
        raise
    finally:
        folder.release()


def _report_finished(config, folder, metrics, log):
    """A rerun of a finished run: its results, and its export if it is missing."""
    log(f"xbn-train: {folder.root} is already complete (use --overwrite to train again).")
    if folder.chief and config.export and not (folder.root / run_folder.EXPORT).is_dir():
        log("xbn-train: its export is missing; exporting it now.")
        metrics = _export(folder, metrics, None, log)
    log(summary_table(metrics, folder.root))
    return metrics


def _export(folder, metrics, model, log):
    """Export the run (the chief); the result, or the failure, goes into metrics.json."""
    from xbn.training.trained import export_run

    metrics = {k: v for k, v in metrics.items() if k not in ("export", "export_error")}
    try:
        metrics["export"] = str(export_run(folder.root, model, log=log))
    except Exception as error:  # noqa: BLE001 - every failure is reported, nothing is lost
        metrics["export_error"] = str(error)
        folder.write_metrics(_plain(metrics))
        log(summary_table(metrics, folder.root))
        raise ExportFailedError(
            f"the training finished and its results are saved in {folder.root} (model.keras, "
            f"metrics.json), but the export failed: {error} Retry it with `xbn-export "
            f"{folder.root} --out {folder.root / run_folder.EXPORT}`, or run the same command again."
        ) from None
    folder.write_metrics(_plain(metrics))
    return metrics


class _Run:
    """One training run in an opened run folder, from set-up to results.

    The steps, in the order :meth:`run` takes them:

    - set-up (:meth:`_setup`): check the batch against the strategy's
      replicas, open the data (with its separate val/test data), resolve the
      data's image defaults, build the model (the data's classes, the image
      size) and its tf.data pipeline, and size an epoch
      (:meth:`_steps_per_epoch`, which says how many images a batch leaves
      out);
    - the per-replica train and eval steps (:meth:`_build_steps`, the same
      ``xbn.training.steps`` functions ``xbn-bench`` times), and the
      optimizer and its schedule;
    - resume from the last good checkpoint, if the folder has one;
    - per epoch (:meth:`_train_epoch`): the steps, stopping on a non-finite
      loss with the last good checkpoint named; then validation, the
      history row, the checkpoint, TensorBoard logs, ``history.csv`` and the
      curves written atomically after a disk-space check (:meth:`_save_epoch`);
    - at the end (:meth:`_finish`): precise BN if asked, test and validation
      metrics, ``model.keras``, ``metrics.json``, and the export
      (its failure is reported apart: the results stay).

    Only the chief worker writes; other workers of a multi-worker run train
    and evaluate alongside it.
    """

    def __init__(self, config, strategy, folder, log):
        self.config, self.strategy, self.folder, self.log = config, strategy, folder, log
        self.replicas = strategy.num_replicas_in_sync

    # -- set-up ----------------------------------------------------------------
    def _setup(self):
        import keras

        from xbn import _hardware
        from xbn.data import Augment, Pipeline, load_source
        from xbn.models import get_model, model_facts

        c = self.config
        if c.batch_size % self.replicas:
            raise ValueError(
                f"`batch_size` {c.batch_size} must be divisible by the {self.replicas} "
                "replicas of the strategy."
            )
        if c.jit_compile and self.replicas > 1:
            raise ValueError(
                f"`jit_compile` runs one replica per worker; this strategy has {self.replicas}. "
                "Drop `jit_compile` or use one device per worker."
            )
        self.facts = model_facts(c.model)
        for note in _hardware.execution_warnings(c.mixed_precision, c.jit_compile):
            self.log(f"xbn-train: note: {note}")
        self.log(f"xbn-train: loading --data {c.data} ...")
        self.source = load_source(
            c.data, val_split=c.val_split, val_data=c.val_data, test_data=c.test_data,
            skip_bad_images=c.skip_bad_images, data_args=c.data_args, progress=self.log,
        )
        if self.source.skipped:
            self.log(f"xbn-train: skipped {len(self.source.skipped)} unreadable image(s) (--skip-bad-images):")
            for path, reason in self.source.skipped[:10]:
                self.log(f"  {path}: {reason}")
        if "val" not in self.source.splits:
            raise ValueError(
                f"`data` {c.data} has no validation split: use `val_split` > 0 or `val_data`."
            )
        self.resolved = c.resolve_data_defaults(self.source.defaults)
        if self.resolved:
            chosen = ", ".join(f"{k} {tuple(v) if isinstance(v, list) else v}" for k, v in self.resolved.items())
            self.log(f"xbn-train: for {self.source.kind} images: {chosen} (the data's defaults; set them to choose)")
        augment = Augment(crop_scale=c.crop_scale, flip=c.flip, eval_crop=c.eval_crop)
        self.pipeline = Pipeline(
            self.source, c.image_size, self.facts.preprocessing, c.batch_size, seed=c.seed,
            augment=augment, cache=c.cache,
        )
        self.steps = self._steps_per_epoch()
        keras.utils.set_random_seed(c.seed)
        with self.strategy.scope():
            self.model = get_model(
                c.model, input_shape=(c.image_size, c.image_size, 3),
                classes=self.source.num_classes, classifier_activation=None,
                **self._model_args(),
            )
            self.optimizer, self.schedule = make_optimizer(c, self.steps)
            self.optimizer.build(self.model.trainable_variables)
        # The settings as given (the data's defaults unset): what a rerun compares.
        self.folder.write_run(
            self.folder.settings, self.resolved, self.facts, self.source, c.image_size
        )
        self._build_steps()

    def _model_args(self):
        """``--model-arg`` settings, with ``--bn-momentum`` and ``--sync-bn``
        passed to the builder as ``bn_options`` (builders check them; nothing
        is changed on a built model)."""
        c = self.config
        args = dict(c.model_args)
        settings = {"bn_momentum": ("momentum", c.bn_momentum), "sync_bn": ("synchronized", c.sync_bn or None)}
        options = {option: value for option, value in settings.values() if value is not None}
        if not options:
            return args
        from xbn.models import get_builder

        if "bn_options" not in inspect.signature(get_builder(c.model)).parameters:
            given = " and ".join(s for s, (option, _) in settings.items() if option in options)
            self.log(f"xbn-train: {c.model} has no BatchNorm positions; {given} do not apply to it.")
            return args
        args["bn_options"] = {**(args.get("bn_options") or {}), **options}
        return args

    def _steps_per_epoch(self):
        """Steps per epoch, refusing a batch larger than the data and warning
        when the batch leaves a large share of the data out of every epoch."""
        c = self.config
        size = self.source.split("train").size
        steps = self.pipeline.steps("train", training=True)
        if steps == 0:
            raise ValueError(
                f"`batch_size` {c.batch_size} is larger than the {size} training "
                f"examples of `data` {c.data}; use `batch_size` {size} or less."
            )
        dropped = size - steps * c.batch_size
        if c.steps_per_epoch is None and dropped > DROPPED_SHARE * size:
            whole = max(b for b in range(1, c.batch_size + 1) if size % b == 0 and b % self.replicas == 0)
            self.log(
                f"xbn-train: note: batch {c.batch_size} over {size} training images: {steps} "
                f"step(s) an epoch, and {dropped} images ({dropped / size:.0%}) left out of every "
                f"epoch (other ones each epoch); --batch-size {whole} would use them all."
            )
        return min(steps, c.steps_per_epoch) if c.steps_per_epoch else steps

    def _build_steps(self):
        import tensorflow as tf

        from xbn.training.steps import replica_eval_step, replica_train_step

        c, strategy = self.config, self.strategy
        self.top_k = min(5, self.source.num_classes)
        replica_train = replica_train_step(
            self.model, self.optimizer, self.source.num_classes, c.label_smoothing, c.batch_size
        )
        if c.jit_compile:
            replica_train = tf.function(replica_train, jit_compile=True)
        replica_eval = replica_eval_step(self.model, self.top_k)

        @tf.function
        def train_step(batch):
            loss, correct = strategy.run(replica_train, args=batch)
            return strategy.reduce("SUM", loss, axis=None), strategy.reduce("SUM", correct, axis=None)

        # A split's last batch is smaller: traced once more with the batch
        # size left open, which then serves every split (keras does the same).
        @tf.function(reduce_retracing=True)
        def eval_step(batch):
            return strategy.reduce("SUM", strategy.run(replica_eval, args=batch), axis=None)

        self.train_step, self.eval_step = train_step, eval_step

    # -- phases --------------------------------------------------------------------
    def evaluate(self, split_name):
        totals = np.zeros(4)
        for batch in self.strategy.experimental_distribute_dataset(self.pipeline.evaluation(split_name)):
            totals += self.eval_step(batch).numpy()
        loss, top1, topk, count = totals
        return {
            "examples": int(count), "loss": loss / count, "top1": top1 / count,
            f"top{self.top_k}": topk / count,
        }

    def _train_epoch(self, epoch):
        from xbn._progress import Progress

        c = self.config
        bar = Progress(self.steps, f"epoch {epoch + 1}/{c.epochs}", enabled=c.verbose and self.folder.chief)
        loss_sum = correct_sum = seen = 0.0
        start = time.perf_counter()
        data = self.strategy.experimental_distribute_dataset(self.pipeline.train(epoch).take(self.steps))
        for step, batch in enumerate(data):
            loss, correct = self.train_step(batch)
            loss = float(loss)
            if not np.isfinite(loss):
                raise NonFiniteLossError(
                    f"the training loss became {loss} at epoch {epoch + 1}, step {step + 1}; "
                    f"stopped. The last good checkpoint (epoch {epoch}) is kept in "
                    f"{self.folder.checkpoints}. Lower `lr` (now "
                    f"{c.learning_rate:g}), add `warmup_epochs`, or use `mixed_precision` none."
                )
            loss_sum += loss
            correct_sum += float(correct)
            seen += c.batch_size
            bar.update(step + 1, loss=f"{loss_sum / (step + 1):.4f}", accuracy=f"{correct_sum / seen:.4f}")
        elapsed = time.perf_counter() - start
        result = {
            "loss": loss_sum / self.steps, "accuracy": correct_sum / seen,
            "lr": float(self.schedule(self.optimizer.iterations)),
            "seconds": elapsed, "images_per_s": seen / elapsed,
        }
        bar.finish(loss=f"{result['loss']:.4f}", accuracy=f"{result['accuracy']:.4f}",
                   lr=f"{result['lr']:.3g}")
        return result

    def run(self):
        self._setup()
        c, root = self.config, self.folder.root
        rows, start_epoch, elapsed = [], 0, 0.0
        latest = checkpoint.latest(self.folder.checkpoints)
        if latest is not None:
            with self.strategy.scope():
                state = checkpoint.restore(latest, self.model, self.optimizer)
            rows, start_epoch, elapsed = state["history"], state["epoch"], state["train_seconds"]
            self.log(f"xbn-train: resuming {root} after epoch {start_epoch} of {c.epochs}.")
        else:
            self.log(
                f"xbn-train: {c.model} on {c.data}: {self.source.split('train').size} training "
                f"images, {c.epochs} epochs of {self.steps} steps, batch {c.batch_size}, "
                f"{self.replicas} replica(s), lr {c.learning_rate:g}; run folder {root}"
            )
        for epoch in range(start_epoch, c.epochs):
            self.log(f"Epoch {epoch + 1}/{c.epochs}")
            result = self._train_epoch(epoch)
            val = self.evaluate("val")
            elapsed += result["seconds"]
            rows.append({
                "epoch": epoch + 1, "loss": result["loss"], "accuracy": result["accuracy"],
                "val_loss": val["loss"], "val_accuracy": val["top1"],
                f"val_top{self.top_k}": val[f"top{self.top_k}"], "lr": result["lr"],
                "seconds": result["seconds"], "images_per_s": result["images_per_s"],
            })
            self.log(
                f"  val (moving statistics): top-1 {val['top1']:.2%}, loss {val['loss']:.4f}; "
                f"{result['images_per_s']:.0f} images/s"
            )
            if self.folder.chief:
                self._save_epoch(epoch + 1, rows, elapsed)
        return self._finish(rows, elapsed)

    def _state_bytes(self):
        """About what a checkpoint of the model and the optimizer takes on disk."""
        variables = list(self.model.weights) + list(self.optimizer.variables)
        return int(1.1 * sum(np.prod(v.shape) * np.dtype(v.dtype).itemsize for v in variables)) + 2**20

    def _save_epoch(self, epoch, rows, elapsed):
        """Checkpoint, history, TensorBoard and curves of a finished epoch.

        The free space is checked first (a full disk in the middle of an
        HDF5 write ends in a crash, not an error), and a disk that fills up
        anyway is reported in one line; either way the previous checkpoint
        stays intact and the same command resumes from it.
        """
        c, folder = self.config, self.folder
        previous = checkpoint.latest(folder.checkpoints)
        advice = (
            f"The last good checkpoint is {previous}; free some space and run the same command to "
            "resume from it." if previous else "No checkpoint was written yet; free some space and "
            "run the same command."
        )
        needed = self._state_bytes()
        what = f"the checkpoint of epoch {epoch}"
        _files.ensure_space(folder.checkpoints, needed, what, advice)
        with _files.disk_full_errors(folder.root, f"writing {what}", needed, advice):
            checkpoint.save(
                folder.checkpoints, epoch, self.model, self.optimizer,
                {"history": rows, "train_seconds": elapsed},
            )
            history.write_csv(folder.root / "history.csv", rows)
            history.write_tensorboard(folder.root / "logs", rows[-1])
            history.plot_curves(folder.root / "curves.png", rows, f"{c.model} on {c.data}",
                                label_smoothing=c.label_smoothing)

    def _finish(self, rows, elapsed):
        from xbn.diagnostics import recalibrate_bn

        c, folder = self.config, self.folder
        final_split = "test" if "test" in self.source.splits else "val"
        metrics = {
            "model": c.model, "data": c.data, "epochs": c.epochs, "train_seconds": elapsed,
            "final_split": final_split,
            "moving_statistics": {final_split: self.evaluate(final_split)},
        }
        if c.recalibrate_bn:
            report = recalibrate_bn(
                self.model, self.pipeline.evaluation("train"), c.recalibrate_bn,
                strategy=self.strategy, progress=self.log,
            )
            metrics["recalibration"] = {
                "layers": len(report.layers), "examples": report.examples,
                "batches": report.batches, "passes": report.passes,
                "last_change": report.last_change, "converged": report.converged,
                "unsettled": report.unsettled,
            }
        metrics["val"] = self.evaluate("val")
        metrics[final_split] = self.evaluate(final_split)
        metrics["weights_digest"] = weights_digest(self.model)
        metrics["replicas"] = self.replicas
        # The results are on disk before the export is tried: an export that
        # fails loses nothing, and a rerun reports them and retries it.
        if folder.chief:
            model_file = folder.root / run_folder.MODEL_FILE
            advice = (f"The last good checkpoint is {checkpoint.latest(folder.checkpoints)}; free some space "
                      "and run the same command.")
            _files.ensure_space(folder.root, self._state_bytes(), "model.keras", advice)
            with _files.disk_full_errors(folder.root, "writing model.keras", advice=advice):
                with _files.atomic_path(model_file) as tmp:
                    self.model.save(tmp)
        metrics = _plain(metrics)
        folder.write_metrics(metrics)
        if folder.chief and c.export:
            metrics = _export(folder, metrics, self.model, self.log)
        self.log(summary_table(metrics, folder.root))
        return metrics


def _plain(value):
    """NumPy scalars to Python numbers, for JSON."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
