"""Export for serving, and using an export.

- :func:`export_source`: what ``xbn-export`` does: a run folder from
  ``xbn-train``, a ``.keras`` file, or a registered model name with weights,
  exported as a SavedModel (or LiteRT/ONNX) with BatchNorm folded.
- :func:`export_run`: the export at the end of ``xbn-train``.
- :mod:`xbn.export.use`: evaluate or predict with an export, needing only
  TensorFlow (the export never needs xbn to load).
"""

from pathlib import Path

from xbn.export.savedmodel import FORMATS, INFO_FILE, ExportError, export_model, load_info

__all__ = ["FORMATS", "INFO_FILE", "ExportError", "export_model", "export_run", "export_source", "load_info"]


def export_run(run_dir, model=None, out=None, fold=True, overwrite=True, fmt="saved_model", log=print):
    """Export the model of an ``xbn-train`` run folder (default: ``<run>/export``).

    ``model`` is the run's final model when the caller holds it already (as
    ``xbn-train`` does); otherwise ``model.keras`` is loaded.
    """
    from xbn.models.loading import load_run

    run_dir = Path(run_dir)
    loaded = load_run(run_dir, model)
    return _export(loaded, out or run_dir / "export", fold, overwrite, fmt, 5, log)


def export_source(
    source, out, weights=None, class_names=None, image_size=None, fold=True, overwrite=False,
    fmt="saved_model", eval_crop=None, top_k=5, model_args=None, log=print,
):
    """Export a run folder, a ``.keras`` file or a registered model name."""
    from xbn.models.loading import load_trained

    try:
        loaded = load_trained(source, weights, class_names, image_size, model_args, eval_crop)
    except (ValueError, FileNotFoundError) as error:
        raise type(error)(f"xbn-export: {error}") from None
    return _export(loaded, out, fold, overwrite, fmt, top_k, log)


def _export(loaded, out, fold, overwrite, fmt, top_k, log):
    path, _ = export_model(
        loaded.model, out, class_names=loaded.class_names, preprocessing=loaded.preprocessing,
        model_name=loaded.name, eval_crop=loaded.eval_crop, fold=fold, overwrite=overwrite,
        fmt=fmt, top_k=top_k, log=log,
    )
    return path
