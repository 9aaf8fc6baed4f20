"""The training loop behind ``xbn-train``, on every keras backend.

One loop for every backend and strategy, reading tf.data pipelines; the
steps run in an engine (:mod:`xbn.training.engine`): on TensorFlow a
``tf.function`` train step that runs the forward/backward pass and the
optimizer update per replica through ``strategy.run`` (Keras 3.15's
``model.fit`` fails under ``MultiWorkerMirroredStrategy``, keras issue
20585), on JAX and PyTorch keras' own compiled steps, with

- SGD (momentum, decoupled weight decay) or AdamW, linear warm-up then
  cosine decay, label smoothing; BatchNorm/GroupNorm scales and offsets and
  biases are exempt from weight decay;
- mixed precision (float16 with dynamic loss scaling, or bfloat16), XLA
  (``jit_compile``, one replica per worker), synchronized BatchNorm;
- a start from trained weights (``weights``: loaded by layer name and
  shape, a head for other classes replaced, new GroupNorms calibrated with
  ``calibrate``), a frozen backbone (``freeze``) for the whole run or its
  first ``freeze_epochs``, after which everything trains with a fresh
  optimizer (see :mod:`xbn.training.start`);
- a checkpoint after every epoch, written atomically, and resumption from
  the last finished epoch with the optimizer state when the same command is
  run again (after ``kill -9`` too);
- a progress bar per epoch, a CSV history, TensorBoard scalars, a PNG of the
  curves, and at the end: precise-BN recalibration, evaluation in inference
  mode, the ``.keras`` model (outputting logits), ``metrics.json``, the
  SavedModel export (made by TensorFlow on every backend: a JAX- or
  PyTorch-trained model is exported from its ``model.keras`` under
  TensorFlow and checked against the model's own outputs) and a summary
  table;
- a NaN or infinite loss stops the run with a clear message and keeps the
  last good checkpoint.

Run folder (``--out``)::

    run.json          settings, model facts, class names (what export reads)
    checkpoints/      epoch-NNNN/ folders and latest.json
    logs/             TensorBoard
    history.csv, curves.png
    model.keras       the final model (inference-ready statistics), outputting
                      logits (the export adds the softmax)
    metrics.json      final metrics
"""

import hashlib
import inspect
import time

import numpy as np

from xbn import _files
from xbn._policy import dtype_policy
from xbn.errors import UsageError
from xbn.training import checkpoint, history, run_folder
from xbn.training.config import TrainConfig
from xbn.training.engine import make_engine
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
    from xbn.training.start import check_start

    config = config if isinstance(config, TrainConfig) else TrainConfig(**config)
    config.validate()
    check_start(config)
    engine = make_engine(config.strategy, config.sync_bn)  # first: multi-worker needs it before any op
    log = log if engine.chief else (lambda *a, **k: None)
    for note in config.notes:
        log(f"xbn-train: note: {note}")
    folder = run_folder.RunFolder(
        config.out_dir, config.training_settings(), engine.chief, engine.task, config.overwrite
    )
    finished = folder.open()
    try:
        if finished is not None:
            return _report_finished(config, folder, finished, log)
        from xbn.data.images import named_bad_input

        with dtype_policy(POLICIES[config.mixed_precision]), named_bad_input():
            return _Run(config, engine, folder, log).run()
    except BaseException:
        folder.discard_if_unused()
        raise
    finally:
        folder.release()
        engine.close()


def _report_finished(config, folder, metrics, log):
    """A rerun of a finished run: its results, and its export if it is missing."""
    log(f"xbn-train: {folder.root} is already complete (use `overwrite` to train again).")
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
            f"metrics.json), but the export failed: {error} Retry it with "
            f"`xbn-export {folder.root} --out {folder.root / run_folder.EXPORT}`, or run the same command again."
        ) from None
    folder.write_metrics(_plain(metrics))
    return metrics


