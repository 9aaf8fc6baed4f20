"""Each keras backend's natural fast step, for ``xbn-bench --backend``.

A benchmark must time what a user of the backend runs, not a path nobody
takes:

- **TensorFlow**: a ``tf.function`` (``jit_compile`` only where asked),
  gradients from a ``GradientTape``; training steps are ``xbn-train``'s own
  (:func:`xbn.training.steps.replica_train_step`).
- **JAX**: one ``jax.jit`` of ``stateless_call`` and
  ``optimizer.stateless_apply`` with the state donated, as keras' own JAX
  trainer compiles it.
- **PyTorch**: eager, as keras' PyTorch trainer runs by default: forward,
  ``backward()``, ``optimizer.apply`` (``torch.compile`` pays only for
  long runs: it compiled keras' ResNet-50 for minutes).

Every step returns something small (a loss, a sum) so that fetching it to
the host waits for the device without timing a transfer.  Inputs live on
the backend's default device before the clock starts.
"""


import keras
import numpy as np

BACKENDS = ("tensorflow", "jax", "torch")


def backend():
    return keras.backend.backend()


def device():
    """The device the backend computes on, in words: the GPU's name, or ``"CPU"``."""
    name = backend()
    if name == "jax":
        import jax

        first = jax.devices()[0]
        return "CPU" if first.platform == "cpu" else first.device_kind
    if name == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    from xbn import _hardware

    gpus = _hardware.accelerators()
    return gpus[0] if gpus else "CPU"


def on_gpu():
    return device() != "CPU"


def versions():
    """The versions of the backend's framework (and TensorFlow where it is there)."""
    import importlib

    found = {"keras": keras.__version__, "backend": backend()}
    for module in ("tensorflow", "jax", "torch"):
        if module == backend() or (module == "tensorflow" and backend() == "tensorflow"):
            found[module] = importlib.import_module(module).__version__
    return found


def tensor(array):
    """``array`` as a tensor on the backend's default device."""
    if backend() == "torch":
        import torch
        from keras.src.backend.torch.core import get_device

        return torch.as_tensor(np.asarray(array), device=get_device())
    return keras.ops.convert_to_tensor(array)


def block(result):
    """Wait for ``result`` (a tensor or a nest of them) by fetching it."""
    for item in keras.tree.flatten(result):
        if item is not None:
            keras.ops.convert_to_numpy(item)


def peak_memory():
    """``(reset, read)`` for the device allocator's peak in MB; ``None`` on a
    CPU (where :class:`xbn.bench.timing.PeakMemory` samples the RSS);
    ``False`` where the device keeps no peak per case (JAX on a GPU)."""
    if not on_gpu():
        return None
    name = backend()
    if name == "torch":
        import torch

        return torch.cuda.reset_peak_memory_stats, lambda: torch.cuda.max_memory_allocated() / 2**20
    if name == "jax":  # JAX keeps a process-wide peak that cannot be reset: none per case
        return False
    import tensorflow as tf

    gpu = tf.config.list_logical_devices("GPU")[0].name
    return (lambda: tf.config.experimental.reset_memory_stats(gpu),
            lambda: tf.config.experimental.get_memory_info(gpu)["peak"] / 2**20)


# -- layers -------------------------------------------------------------------
def layer_step(layer, x, upstream=None, training=True):
    """A zero-argument step of ``layer`` on ``x``: with ``upstream``, forward
    and backward (the gradients of ``sum(y * upstream)`` with respect to the
    input and the trainable weights, and the moving-statistics update);
    without, the forward pass.  ``layer`` must be built."""
    kwargs = {"training": training} if "training" in _arguments(layer) else {}
    name = backend()
    if name == "tensorflow":
        return _tf_layer_step(layer, x, upstream, kwargs)
    if name == "jax":
        return _jax_layer_step(layer, x, upstream, kwargs)
    return _torch_layer_step(layer, x, upstream, kwargs)


def _arguments(layer):
    import inspect

    return inspect.signature(layer.call).parameters


