"""The layers are written with keras.ops: they also run on the JAX backend.

The backend is fixed when keras is imported, so the check runs in a fresh
interpreter (tests/backend_check.py) with KERAS_BACKEND=jax.  JAX is part of
the `test` extra.
"""

import os
import subprocess
import sys
from pathlib import Path

CHECK = Path(__file__).resolve().parent.parent / "backend_check.py"


def test_layers_match_references_on_jax():
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, str(CHECK)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().splitlines()[-1] == "ok jax"
