"""Test-session set-up shared by every test module.

- TensorFlow's C++ logging is quietened (before TensorFlow is imported).
- The CPU is split into two logical devices, so that ``tf.distribute``
  strategies (``MirroredStrategy`` for synchronized BatchNorm, precise BN and
  training) have two replicas to work with.  This must happen before
  TensorFlow initializes its runtime, hence here, at collection time.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
)
LOGICAL_CPUS = [d.name for d in tf.config.list_logical_devices("CPU")]

from xbn._policy import dtype_policy  # noqa: E402,F401  (for the tests: from conftest import dtype_policy)


@pytest.fixture
def rng():
    """A seeded NumPy generator: every test sees the same data on every run."""
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts with float32 and fresh layer names."""
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session()
    yield
    keras.config.set_dtype_policy("float32")


# The tests that each take minutes (they train or benchmark in subprocesses
# or whole zoo models) start first, so that pytest-xdist packs the many short
# ones around them instead of leaving one core idle at the end.
SLOW_FIRST = (
    "tests/training/test_main_job.py",
    "tests/training/test_multiworker.py",
    "tests/training/test_resume.py",
    "tests/bench/",
    "tests/diagnostics/test_study.py",
)


def pytest_collection_modifyitems(items):
    def rank(item):
        return next((i for i, prefix in enumerate(SLOW_FIRST) if item.nodeid.startswith(prefix)), len(SLOW_FIRST))

    items.sort(key=rank)

