"""pytest plugin: keras' own layer tests, run against xbn's layers.

Loaded with ``-p keras_suite_plugin`` by ``tests/layers/test_keras_suites.py``
in a fresh interpreter per keras backend, on test files read from the
installed keras wheel (nothing of keras is copied into this repository).
Before pytest imports any keras test module it

- imports torch first under the torch backend (keras' own conftest does the
  same: TensorFlow imported before torch can crash);
- registers the markers keras' conftest registers (the wheel ships none);
- swaps ``keras.src.layers.BatchNormalization``, ``GroupNormalization`` and
  ``Conv2D`` for xbn's classes, so that both the module-level parameter
  lists and the test bodies get xbn's (keras' ``TestCase`` and
  ``run_layer_test`` stay keras');
- relaxes the error-message patterns listed in the ``XBN_RELAXED``
  environment variable (JSON: ``[[test name, keras pattern, xbn pattern]]``),
  and only those: xbn's messages name the fix and need not match keras'
  wording.  The relaxations that were needed (keras' pattern did not match
  xbn's message) are written to ``XBN_RELAXED_USED`` (a JSON file), so that
  none can go stale.
"""

import json
import os
import re

SWAPS = {
    "BatchNormalization": ("xbn.layers", "BatchNorm"),
    "GroupNormalization": ("xbn.layers", "GroupNorm"),
    "Conv2D": ("xbn.layers", "Conv2D"),
}

_used = set()


def pytest_configure(config):
    if os.environ.get("KERAS_BACKEND") == "torch":
        import torch  # noqa: F401

    config.addinivalue_line("markers", "requires_trainable_backend: trainable backends only")
    config.addinivalue_line("markers", "multi_device: several devices only")

    import importlib

    import keras.src.layers
    from keras.src import testing

    for keras_name, (module, name) in SWAPS.items():
        setattr(keras.src.layers, keras_name, getattr(importlib.import_module(module), name))

    relaxed = [tuple(item) for item in json.loads(os.environ.get("XBN_RELAXED", "[]"))]
    original = testing.TestCase.assertRaisesRegex

    def assert_raises_regex(self, expected_exception, expected_regex, *args, **kwargs):
        test = self.id().rsplit(".", 1)[-1]
        for item in relaxed:
            name, keras_pattern, xbn_pattern = item
            if test.startswith(name) and expected_regex == keras_pattern and not args:
                return _Relaxed(original(self, expected_exception, xbn_pattern, **kwargs), item)
        return original(self, expected_exception, expected_regex, *args, **kwargs)

    testing.TestCase.assertRaisesRegex = assert_raises_regex


class _Relaxed:
    """``assertRaisesRegex`` with xbn's pattern; records the relaxation as
    needed only if keras' own pattern does not match xbn's message."""

    def __init__(self, context, item):
        self.context, self.item = context, item

    def __enter__(self):
        return self.context.__enter__()

    def __exit__(self, *exc_info):
        handled = self.context.__exit__(*exc_info)
        raised = getattr(self.context, "exception", None)
        if raised is not None and not re.search(self.item[1], str(raised)):
            _used.add(self.item)
        return handled


def pytest_unconfigure(config):
    path = os.environ.get("XBN_RELAXED_USED")
    if path:
        with open(path, "w") as handle:
            json.dump(sorted(_used), handle)
