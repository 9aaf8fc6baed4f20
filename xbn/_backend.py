"""The keras backend and TensorFlow, loaded once, in the one order that works.

xbn runs on keras' TensorFlow, JAX and PyTorch backends, and its data
pipelines and exports are TensorFlow code on every one of them (tf.data,
SavedModel).  So a process may hold TensorFlow beside JAX or PyTorch, and
the order in which they load matters: keras' PyTorch backend imports
``torch._dynamo``, which loads triton's native library, and triton's
library crashes the process (a segmentation fault) when TensorFlow's is
already loaded (both carry their own LLVM; PyTorch 2.14's CUDA build, the
one ``pip install torch`` takes, brings triton).  Loaded the other way
round, both work.  :func:`load` therefore imports keras, and with it its
backend, first; :func:`tensorflow` imports TensorFlow after it.  Every part
of xbn reaches TensorFlow after ``import xbn`` has called :func:`load`.

TensorFlow's C++ start-up chatter ("Could not find cuda drivers ...")
is kept off the terminal: ``TF_CPP_MIN_LOG_LEVEL`` defaults to 3 and the
few lines absl prints before reading it are captured and replayed only if
the import fails.  Set ``XBN_VERBOSE_TF=1`` to see everything.
"""

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def quiet_stderr():
    """File descriptor 2 (what C libraries print: TensorFlow's start-up,
    libjpeg's warnings) into a temporary file, replayed if the block fails;
    ``XBN_VERBOSE_TF=1`` lets everything through."""
    if os.environ.get("XBN_VERBOSE_TF"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def load():
    """Import keras with its backend (before TensorFlow; see the module docstring)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "keras" in sys.modules:
        return
    with quiet_stderr():
        import keras  # noqa: F401


def name():
    """The keras backend in use: ``"tensorflow"``, ``"jax"`` or ``"torch"``."""
    load()
    import keras

    return keras.backend.backend()


def tensorflow():
    """TensorFlow, imported quietly after keras' backend; returns the module."""
    load()
    if "tensorflow" not in sys.modules:
        with quiet_stderr():
            import tensorflow  # noqa: F401
    return sys.modules["tensorflow"]
