"""Architecture diagrams with ``keras.utils.plot_model`` (pydot + graphviz)."""

import shutil
from pathlib import Path

from xbn import _files
from xbn.errors import UsageError

GRAPHVIZ_HINT = (
    "Model diagrams need the graphviz binary 'dot', which is not on this machine's "
    "PATH. Install it with `apt-get install -y graphviz` (Debian/Ubuntu), "
    "`brew install graphviz` (macOS) or `conda install graphviz`, then retry."
)
FORMATS = (".png", ".svg", ".pdf")


def check_graphviz():
    """Raise a :class:`~xbn.errors.UsageError` with install instructions if ``dot`` is missing."""
    if shutil.which("dot") is None:
        raise UsageError(GRAPHVIZ_HINT)
    try:
        import pydot  # noqa: F401
    except ImportError:
        raise UsageError("Model diagrams need pydot: `pip install pydot`.") from None


def plot_model(name, out, image_size=None, show_shapes=True, rankdir="TB", dpi=96, **model_args):
    """Build the registered model ``name`` and draw it to ``out`` (atomically).

    Args:
        name: registered model name.
        out: ``.png``, ``.svg`` or ``.pdf`` path.
        image_size: input side in pixels (default: the model's default).
        show_shapes, rankdir, dpi: as ``keras.utils.plot_model``.
        **model_args: builder arguments.

    Returns:
        The path written.
    """
    import keras

    from xbn.models.registry import get_model, model_facts

    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise UsageError(f"plot_model: `out` must end in one of {', '.join(FORMATS)}; got {out}.")
    check_graphviz()
    size = image_size or model_facts(name).default_size
    model_args.setdefault("input_shape", (size, size, 3))
    model = get_model(name, **model_args)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _files.atomic_path(out) as tmp:
        keras.utils.plot_model(
            model, to_file=str(tmp), show_shapes=show_shapes, show_layer_names=True,
            rankdir=rankdir, dpi=dpi,
        )
    return out