class _Run:
    """One training run in an opened run folder, from set-up to results.

    The steps, in the order :meth:`run` takes them:

    - set-up (:meth:`_setup`): check the batch against the engine's
      replicas, open the data (with its separate val/test data), resolve the
      data's image defaults, build the model (the data's classes, the image
      size) and its tf.data pipeline, and size an epoch
      (:meth:`_steps_per_epoch`, which says how many images a batch leaves
      out);
    - the start: the last good checkpoint if the folder has one, else the
      trained weights of ``weights`` (:mod:`xbn.training.start`), frozen
      where ``freeze`` says;
    - the optimizer of the current phase and the engine's compiled steps
      (:meth:`_compile`: again when ``freeze_epochs`` unfreezes);
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

    def __init__(self, config, engine, folder, log):
        self.config, self.engine, self.folder, self.log = config, engine, folder, log
        self.replicas = engine.replicas
        self.start = self.start_record = None

    # -- set-up ----------------------------------------------------------------
    def _setup(self):
        import keras

        from xbn import _hardware
        from xbn.data import Augment, Pipeline, load_source
        from xbn.models import get_model, model_facts

        c = self.config
        if c.batch_size % self.replicas:
            raise UsageError(
                f"`batch_size` {c.batch_size} must be divisible by the {self.replicas} "
                "replicas of the strategy."
            )
        if c.jit_compile and self.replicas > 1 and self.engine.name == "tensorflow":
            raise UsageError(
                f"`jit_compile` runs one replica per worker; this strategy has {self.replicas}. "
                "Drop `jit_compile` or use one device per worker."
            )
        for note in _hardware.execution_warnings(c.mixed_precision, c.jit_compile):
            self.log(f"xbn-train: note: {note}")
        self.log(f"xbn-train: loading `data` {c.data} ...")
        self.source = load_source(
            c.data, val_split=c.val_split, val_data=c.val_data, test_data=c.test_data,
            skip_bad_images=c.skip_bad_images, data_args=c.data_args, progress=self.log,
        )
        if self.source.skipped:
            self.log(f"xbn-train: skipped {len(self.source.skipped)} unreadable image(s) (`skip_bad_images`):")
            for path, reason in self.source.skipped[:10]:
                self.log(f"  {path}: {reason}")
        if "val" not in self.source.splits:
            raise UsageError(
                f"`data` {c.data} has no validation split: use `val_split` > 0 or `val_data`."
            )
        if self.source.num_classes < 2:
            raise UsageError(
                f"`data` {c.data} has {self.source.num_classes} class ({', '.join(self.source.class_names)}); "
                "a classifier trains on at least 2 classes (a folder source takes one sub-folder per class)."
            )
        self.resolved = c.resolve_data_defaults(self.source.defaults)
        if self.resolved:
            chosen = ", ".join(f"{k} {tuple(v) if isinstance(v, list) else v}" for k, v in self.resolved.items())
            self.log(f"xbn-train: for {self.source.kind} images: {chosen} (the data's defaults; set them to choose)")
        keras.utils.set_random_seed(c.seed)
        with self.engine.scope():
            self.model = get_model(
                c.model, input_shape=(c.image_size, c.image_size, 3),
                classes=self.source.num_classes, classifier_activation=None,
                **self._model_args(),
            )
        # Named weights may bring their own preprocessing (torchvision's files: "torch").
        self.facts = model_facts(c.model)
        augment = Augment(crop_scale=c.crop_scale, flip=c.flip, eval_crop=c.eval_crop)
        self.pipeline = Pipeline(
            self.source, c.image_size, self.preprocessing, c.batch_size, seed=c.seed,
            augment=augment, cache=c.cache,
        )
        self.steps = self._steps_per_epoch()

    @property
    def preprocessing(self):
        """The model's preprocessing: its family's, or that of the named weights it starts from."""
        from xbn.training.start import weights_entry_for

        entry = weights_entry_for(self.config.model, self.config.weights) if self.config.weights else None
        return entry.preprocessing if entry is not None else self.facts.preprocessing

    def _model_args(self):
        """``--model-arg`` settings, with those named ``--weights`` need
        (their layout), and ``--bn-momentum`` and ``--sync-bn`` passed to
        the builder as ``bn_options`` (builders check them; nothing is
        changed on a built model)."""
        from xbn.training.start import entry_arguments

        c = self.config
        args = {**c.model_args, **entry_arguments(c)}
        settings = {"bn_momentum": ("momentum", c.bn_momentum), "sync_bn": ("synchronized", c.sync_bn or None)}
        options = {option: value for option, value in settings.values() if value is not None}
        if not options:
            return args
        from xbn.models import get_builder

        if "bn_options" not in inspect.signature(get_builder(c.model)).parameters:
            given = " and ".join(s for s, (option, _) in settings.items() if option in options)
            self.log(f"xbn-train: {c.model} has no BatchNorm positions; {given} do not apply to it.")
            return args
        if args.get("bn_kind") == "gn":  # GroupNorm at the BatchNorm places (timm's GN weights)
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
            raise UsageError(
                f"`batch_size` {c.batch_size} is larger than the {size} training "
                f"examples of `data` {c.data}; use `batch_size` {size} or less."
            )
        dropped = size - steps * c.batch_size
        if c.steps_per_epoch is None and dropped > DROPPED_SHARE * size:
            whole = max(b for b in range(1, c.batch_size + 1) if size % b == 0 and b % self.replicas == 0)
            self.log(
                f"xbn-train: note: batch {c.batch_size} over {size} training images: {steps} "
                f"step(s) an epoch, and {dropped} images ({dropped / size:.0%}) left out of every "
                f"epoch (other ones each epoch); `batch_size` {whole} would use them all."
            )
        return min(steps, c.steps_per_epoch) if c.steps_per_epoch else steps

    def _phase(self, epoch):
        """The phase of ``epoch`` (0-based): ``None`` (one phase), ``"frozen"`` or ``"unfrozen"``."""
        c = self.config
        if c.freeze == "none":
            return None
        if c.freeze_epochs is None:
            return "frozen"
        return "frozen" if epoch < c.freeze_epochs else "unfrozen"

    def _compile(self, phase):
        """The optimizer of ``phase`` over the model's trainable weights, and the engine's steps."""
        from xbn.training.start import set_frozen

        c = self.config
        if c.freeze != "none":
            set_frozen(self.model, phase == "frozen")
        with self.engine.scope():
            self.optimizer, self.schedule = make_optimizer(
                c, self.steps, phase if c.freeze_epochs is not None else None
            )
            self.optimizer.build(self.model.trainable_variables)
        self.top_k = min(5, self.source.num_classes)
        self.engine.compile(self.model, self.optimizer, self.source.num_classes, c.label_smoothing, c.batch_size,
                            c.jit_compile, self.top_k)
        self.compiled_phase = phase

    def _start_from_weights(self):
        """Load ``weights`` (a run without a checkpoint yet), and say what was loaded."""
        from xbn.training.start import load_start

        c = self.config
        self.log(f"xbn-train: starting from `weights` {c.weights} ...")
        self.start = load_start(self.model, c, c.image_size, self.pipeline.evaluation("train"), progress=self.log)
        for line in self.start.lines():
            self.log(f"xbn-train: {line}")

    def _score_start(self):
        """What the loaded network scores before any training, where its head
        was loaded too (recorded with the start in ``run.json``)."""
        if self.start is None or "predictions" in self.start.new:
            return
        split = "test" if "test" in self.source.splits else "val"
        result = self.evaluate(split)
        self.log(f"xbn-train: before training: {split} top-1 {result['top1']:.2%}, loss {result['loss']:.4f}")
        self.start.before_training = {split: _plain(result)}

    def _write_run(self):
        """``run.json``: the settings as given (the data's defaults unset: what a
        rerun compares), and where the weights came from."""
        start = self.start.as_dict() if self.start is not None else None
        if start is None and run_folder.is_run(self.folder.root):
            start = run_folder.read_run(self.folder.root).get("weights")  # a resumed run: its first start
        self.start_record = start
        self.folder.write_run(
            self.folder.settings, self.resolved, self.facts, self.source, self.config.image_size,
            weights=start, backend=self.engine.name, preprocessing=self.preprocessing,
        )

    # -- phases --------------------------------------------------------------------
    def evaluate(self, split_name):
        loss, top1, topk, count = self.engine.evaluate(self.pipeline.evaluation(split_name))
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
        for step, (loss, correct) in enumerate(self.engine.train(self.pipeline.train(epoch).take(self.steps))):
            if not np.isfinite(loss):
                raise NonFiniteLossError(
                    f"the training loss became {loss} at epoch {epoch + 1}, step {step + 1}; "
                    f"stopped. The last good checkpoint (epoch {epoch}) is kept in "
                    f"{self.folder.checkpoints}. Lower `lr` (now "
                    f"{c.learning_rate:g}), add `warmup_epochs`, or use `mixed_precision` none."
                )
            loss_sum += loss
            correct_sum += correct
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
            start_epoch = checkpoint.read_state(latest)["epoch"]
            self._compile(self._phase(start_epoch))
            # At a phase boundary the checkpoint's optimizer is the last
            # phase's: the new phase starts with a fresh one, as it does in
            # a run never interrupted.
            same_phase = self._phase(start_epoch - 1) == self.compiled_phase
            with self.engine.scope():
                state = checkpoint.restore(latest, self.model, self.optimizer if same_phase else None)
            rows, elapsed = state["history"], state["train_seconds"]
            self.log(f"xbn-train: resuming {root} after epoch {start_epoch} of {c.epochs}.")
        else:
            if c.weights is not None:
                self._start_from_weights()
            self._compile(self._phase(0))
            self._score_start()
            frozen = " (backbone frozen)" if self.compiled_phase == "frozen" else ""
            self.log(
                f"xbn-train: {c.model} on {c.data} ({self.engine.name}): {self.source.split('train').size} "
                f"training images, {c.epochs} epochs of {self.steps} steps, batch {c.batch_size}, "
                f"{self.replicas} replica(s), lr {c.learning_rate:g}{frozen}"
            )
            self.log(f"xbn-train: run folder {root}")
        self._write_run()
        for epoch in range(start_epoch, c.epochs):
            phase = self._phase(epoch)
            if phase != self.compiled_phase:
                self._compile(phase)
                self.log(f"xbn-train: unfrozen after {epoch} epochs: every layer trains, a new optimizer at peak "
                         f"lr {c.unfrozen_learning_rate:g}.")
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
        if self.compiled_phase == "frozen":
            from xbn.training.start import set_frozen

            set_frozen(self.model, False)  # the saved model's layers are all trainable, as built
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
                strategy=getattr(self.engine, "strategy", None), progress=self.log,
            )
            metrics["recalibration"] = {
                "layers": len(report.layers), "examples": report.examples,
                "batches": report.batches, "passes": report.passes,
                "last_change": report.last_change, "converged": report.converged,
                "unsettled": report.unsettled,
            }
        metrics["val"] = self.evaluate("val")
        metrics[final_split] = self.evaluate(final_split)
        if self.start_record and self.start_record.get("before_training"):
            metrics["before_training"] = self.start_record["before_training"]
        metrics["weights_digest"] = weights_digest(self.model)
        metrics["replicas"] = self.replicas
        metrics["backend"] = self.engine.name
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
