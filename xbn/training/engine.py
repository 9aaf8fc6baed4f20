"""Where ``xbn-train``'s steps run: one interface, a TensorFlow and a keras engine.

The training loop (:mod:`xbn.training.trainer`) reads its data from
tf.data pipelines on every keras backend and asks an engine for the rest:

- :class:`TensorFlowEngine` (``KERAS_BACKEND=tensorflow``): the
  per-replica steps of :mod:`xbn.training.steps` in ``tf.function``\\ s run
  through a ``tf.distribute`` strategy (one device, ``MirroredStrategy``,
  ``MultiWorkerMirroredStrategy``), XLA with ``jit_compile``;
- :class:`KerasEngine` (``jax``, ``torch``): keras' own compiled steps
  (``model.compile`` then ``train_on_batch`` and ``predict_on_batch``: jitted
  on JAX, eager or ``torch.compile``\\ d on PyTorch), the same loss (softmax
  cross-entropy on float32 logits with label smoothing, plus the model's
  regularization losses) and the same optimizer; several devices on JAX
  through keras' own distribution API (``keras.distribution.DataParallel``),
  where the batch statistics of BatchNorm are those of the global batch.

What a backend cannot do is refused in one line before any work
(:func:`make_engine`).
"""

import contextlib

import keras
import numpy as np

from xbn.errors import UsageError
from xbn.training.steps import eval_sums

BACKENDS = ("tensorflow", "jax", "torch")


def backend():
    """The keras backend in use (``"tensorflow"``, ``"jax"`` or ``"torch"``)."""
    return keras.backend.backend()


def check_backend_settings(strategy, sync_bn=False, name=None):
    """Refuse, in one line, the settings the keras backend in use cannot run."""
    name = name or backend()
    if name == "tensorflow":
        return
    if name not in BACKENDS:
        raise UsageError(f"xbn trains on the tensorflow, jax and torch keras backends; KERAS_BACKEND is {name!r}.")
    if strategy == "multiworker":
        raise UsageError(
            f"`strategy` multiworker is TensorFlow's MultiWorkerMirroredStrategy; on the {name} backend train "
            "with KERAS_BACKEND=tensorflow, or on one machine (`strategy` mirrored on JAX)."
        )
    if name == "torch" and strategy == "mirrored":
        raise UsageError(
            "`strategy` mirrored needs several devices in one process: TensorFlow's MirroredStrategy or JAX's "
            "keras.distribution.DataParallel; keras' PyTorch backend trains on one device. Use "
            "KERAS_BACKEND=jax or tensorflow, or `strategy` auto."
        )
    if name == "torch" and sync_bn:
        raise UsageError("`sync_bn` synchronizes BatchNorm across replicas; keras' PyTorch backend trains on "
                         "one device, so there is nothing to synchronize. Drop it.")


class TensorFlowEngine:
    """The ``tf.distribute`` engine (see the module docstring)."""

    def __init__(self, strategy_name):
        from xbn.training.distribute import make_strategy, worker_role

        self.strategy = make_strategy(strategy_name)  # first: multi-worker needs it before any op
        self.chief, self.task = worker_role(self.strategy)
        self.replicas = self.strategy.num_replicas_in_sync
        self.name = "tensorflow"

    def scope(self):
        return self.strategy.scope()

    def compile(self, model, optimizer, classes, label_smoothing, batch_size, jit_compile, top_k):
        """Trace the steps for ``model``'s trainable variables and ``optimizer``."""
        import tensorflow as tf

        from xbn.training.steps import replica_eval_step, replica_train_step

        strategy = self.strategy
        replica_train = replica_train_step(model, optimizer, classes, label_smoothing, batch_size)
        if jit_compile:
            replica_train = tf.function(replica_train, jit_compile=True)
        replica_eval = replica_eval_step(model, top_k)

        @tf.function
        def train_step(batch):
            loss, correct = strategy.run(replica_train, args=batch)
            return strategy.reduce("SUM", loss, axis=None), strategy.reduce("SUM", correct, axis=None)

        # A split's last batch is smaller: traced once more with the batch
        # size left open, which then serves every split (keras does the same).
        @tf.function(reduce_retracing=True)
        def eval_step(batch):
            return strategy.reduce("SUM", strategy.run(replica_eval, args=batch), axis=None)

        self._train_step, self._eval_step = train_step, eval_step

    def train(self, dataset):
        """``(loss, correct)`` of each batch of ``dataset``, as Python numbers."""
        for batch in self.strategy.experimental_distribute_dataset(dataset):
            loss, correct = self._train_step(batch)
            yield float(loss), float(correct)

    def evaluate(self, dataset):
        totals = np.zeros(4)
        for batch in self.strategy.experimental_distribute_dataset(dataset):
            totals += self._eval_step(batch).numpy()
        return totals

    def close(self):
        pass


class KerasEngine:
    """keras' own steps, on JAX and PyTorch (see the module docstring)."""

    def __init__(self, strategy_name, name):
        self.name = name
        self.chief, self.task = True, 0
        self.distribution = None
        devices = keras.distribution.list_devices() if name == "jax" else []
        if name == "jax" and (strategy_name == "mirrored" or (strategy_name == "auto" and len(devices) > 1
                                                                and not devices[0].startswith("cpu"))):
            if len(devices) > 1:
                self.distribution = keras.distribution.DataParallel(devices=devices)
        self.replicas = len(devices) if self.distribution is not None else 1

    def scope(self):
        if self.distribution is None:
            return contextlib.nullcontext()
        return self.distribution.scope()

    def compile(self, model, optimizer, classes, label_smoothing, batch_size, jit_compile, top_k):
        """``model.compile`` with xbn-train's loss (float32 logits, label smoothing) and optimizer."""
        self.model, self.classes, self.top_k = model, classes, top_k
        with self.scope():
            model.compile(
                optimizer=optimizer,
                loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing),
                metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
                jit_compile=True if self.name == "jax" else bool(jit_compile),
            )

    def train(self, dataset):
        eye = np.eye(self.classes, dtype="float32")
        with self.scope():
            for images, labels in dataset.as_numpy_iterator():
                logs = self.model.train_on_batch(images, eye[labels], return_dict=True)
                yield float(logs["loss"]), float(logs["accuracy"]) * len(labels)

    def evaluate(self, dataset):
        totals = np.zeros(4)
        with self.scope():
            for images, labels in dataset.as_numpy_iterator():
                totals += eval_sums(self.predict(images), labels, self.top_k)
        return totals

    def predict(self, images):
        """Logits of a batch; a batch the devices do not divide (a split's
        last) is padded for the step and the padding dropped."""
        count = len(images)
        short = -count % self.replicas
        if short:
            images = np.concatenate([images, np.zeros((short, *images.shape[1:]), images.dtype)])
        return np.asarray(self.model.predict_on_batch(images))[:count]

    def close(self):
        pass


def make_engine(strategy_name, sync_bn=False):
    """The engine of the keras backend in use, after refusing what it cannot run."""
    name = backend()
    check_backend_settings(strategy_name, sync_bn, name)
    if name == "tensorflow":
        return TensorFlowEngine(strategy_name)
    return KerasEngine(strategy_name, name)
