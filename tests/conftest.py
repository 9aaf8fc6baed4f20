"""Test-session set-up shared by every test module.

- TensorFlow's C++ logging is quietened (before TensorFlow is imported), and
  every process runs one thread (a pytest-xdist worker per core).
- The CPU is split into two logical devices, so that ``tf.distribute``
  strategies (``MirroredStrategy`` for synchronized BatchNorm, precise BN and
  training) have two replicas to work with.  This must happen before
  TensorFlow initializes its runtime, hence here, at collection time.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# One thread per process: the suite runs a pytest-xdist worker per core, and
# TensorFlow's default of a thread per core in each of them oversubscribes
# the machine (measured on 2 cores: 183 s against 148 s for the models'
# tests).  Set before TensorFlow is imported, so that its thread pools and
# oneDNN's are built that way (set after it, the models' tests took 12% longer).
# Subprocesses (the main job, resume, the backends) inherit it.
THREADS = os.environ.setdefault("XBN_TEST_THREADS", "1")
for variable in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(variable, THREADS)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(int(THREADS))
tf.config.threading.set_inter_op_parallelism_threads(int(THREADS))
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
)
LOGICAL_CPUS = [d.name for d in tf.config.list_logical_devices("CPU")]

from xbn._policy import dtype_policy  # noqa: E402,F401  (for the tests: from conftest import dtype_policy)


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """xbn's cache of image checks (XBN_CACHE_DIR) in a folder of this session,
    never the user's ~/.cache (subprocesses inherit it)."""
    os.environ["XBN_CACHE_DIR"] = str(tmp_path_factory.mktemp("xbn-cache"))


def with_moving_statistics(model, seed=0):
    """``model`` with moving statistics that are not the identity (means
    N(0, 0.2), variances U(0.5, 2)) in every BatchNorm, xbn's or keras', so
    that inference-mode outputs depend on them.  Returns the model."""
    from xbn.layers.norms import is_batch_norm

    generator = np.random.default_rng(seed)
    for layer in model.layers:
        if is_batch_norm(layer):
            c = layer.moving_mean.shape[0]
            layer.moving_mean.assign(generator.normal(0, 0.2, c).astype("float32"))
            layer.moving_variance.assign(generator.uniform(0.5, 2.0, c).astype("float32"))
    return model


@pytest.fixture
def rng():
    """A seeded NumPy generator: every test sees the same data on every run."""
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts with float32 and fresh layer names."""
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session(free_memory=False)  # gc.collect() per test took seconds with big models alive
    yield
    keras.config.set_dtype_policy("float32")


# The tests that each take minutes (they train or benchmark in subprocesses
# or whole zoo models) start first, so that pytest-xdist packs the many short
# ones around them instead of leaving one core idle at the end.
SLOW_FIRST = (
    "tests/models/test_zoo.py",
    "tests/models/test_zoo_variants.py",
    "tests/training/test_main_job.py",
    "tests/layers/test_keras_suites.py",
    "tests/training/test_multiworker.py",
    "tests/training/test_resume.py",
    "tests/bench/",
    "tests/diagnostics/test_study.py",
)


def pytest_collection_modifyitems(items):
    def rank(item):
        return next((i for i, prefix in enumerate(SLOW_FIRST) if item.nodeid.startswith(prefix)), len(SLOW_FIRST))

    items.sort(key=rank)

