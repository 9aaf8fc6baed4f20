"""Population statistics of every BatchNorm layer's input.

The machinery behind :func:`xbn.diagnostics.estimation_shift` and
:func:`xbn.diagnostics.recalibrate_bn`: run data through a model and pool,
per channel, the mean and variance of what each BatchNorm layer receives.

Pooling is exact.  Each batch (each replica's share under a strategy) gives
its count, mean and centred sum of squares, computed in float32 on the
device by two passes; they are merged on the host in float64 with Chan's
parallel formula (the law of total variance), so the result is the mean and
biased variance of the whole data, not an average of batch variances (which
underestimates) nor a momentum average.

On TensorFlow the moments are computed in a traced step under the model's
``tf.distribute`` strategy; on JAX and PyTorch the BatchNorm inputs come
from keras' compiled ``predict_on_batch`` (inference mode) or a call in
training mode, and their moments from NumPy.
"""

import keras
import numpy as np

from xbn import _graph
from xbn.errors import UsageError
from xbn.layers.norms import is_batch_norm


def batch_norm_layers(model):
    """The model's BatchNorm layers (xbn's and keras'), in depth order."""
    layers = [layer for layer in model.layers if is_batch_norm(layer)]
    for layer in layers:
        if _graph.call_count(layer) != 1:
            raise UsageError(
                f"{layer.name!r} is called {_graph.call_count(layer)} times in "
                f"{model.name!r}; BN statistics need each BatchNorm used once."
            )
    return layers


class _Pool:
    """Running float64 count, mean and M2 per channel (Chan et al., 1979)."""

    def __init__(self):
        self.count = 0.0
        self.mean = None
        self.m2 = None

    def add(self, count, mean, m2):
        count = float(count)
        if count == 0:
            return
        mean = np.asarray(mean, np.float64)
        m2 = np.asarray(m2, np.float64)
        if self.mean is None:
            self.count, self.mean, self.m2 = count, mean, m2
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * count / total)
        self.count = total

    def merge(self, other):
        """Add another pool's values (Chan's formula again)."""
        if other.mean is not None:
            self.add(other.count, other.mean, other.m2)

    @property
    def variance(self):
        return self.m2 / self.count


