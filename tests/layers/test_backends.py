"""The layers are written with keras.ops: they also run on the JAX and PyTorch backends.

The backend is fixed when keras is imported, so each check runs in a fresh
interpreter (tests/backend_check.py) with KERAS_BACKEND set.  JAX and
PyTorch (CPU) are part of the `test` extra.  keras' own layer tests run on
all three backends too (test_keras_suites.py).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

CHECK = Path(__file__).resolve().parent.parent / "backend_check.py"


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_layers_match_references_on_another_backend(backend):
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, str(CHECK)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().splitlines()[-1] == f"ok {backend}"