def _tf_layer_step(layer, x, upstream, kwargs):
    import tensorflow as tf

    if upstream is None:
        return tf.function(lambda: tf.reduce_sum(tf.cast(layer(x, **kwargs), tf.float32)))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, **kwargs)
        grads = tape.gradient(y, [x, *[w.value for w in layer.trainable_weights]], upstream)
        # Reduced on the device: fetching the input gradient would be timed otherwise.
        return [tf.reduce_sum(tf.cast(grads[0], tf.float32))] + grads[1:]

    return step


def _jax_layer_step(layer, x, upstream, kwargs):
    import jax
    import jax.numpy as jnp

    trainable = [v.value for v in layer.trainable_variables]
    other = [v.value for v in layer.non_trainable_variables]
    if upstream is None:
        forward = jax.jit(lambda t, o, x: jnp.sum(layer.stateless_call(t, o, x, **kwargs)[0].astype("float32")))
        return lambda: forward(trainable, other, x)

    def loss(t, x, o):
        y, updated = layer.stateless_call(t, o, x, **kwargs)
        return jnp.sum(y.astype("float32") * upstream.astype("float32")), updated

    @jax.jit
    def step(t, o, x):
        (_, updated), (grads, dx) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(t, x, o)
        return jnp.sum(dx.astype("float32")), grads, updated

    return lambda: step(trainable, other, x)[:2]


def _torch_layer_step(layer, x, upstream, kwargs):
    import torch

    if upstream is None:
        def forward():
            with torch.no_grad():
                return layer(x, **kwargs).float().sum()

        return forward
    x = x.detach().requires_grad_(True)

    def step():
        for weight in layer.trainable_weights:
            weight.value.grad = None
        x.grad = None
        layer(x, **kwargs).backward(upstream)
        return x.grad.float().sum(), [w.value.grad for w in layer.trainable_weights]

    return step


# -- models -------------------------------------------------------------------
def train_step(model, batch, jit_compile=False, seed=0):
    """A zero-argument training step of ``model`` on a fixed random batch:
    forward in training mode, softmax cross-entropy on float32 logits,
    backward and an SGD-momentum update of every weight (BatchNorm's moving
    statistics included), in the backend's natural form (module docstring).
    ``jit_compile`` asks XLA on TensorFlow and ``torch.compile`` on PyTorch
    (JAX always compiles)."""
    rng = np.random.default_rng(seed)
    size = model.input_shape[1]
    classes = model.output_shape[-1]
    images = tensor(rng.uniform(-1, 1, (batch, size, size, 3)).astype("float32"))
    labels = tensor(rng.integers(0, classes, batch).astype("int32"))
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    if keras.config.dtype_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        from xbn.training.steps import replica_train_step

        update = replica_train_step(model, optimizer, classes)
        return tf.function(lambda: update(images, labels)[0], jit_compile=jit_compile)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if name == "jax":
        return _jax_train_step(model, optimizer, loss_fn, images, labels)
    return _torch_train_step(model, optimizer, loss_fn, images, labels, jit_compile)


def _jax_train_step(model, optimizer, loss_fn, images, labels):
    import jax

    def loss(trainable, other, x, y):
        logits, other = model.stateless_call(trainable, other, x, training=True)
        return loss_fn(y, logits.astype("float32")), other

    def update(trainable, other, slots, x, y):
        (value, other), grads = jax.value_and_grad(loss, has_aux=True)(trainable, other, x, y)
        trainable, slots = optimizer.stateless_apply(slots, grads, trainable)
        return value, trainable, other, slots

    compiled = jax.jit(update, donate_argnums=(0, 1, 2))
    state = [[v.value for v in model.trainable_variables],
             [v.value for v in model.non_trainable_variables],
             [v.value for v in optimizer.variables]]

    def step():
        value, *state[:] = compiled(*state, images, labels)
        return value

    return step


def _torch_train_step(model, optimizer, loss_fn, images, labels, jit_compile):
    import torch

    forward = torch.compile(model) if jit_compile else model
    weights = model.trainable_weights

    def step():
        for weight in weights:
            weight.value.grad = None
        value = loss_fn(labels, forward(images, training=True).float())
        value.backward()
        with torch.no_grad():
            optimizer.apply([w.value.grad for w in weights], weights)
        return value.detach()

    return step
