"""Choosing the ``tf.distribute`` strategy, and who the chief worker is.

- ``default``: no distribution (one device).
- ``mirrored``: ``MirroredStrategy`` over every local GPU (over the logical
  CPUs if there is no GPU: one replica unless the CPU was split).
- ``multiworker``: ``MultiWorkerMirroredStrategy``, the cluster read from the
  ``TF_CONFIG`` environment variable; it must be created before TensorFlow
  runs anything else, so :func:`make_strategy` comes first in a run.
- ``auto``: ``multiworker`` when ``TF_CONFIG`` names a cluster of several
  workers, ``mirrored`` with several local GPUs, else ``default``.
"""

import itertools
import json
import os

from xbn.errors import UsageError

# Every MirroredStrategy numbers its collective all-reduces from the same
# group and instance keys (``MirroredStrategy._collective_key_base``, 0 in
# production).  A second strategy in the same process therefore reuses keys
# that the runtime has already bound to the first one's tensor shapes and
# fails with "Shape mismatch in the collective instance 100".  TensorFlow's
# own test combinations give each strategy a fresh key range; so do we.
_KEY_RANGES = itertools.count()
_KEY_STRIDE = 100_000


def _tf_config():
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return {}
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise UsageError(f"TF_CONFIG is not valid JSON ({error}); see the README for its form.") from None
    return config


def make_strategy(name="auto"):
    """The strategy for ``--strategy NAME``."""
    import tensorflow as tf

    config = _tf_config()
    workers = sum(len(v) for k, v in config.get("cluster", {}).items() if k in ("chief", "worker"))
    if name == "auto":
        if workers > 1:
            name = "multiworker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "multiworker":
        if workers < 1 or "task" not in config:
            raise UsageError(
                "`strategy` multiworker needs TF_CONFIG with a 'cluster' and this worker's "
                "'task', e.g. TF_CONFIG='{\"cluster\": {\"worker\": [\"host1:12345\", "
                "\"host2:12345\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}'."
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return mirrored_strategy([d.name for d in devices])
    return tf.distribute.get_strategy()


def mirrored_strategy(devices=None):
    """A ``tf.distribute.MirroredStrategy`` over ``devices`` that can share a process.

    Unlike a bare ``MirroredStrategy(devices)``, each strategy made here gets
    its own range of collective keys, so building several in one process (a
    notebook that trains twice, a test suite) never mixes up their
    all-reduces.
    """
    import tensorflow as tf

    cls = tf.distribute.MirroredStrategy
    previous = cls._collective_key_base
    cls._collective_key_base = next(_KEY_RANGES) * _KEY_STRIDE
    try:
        return cls(devices)
    finally:
        cls._collective_key_base = previous


def worker_role(strategy):
    """``(is_chief, task_id)`` of this process in its cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True, 0
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief)
    return chief, int(task_id)
