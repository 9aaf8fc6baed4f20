"""The per-replica training and evaluation steps: one definition.

On TensorFlow ``xbn-train`` runs them through ``strategy.run`` on every
batch of its pipeline; ``xbn-bench`` times the same training step on a
fixed batch, so what the bench measures is what training runs.  On JAX and
PyTorch keras' own compiled steps take their place
(:mod:`xbn.training.engine`); :func:`accuracy_function` and
:func:`prediction_function` serve every backend.
"""

import keras

from xbn import _backend

tf = _backend.tensorflow()


def replica_train_step(model, optimizer, classes, label_smoothing=0.0, global_batch_size=None):
    """``step(images, labels) -> (loss, correct)``: one optimizer update.

    Forward in training mode, softmax cross-entropy on float32 logits (with
    ``label_smoothing``), the model's regularization losses, the optimizer's
    loss scaling (a ``LossScaleOptimizer`` under ``mixed_float16``), backward
    and the update of every trainable weight.

    Args:
        model: a built Keras model returning logits.
        optimizer: a built Keras optimizer.
        classes: number of classes (the width of the one-hot labels).
        label_smoothing: as ``keras.losses.categorical_crossentropy``.
        global_batch_size: the batch over all replicas, by which the summed
            per-example losses are divided (``tf.nn.compute_average_loss``);
            ``None`` divides by this replica's batch.

    Returns:
        The loss (this replica's share of the global mean) and the number of
        correct top-1 predictions in the batch.
    """

    def step(images, labels):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(images, training=True), tf.float32)
            per_example = keras.losses.categorical_crossentropy(
                tf.one_hot(labels, classes), logits, from_logits=True, label_smoothing=label_smoothing
            )
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, tf.int32), labels), tf.float32))
        return loss, correct

    return step


def replica_eval_step(model, top_k):
    """``step(images, labels)``: summed loss, top-1 and top-``top_k`` hits, and count.

    Inference mode (moving statistics), float32 logits; the four sums come
    back stacked so that one reduction over replicas serves them all.
    """

    def step(images, labels):
        logits = tf.cast(model(images, training=False), tf.float32)
        loss = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        top1 = tf.cast(tf.equal(tf.argmax(logits, -1, tf.int32), labels), tf.float32)
        topk = tf.cast(tf.math.in_top_k(labels, logits, top_k), tf.float32)
        count = tf.cast(tf.shape(labels)[0], tf.float32)
        return tf.stack([tf.reduce_sum(loss), tf.reduce_sum(top1), tf.reduce_sum(topk), count])

    return step


def eval_sums(logits, labels, top_k):
    """``[loss sum, top-1 hits, top-k hits, count]`` of a batch, from logits
    (softmax cross-entropy in float64, as :func:`xbn.training.steps.replica_eval_step`)."""
    import numpy as np

    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels).astype(np.int64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(len(labels)), labels]
    target = logits[np.arange(len(labels)), labels]
    # Hits as tf.math.in_top_k counts them: fewer than k classes score higher.
    above = (logits > target[:, None]).sum(axis=1)
    return np.array([loss.sum(), (above == 0).sum(), (above < top_k).sum(), len(labels)], np.float64)


def accuracy_function(model, top_k):
    """``accuracy(dataset) -> {"examples", "top1", "topk"}`` in inference mode.

    One traced :func:`replica_eval_step` serves every dataset it is given (a
    model scored on many corrupted copies of a split is traced once, and a
    split's last, smaller batch once more with the batch size left open), on
    a single device; ``xbn-train`` evaluates through its strategy instead.
    """
    import numpy as np

    if keras.backend.backend() == "tensorflow":
        traced = tf.function(replica_eval_step(model, top_k), reduce_retracing=True)

        def step(images, labels):
            return traced(images, labels).numpy()
    else:
        def step(images, labels):
            return eval_sums(model.predict_on_batch(images.numpy()), labels.numpy(), top_k)

    def accuracy(dataset):
        totals = np.zeros(4)
        for images, labels in dataset:
            totals += step(images, labels)
        _, top1, topk, count = totals
        return {"examples": int(count), "top1": top1 / count, "topk": topk / count}

    return accuracy


def prediction_function(model):
    """``predict(dataset) -> (classes, labels)``: the top-1 class of every
    example in order (inference mode, float32 logits) and its label, as
    NumPy arrays; one trace serves every dataset, as :func:`accuracy_function`.
    The model's variables are read at each call, so a model changed in
    place (precise BN) is predicted as it is now.
    """
    import numpy as np

    if keras.backend.backend() == "tensorflow":
        traced = tf.function(reduce_retracing=True)(
            lambda images: tf.argmax(tf.cast(model(images, training=False), tf.float32), -1, tf.int32))

        def step(images):
            return traced(images).numpy()
    else:
        def step(images):
            return np.argmax(np.asarray(model.predict_on_batch(images.numpy()), np.float32), -1).astype(np.int32)

    def predict(dataset):
        classes, labels = [], []
        for images, batch_labels in dataset:
            classes.append(step(images))
            labels.append(np.asarray(batch_labels))
        return np.concatenate(classes), np.concatenate(labels)

    return predict
