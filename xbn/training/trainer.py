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
import json
import shutil
import time

import numpy as np

import xbn
from xbn._policy import dtype_policy
from xbn import _files
from xbn.training import checkpoint, history
from xbn.training.config import TrainConfig
from xbn.training.distribute import make_strategy, worker_role

POLICIES = {"none": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def weights_digest(model):
    """SHA-256 of every weight's bytes: equal digests, identical weights."""
    digest = hashlib.sha256()
    for array in model.get_weights():
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _make_optimizer(config, steps_per_epoch):
    import keras

    total = config.epochs * steps_per_epoch
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    peak = config.learning_rate
    if warmup:
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=peak / max(warmup, 1), decay_steps=max(total - warmup, 1),
            warmup_target=peak, warmup_steps=warmup,
        )
    else:
        schedule = keras.optimizers.schedules.CosineDecay(peak, decay_steps=max(total, 1))
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(
            schedule, momentum=config.momentum, weight_decay=config.weight_decay or None
        )
    else:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    if config.mixed_precision == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer, schedule


def changed_settings(config):
    """Where the run in ``config.out_dir`` was started with other settings.

    Compares the settings that define a run
    (:meth:`TrainConfig.training_settings`) with those stored in the folder's
    ``run.json``.  Returns ``{name: (stored, current)}``, empty when they
    agree or when the folder holds no run yet.
    """
    run_file = config.out_dir / "run.json"
    if not run_file.exists():
        return {}
    stored = json.loads(run_file.read_text())["settings"]
    current = json.loads(json.dumps(config.training_settings()))  # tuples -> lists, as stored
    return {k: (stored.get(k), v) for k, v in current.items() if stored.get(k) != v}


class _RunFolder:
    """The run folder: new, resumed, or finished."""

    def __init__(self, config, chief, task):
        self.config = config
        self.root = config.out_dir
        self.own = self.root if chief else self.root / f".worker-{task}"
        self.chief = chief

    def prepare(self):
        """Start or check the folder; returns the stored metrics if finished."""
        root = self.root
        if not self.chief:
            # The chief owns the run folder; other workers only read its
            # checkpoints and keep their own metrics beside it.  A finished
            # run is finished for every worker, or they would wait forever
            # on collectives the chief never joins.
            self.own.mkdir(parents=True, exist_ok=True)
            metrics = root / "metrics.json"
            return json.loads(metrics.read_text()) if metrics.exists() else None
        if self.config.overwrite and root.exists():
            shutil.rmtree(root)
        if (root / "run.json").exists():
            changed = changed_settings(self.config)
            if changed:
                listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))
                raise ValueError(
                    f"{root} holds a run with other settings ({listed}). Resume it with its "
                    "own settings, start over with --overwrite, or choose another --out."
                )
            metrics = root / "metrics.json"
            if metrics.exists():
                return json.loads(metrics.read_text())
        elif root.exists() and any(not p.name.startswith(".worker-") for p in root.iterdir()):
            raise FileExistsError(
                f"{root} exists and is not an xbn-train run folder; choose another --out or "
                "pass --overwrite to replace it."
            )
        self.own.mkdir(parents=True, exist_ok=True)
        return None

    def write_run_file(self, facts, source, image_size):
        if not self.chief:
            return
        info = {
            "xbn_version": xbn.__version__,
            "settings": self.config.training_settings(),
            "facts": facts.as_dict(),
            "class_names": source.class_names,
            "num_classes": source.num_classes,
            "image_size": image_size,
            "splits": {name: split.size for name, split in source.splits.items()},
            "outputs": "logits",
        }
        _files.atomic_write_text(self.root / "run.json", json.dumps(info, indent=2) + "\n")


def train(config, log=print):
    """Train as ``config`` says; returns the final metrics (a dict).

    Raises:
        ValueError, FileNotFoundError, FileExistsError: bad settings or data,
            with a message naming the problem and the fix.
        NonFiniteLossError: the loss became NaN/inf (the last good
            checkpoint is kept).
        xbn.data.images.NonFiniteImageError: an example of the data holds
            NaN or inf pixels (named in the message).
    """
    config = config if isinstance(config, TrainConfig) else TrainConfig(**config)
    config.validate()
    strategy = make_strategy(config.strategy)  # first: multi-worker needs it before any op
    chief, task = worker_role(strategy)
    log = log if chief else (lambda *a, **k: None)
    folder = _RunFolder(config, chief, task)
    finished = folder.prepare()
    if finished is not None:
        log(f"xbn-train: {folder.root} is already complete (use --overwrite to train again).")
        return finished
    from xbn.data.images import named_bad_input

    with dtype_policy(POLICIES[config.mixed_precision]), named_bad_input():
        return _Run(config, strategy, folder, log).run()


