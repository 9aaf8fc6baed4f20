"""A keras dtype policy for the duration of a block."""

import contextlib


@contextlib.contextmanager
def dtype_policy(name):
    """Build and run under the keras dtype policy ``name`` (e.g.
    ``"mixed_bfloat16"``), restoring the previous global policy afterwards,
    also when the block fails."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