def _worker_count(strategy):
    """How many worker processes share the strategy (1 for a single machine)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(1, len(spec.get("worker", [])) + len(spec.get("chief", [])))


class StatisticsCollector:
    """Collects BatchNorm input statistics of one model, pass after pass.

    The capture model (the inputs of every BatchNorm as outputs) and the
    traced step are built once, so repeated passes (precise BN's refinement,
    estimation shift after recalibration) do not trace the network again.

    Under a strategy each replica's statistics are pooled on its own
    worker's host, batch after batch, and the workers exchange their pooled
    statistics once per pass, in one collective for all layers (not one per
    batch and layer), and merge them in the same order, so every worker ends
    with the same numbers.

    Args:
        model: a functional keras model.
        strategy: a ``tf.distribute`` strategy whose scope holds the model.
    """

    def __init__(self, model, strategy=None):
        self.model = model
        self.layers = batch_norm_layers(model)
        self.portable = keras.backend.backend() != "tensorflow"
        if not self.portable:
            import tensorflow as tf

            self.strategy = strategy or tf.distribute.get_strategy()
        self._steps = {}
        self._gather = None
        if self.layers:
            inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
            self._capture = keras.Model(inputs, [layer.input for layer in self.layers])

    def _step(self, training):
        import tensorflow as tf

        if training in self._steps:
            return self._steps[training]
        capture, strategy = self._capture, self.strategy
        axes = [
            [i for i in range(len(layer.input.shape)) if i != layer.axis % len(layer.input.shape)]
            for layer in self.layers
        ]

        def moments(images):
            outputs = capture(images, training=training)
            if not isinstance(outputs, (list, tuple)):
                outputs = [outputs]
            results = []
            for out, ax in zip(outputs, axes):
                out = tf.cast(out, tf.float32)
                count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(out), ax)), tf.float32)
                mean = tf.reduce_mean(out, axis=ax, keepdims=True)
                m2 = tf.reduce_sum(tf.square(out - mean), axis=ax)
                results.append((count, tf.reshape(mean, [-1]), m2))
            return results, tf.shape(images)[0]

        @tf.function(reduce_retracing=True)  # every batch size after the second: one trace
        def step(batch):
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            return strategy.run(moments, args=(images,))

        self._steps[training] = step
        return step

    def collect(self, dataset, steps=None, training=False, progress=None):
        """Pooled mean and variance of every BatchNorm layer's input.

        Args:
            dataset: yields ``(images, labels)`` or ``images`` batches,
                already preprocessed for the model.
            steps: batches to use (default: the whole dataset).
            training: run the network in training mode (earlier BNs
                normalize with batch statistics) instead of inference mode
                (earlier BNs use their moving statistics: what each layer
                sees when serving).
            progress: optional ``progress(step)`` callback.

        Returns:
            ``(stats, examples)``: ``stats`` maps each layer name, in depth
            order, to ``(mean, variance, count)`` (float64; ``count`` is
            values per channel), and ``examples`` is the number of images.
            ``self.batches`` holds the number of batches the pass used.
        """
        if not self.layers:
            return {}, 0
        if self.portable:
            return self._collect_portable(dataset, steps, training, progress)
        step = self._step(bool(training))
        local = self.strategy.experimental_local_results
        replicas = None  # per local replica: [examples, one _Pool per layer]
        done = 0
        for batch in self.strategy.experimental_distribute_dataset(dataset):
            if steps is not None and done >= steps:
                break
            results, sizes = step(batch)
            sizes = local(sizes)
            if replicas is None:
                replicas = [[0, [_Pool() for _ in self.layers]] for _ in sizes]
            for replica, size in zip(replicas, sizes):
                replica[0] += int(size)
            for layer, (counts, means, m2s) in enumerate(results):
                for replica, count, mean, m2 in zip(replicas, local(counts), local(means), local(m2s)):
                    replica[1][layer].add(count.numpy(), mean.numpy(), m2.numpy())
            done += 1
            if progress is not None:
                progress(done)
        if done == 0:
            raise UsageError("collect_statistics: the dataset yielded no batch.")
        self.batches = done
        if _worker_count(self.strategy) > 1:
            replicas = self._gather_workers(replicas)
        pools = [_Pool() for _ in self.layers]
        for _, replica_pools in replicas:
            for pool, other in zip(pools, replica_pools):
                pool.merge(other)
        stats = {
            layer.name: (pool.mean, pool.variance, pool.count)
            for layer, pool in zip(self.layers, pools)
        }
        return stats, sum(examples for examples, _ in replicas)

    def _collect_portable(self, dataset, steps, training, progress):
        """:meth:`collect` on JAX and PyTorch: one device, moments in NumPy."""
        pools = [_Pool() for _ in self.layers]
        examples = done = 0
        for batch in dataset:
            if steps is not None and done >= steps:
                break
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            images = np.asarray(images)
            if training:
                outputs = self._capture(images, training=True)
            else:
                outputs = self._capture.predict_on_batch(images)
            if not isinstance(outputs, (list, tuple)):
                outputs = [outputs]
            for pool, layer, out in zip(pools, self.layers, outputs):
                values = np.moveaxis(np.asarray(keras.ops.convert_to_numpy(out), np.float32),
                                     layer.axis % len(out.shape), -1)
                values = values.reshape(-1, values.shape[-1])
                mean = values.mean(axis=0, dtype=np.float64)
                pool.add(len(values), mean, ((values - mean) ** 2).sum(axis=0))
            examples += len(images)
            done += 1
            if progress is not None:
                progress(done)
        if done == 0:
            raise UsageError("collect_statistics: the dataset yielded no batch.")
        self.batches = done
        stats = {layer.name: (pool.mean, pool.variance, pool.count) for layer, pool in zip(self.layers, pools)}
        return stats, examples

    def _gather_workers(self, replicas):
        """Every replica's pooled statistics from every worker: one all-gather per pass.

        Each local replica packs ``[examples, then per layer count, mean,
        M2]`` into one float64 vector; the vectors of all replicas of all
        workers are gathered, so that every worker merges the same numbers in
        the same order.
        """
        import tensorflow as tf

        channels = [len(pool.mean) for pool in replicas[0][1]]
        packed = iter([
            np.concatenate([[examples]] + [np.concatenate([[p.count], p.mean, p.m2]) for p in pools])
            for examples, pools in replicas
        ])
        # Called once per local replica, in order: each contributes its own pools.
        per_replica = self.strategy.experimental_distribute_values_from_function(
            lambda context: tf.constant(next(packed))[None]
        )
        if self._gather is None:  # traced once: an eager gather retraces at every call
            self._gather = tf.function(lambda values: self.strategy.gather(values, axis=0))
        gathered = []
        for row in self._gather(per_replica).numpy():
            pools, offset = [], 1
            for width in channels:
                pool = _Pool()
                pool.add(row[offset], row[offset + 1: offset + 1 + width],
                         row[offset + 1 + width: offset + 1 + 2 * width])
                pools.append(pool)
                offset += 1 + 2 * width
            gathered.append([int(row[0]), pools])
        return gathered


def collect_statistics(model, dataset, steps=None, training=False, strategy=None, progress=None):
    """One pass of :class:`StatisticsCollector` (see its ``collect``)."""
    return StatisticsCollector(model, strategy).collect(dataset, steps, training, progress)