class _Run:
    def __init__(self, config, strategy, folder, log):
        self.config, self.strategy, self.folder, self.log = config, strategy, folder, log
        self.replicas = strategy.num_replicas_in_sync

    # -- set-up ----------------------------------------------------------------
    def _setup(self):
        import keras

        from xbn.data import Augment, Pipeline, load_source
        from xbn.layers import BatchNorm
        from xbn.models import get_model, model_facts

        c = self.config
        if c.batch_size % self.replicas:
            raise ValueError(
                f"--batch-size {c.batch_size} must be divisible by the {self.replicas} "
                "replicas of the strategy."
            )
        if c.jit_compile and self.replicas > 1:
            raise ValueError(
                f"--jit-compile runs one replica per worker; this strategy has {self.replicas}. "
                "Drop --jit-compile or use one device per worker."
            )
        self.facts = model_facts(c.model)
        self.log(f"xbn-train: loading --data {c.data} ...")
        self.source = load_source(
            c.data, val_split=c.val_split, val_data=c.val_data, test_data=c.test_data,
            skip_bad_images=c.skip_bad_images, image_size=c.image_size,
            num_classes=c.num_classes, label_offset=c.label_offset,
            tfds_data_dir=c.tfds_data_dir, progress=self.log,
        )
        if self.source.skipped:
            self.log(f"xbn-train: skipped {len(self.source.skipped)} unreadable image(s) (--skip-bad-images):")
            for path, reason in self.source.skipped[:10]:
                self.log(f"  {path}: {reason}")
        if "val" not in self.source.splits:
            raise ValueError(
                f"--data {c.data} has no validation split: use --val-split > 0 or --val-data."
            )
        augment = Augment(crop_scale=c.crop_scale, flip=c.flip, eval_crop=c.eval_crop)
        self.pipeline = Pipeline(
            self.source, c.image_size, self.facts.preprocessing, c.batch_size, seed=c.seed,
            augment=augment, cache=c.cache,
        )
        train_size = self.source.split("train").size
        self.steps = self.pipeline.steps("train", training=True)
        if c.steps_per_epoch:
            self.steps = min(self.steps, c.steps_per_epoch)
        if self.steps == 0:
            raise ValueError(
                f"--batch-size {c.batch_size} is larger than the {train_size} training "
                f"examples of --data {c.data}; use --batch-size {train_size} or less."
            )
        keras.utils.set_random_seed(c.seed)
        with self.strategy.scope():
            self.model = get_model(
                c.model, input_shape=(c.image_size, c.image_size, 3),
                classes=self.source.num_classes, classifier_activation=None, **c.model_args,
            )
            for layer in self.model.layers:
                if isinstance(layer, BatchNorm):
                    if c.bn_momentum is not None:
                        layer.momentum = c.bn_momentum
                    layer.synchronized = c.sync_bn
            self.optimizer, self.schedule = _make_optimizer(c, self.steps)
            self.optimizer.build(self.model.trainable_variables)
        self.folder.write_run_file(self.facts, self.source, c.image_size)
        self._build_steps()

    def _build_steps(self):
        import keras
        import tensorflow as tf

        c, model, optimizer, strategy = self.config, self.model, self.optimizer, self.strategy
        classes = self.source.num_classes
        top_k = min(5, classes)
        global_batch = c.batch_size

        def replica_train(images, labels):
            with tf.GradientTape() as tape:
                logits = tf.cast(model(images, training=True), tf.float32)
                one_hot = tf.one_hot(labels, classes)
                per_example = keras.losses.categorical_crossentropy(
                    one_hot, logits, from_logits=True, label_smoothing=c.label_smoothing
                )
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
                scaled = optimizer.scale_loss(loss)
            grads = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, tf.int32), labels), tf.float32))
            return loss, correct

        if c.jit_compile:
            replica_train = tf.function(replica_train, jit_compile=True)

        @tf.function
        def train_step(batch):
            loss, correct = strategy.run(replica_train, args=batch)
            return strategy.reduce("SUM", loss, axis=None), strategy.reduce("SUM", correct, axis=None)

        def replica_eval(images, labels):
            logits = tf.cast(model(images, training=False), tf.float32)
            loss = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
            top1 = tf.cast(tf.equal(tf.argmax(logits, -1, tf.int32), labels), tf.float32)
            topk = tf.cast(tf.math.in_top_k(labels, logits, top_k), tf.float32)
            count = tf.cast(tf.shape(labels)[0], tf.float32)
            return tf.stack([tf.reduce_sum(loss), tf.reduce_sum(top1), tf.reduce_sum(topk), count])

        @tf.function
        def eval_step(batch):
            return strategy.reduce("SUM", strategy.run(replica_eval, args=batch), axis=None)

        self.train_step, self.eval_step, self.top_k = train_step, eval_step, top_k

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
        import keras

        c = self.config
        bar = keras.utils.Progbar(self.steps, stateful_metrics=["loss", "accuracy", "lr"], verbose=1 if c.verbose and self.folder.chief else 0)
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
                    f"{self.folder.root / 'checkpoints'}. Lower --lr (now "
                    f"{c.learning_rate:g}), add --warmup-epochs, or use --mixed-precision none."
                )
            loss_sum += loss
            correct_sum += float(correct)
            seen += c.batch_size
            bar.update(step + 1, [("loss", loss_sum / (step + 1)), ("accuracy", correct_sum / seen),
                                  ("lr", float(self.schedule(self.optimizer.iterations)))])
        elapsed = time.perf_counter() - start
        return {
            "loss": loss_sum / self.steps, "accuracy": correct_sum / seen,
            "lr": float(self.schedule(self.optimizer.iterations)),
            "seconds": elapsed, "images_per_s": seen / elapsed,
        }

    def run(self):
        self._setup()
        c, root = self.config, self.folder.root
        rows, start_epoch, elapsed = [], 0, 0.0
        latest = checkpoint.latest(root / "checkpoints")
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
                checkpoint.save(
                    root / "checkpoints", epoch + 1, self.model, self.optimizer,
                    {"history": rows, "train_seconds": elapsed},
                )
                history.write_csv(root / "history.csv", rows)
                history.write_tensorboard(root / "logs", rows[-1])
                history.plot_curves(root / "curves.png", rows, f"{c.model} on {c.data}")
        return self._finish(rows, elapsed)

    def _finish(self, rows, elapsed):
        from xbn.diagnostics import recalibrate_bn

        c, root = self.config, self.folder.root
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
                "passes": report.passes, "last_change": report.last_change,
                "converged": report.converged,
            }
        metrics["val"] = self.evaluate("val")
        metrics[final_split] = self.evaluate(final_split)
        metrics["weights_digest"] = weights_digest(self.model)
        metrics["replicas"] = self.replicas
        if self.folder.chief:
            _save_model(self.model, root / "model.keras")
            if c.export:
                metrics["export"] = self._export()
        _files.atomic_write_text(
            self.folder.own / "metrics.json", json.dumps(_plain(metrics), indent=2) + "\n"
        )
        self.log(summary_table(metrics, root))
        return metrics

    def _export(self):
        """Export hook: the SavedModel arrives with the export module."""
        try:
            from xbn.export import export_run
        except ImportError:
            return None
        return str(export_run(self.folder.root, self.model, log=self.log))


