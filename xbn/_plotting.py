"""Matplotlib without a display, and PNG files written atomically."""

import io

from xbn import _files


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path, dpi=100):
    """Write ``fig`` to ``path`` as a PNG, atomically, and close it."""
    plt = pyplot()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    _files.atomic_write_bytes(path, buffer.getvalue())
    return path
