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
"""

import keras
import numpy as np

from xbn.layers import BatchNorm


def batch_norm_layers(model):
    """The model's BatchNorm layers (xbn's and keras'), in depth order."""
    layers = [
        layer for layer in model.layers
        if isinstance(layer, (BatchNorm, keras.layers.BatchNormalization))
    ]
    for layer in layers:
        if len(layer._inbound_nodes) != 1:
            raise ValueError(
                f"{layer.name!r} is called {len(layer._inbound_nodes)} times in "
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

    @property
    def variance(self):
        return self.m2 / self.count


class StatisticsCollector:
    """Collects BatchNorm input statistics of one model, pass after pass.

    The capture model (the inputs of every BatchNorm as outputs) and the
    traced step are built once, so repeated passes (precise BN's refinement,
    estimation shift after recalibration) do not trace the network again.

    Args:
        model: a functional keras model.
        strategy: a ``tf.distribute`` strategy whose scope holds the model.
    """

    def __init__(self, model, strategy=None):
        import tensorflow as tf

        self.model = model
        self.layers = batch_norm_layers(model)
        self.strategy = strategy or tf.distribute.get_strategy()
        self._steps = {}
        if self.layers:
            self._capture = keras.Model(model.inputs, [layer.input for layer in self.layers])

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
                # A leading axis of one: strategy.gather stacks the replicas on it.
                results.append((count[None], tf.reshape(mean, [1, -1]), m2[None]))
            return results

        @tf.function
        def step(batch):
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            per_replica = strategy.run(moments, args=(images,))
            # Every replica's (count, mean, M2), gathered from every worker, so
            # that all workers pool the same numbers.
            gathered = tf.nest.map_structure(lambda v: strategy.gather(v, axis=0), per_replica)
            sizes = strategy.run(lambda t: tf.shape(t)[0], args=(images,))
            return gathered, strategy.reduce("SUM", sizes, axis=None)

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
        """
        if not self.layers:
            return {}, 0
        step = self._step(bool(training))
        pools = [_Pool() for _ in self.layers]
        done = examples = 0
        for batch in self.strategy.experimental_distribute_dataset(dataset):
            if steps is not None and done >= steps:
                break
            gathered, size = step(batch)
            examples += int(size)
            for pool, (counts, means, m2s) in zip(pools, gathered):
                for count, mean, m2 in zip(counts.numpy(), means.numpy(), m2s.numpy()):
                    pool.add(count, mean, m2)
            done += 1
            if progress is not None:
                progress(done)
        if done == 0:
            raise ValueError("collect_statistics: the dataset yielded no batch.")
        stats = {
            layer.name: (pool.mean, pool.variance, pool.count)
            for layer, pool in zip(self.layers, pools)
        }
        return stats, examples


def collect_statistics(model, dataset, steps=None, training=False, strategy=None, progress=None):
    """One pass of :class:`StatisticsCollector` (see its ``collect``)."""
    return StatisticsCollector(model, strategy).collect(dataset, steps, training, progress)
