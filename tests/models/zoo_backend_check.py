"""Run zoo models on a non-TensorFlow keras backend; used by test_zoo.py.

Usage: KERAS_BACKEND=jax python tests/models/zoo_backend_check.py FOLDER

``FOLDER`` holds ``cases.json`` (``{name: builder kwargs}``), ``inputs.npy``
and one ``NAME.weights.h5`` per model, written under TensorFlow.  Each model
is built with the same arguments on this backend, given those weights, and
its inference-mode outputs on the inputs (``predict``: compiled, as users
run a model; on JAX an eager call compiles every operation on its own and
took 8-10 times as long) are written to ``NAME.npy`` for the test to
compare with TensorFlow's.  Prints
"ok <backend>" at the end.
"""

import json
import os
import sys
from pathlib import Path

if os.environ.get("KERAS_BACKEND") == "torch":
    import torch  # noqa: F401  (before anything imports TensorFlow, as keras' tests do)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from xbn.models import get_model  # noqa: E402


def main(folder):
    folder = Path(folder)
    cases = json.loads((folder / "cases.json").read_text())
    x = np.load(folder / "inputs.npy")
    for name, kwargs in cases.items():
        kwargs["input_shape"] = tuple(kwargs["input_shape"])
        model = get_model(name, **kwargs)
        model.load_weights(folder / f"{name}.weights.h5")
        np.save(folder / f"{name}.npy", model.predict(x, batch_size=len(x), verbose=0))
    print("ok", keras.backend.backend())


if __name__ == "__main__":
    main(sys.argv[1])