def _save_model(model, path):
    """``model.save`` to a temporary ``.keras`` beside ``path``, then rename."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=".model.", suffix=".keras", dir=path.parent)
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _plain(value):
    """NumPy scalars to Python numbers, for JSON."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def summary_table(metrics, root):
    """The end-of-run summary as a small Markdown table."""
    split = metrics["final_split"]
    k = next(key for key in metrics[split] if key.startswith("top") and key != "top1")
    lines = [
        f"\nxbn-train: {metrics['model']} on {metrics['data']}, {metrics['epochs']} epochs, "
        f"{metrics['train_seconds']:.0f} s of training",
        "",
        f"| evaluation (inference mode) | examples | top-1 | {k.replace('top', 'top-')} | loss |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    rows = [(f"{split}, moving-average BN statistics", metrics["moving_statistics"][split])]
    if "recalibration" in metrics:
        rows.append(("val, precise BN statistics", metrics["val"]))
        rows.append((f"{split}, precise BN statistics", metrics[split]))
    else:
        rows.append(("val", metrics["val"]))
    for label, m in rows:
        lines.append(
            f"| {label} | {m['examples']} | {m['top1']:.2%} | {m[k]:.2%} | {m['loss']:.4f} |"
        )
    lines.append("")
    lines.append(f"run folder: {root}  (model.keras, metrics.json, history.csv, curves.png)")
    if metrics.get("export"):
        lines.append(f"SavedModel: {metrics['export']}")
    return "\n".join(lines)
