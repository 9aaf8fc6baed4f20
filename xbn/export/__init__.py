"""Export for serving, and using an export.

- :func:`export_source`: what ``xbn-export`` does: a run folder from
  ``xbn-train``, a ``.keras`` file, or a registered model name with weights,
  exported as a SavedModel (or LiteRT/ONNX) with BatchNorm folded.
- :func:`export_run`: the export at the end of ``xbn-train``.
- :mod:`xbn.export.use`: evaluate or predict with an export, needing only
  TensorFlow (the export never needs xbn to load).
"""

import json
from pathlib import Path

from xbn.export.savedmodel import FORMATS, INFO_FILE, ExportError, export_model, load_info

__all__ = ["FORMATS", "INFO_FILE", "ExportError", "export_model", "export_run", "export_source", "load_info"]


def export_run(run_dir, model=None, out=None, fold=True, overwrite=True, fmt="saved_model", log=print):
    """Export the model of an ``xbn-train`` run folder (default: ``<run>/export``)."""
    import keras

    run_dir = Path(run_dir)
    info_path = run_dir / "run.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not an xbn-train run folder (no run.json).")
    info = json.loads(info_path.read_text())
    if model is None:
        model_path = run_dir / "model.keras"
        if not model_path.is_file():
            raise FileNotFoundError(
                f"{run_dir} has no model.keras yet: the run has not finished. Run the same "
                "xbn-train command again to resume it."
            )
        import xbn.fold  # noqa: F401  (registers the layers a model may use)
        import xbn.layers  # noqa: F401

        model = keras.saving.load_model(model_path)
    path, _ = export_model(
        model, out or run_dir / "export", class_names=info["class_names"],
        preprocessing=info["facts"]["preprocessing"], model_name=info["settings"]["model"],
        eval_crop=info["settings"]["eval_crop"], fold=fold, overwrite=overwrite, fmt=fmt, log=log,
    )
    return path


def export_source(
    source, out, weights=None, class_names=None, image_size=None, fold=True, overwrite=False,
    fmt="saved_model", eval_crop=None, top_k=5, model_args=None, log=print,
):
    """Export a run folder, a ``.keras`` file or a registered model name."""
    import keras

    import xbn.layers  # noqa: F401
    from xbn.models import get_model, list_models, model_facts

    path = Path(source)
    if path.is_dir():
        if weights or class_names or image_size or model_args:
            raise ValueError(
                "xbn-export: a run folder brings its own weights, classes, size and builder "
                "arguments; drop --weights/--class-names/--image-size/--model-arg."
            )
        return export_run(path, out=out, fold=fold, overwrite=overwrite, fmt=fmt, log=log)
    if path.suffix == ".keras":
        if not path.is_file():
            raise FileNotFoundError(f"xbn-export: no such file: {path}")
        import xbn.fold  # noqa: F401

        model = keras.saving.load_model(path)
        facts = model_facts(model)
    elif source in list_models():
        if weights is None:
            raise ValueError(
                f"xbn-export: exporting the registered model {source!r} needs --weights PATH "
                "(an untrained model serves nothing)."
            )
        facts = model_facts(source)
        from xbn.models.weights import read_weights, transfer_weights

        arrays = read_weights(weights)
        dense = arrays.get("predictions")
        classes = dense[0].shape[-1] if dense else 1000
        size = image_size or facts.default_size
        model = get_model(source, input_shape=(size, size, 3), classes=classes, **(model_args or {}))
        report = transfer_weights(arrays, model)
        if report.left_initial:
            shown = "; ".join(f"{k}: {v}" for k, v in list(report.mismatched.items())[:2])
            raise ValueError(
                f"xbn-export: {weights} does not fit {source!r} built with "
                f"{model_args or 'its default arguments'}: {report.summary()}"
                f"{' (' + shown + ')' if shown else ''}. Pass the builder arguments the weights "
                "were trained with, e.g. --model-arg alpha=0.35."
            )
    else:
        raise ValueError(
            f"xbn-export: SOURCE {source!r} is neither a run folder, a .keras file nor a "
            f"registered model ({', '.join(list_models())})."
        )
    classes = int(model.output_shape[-1])
    names = _read_class_names(class_names, classes)
    crop = 0.875 if eval_crop is None else eval_crop
    path, _ = export_model(
        model, out, class_names=names, preprocessing=facts.preprocessing, model_name=facts.name,
        eval_crop=crop, fold=fold, overwrite=overwrite, fmt=fmt, top_k=top_k, log=log,
    )
    return path


def _read_class_names(path, classes):
    if path is None:
        return [f"class_{i}" for i in range(classes)]
    names = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if len(names) != classes:
        raise ValueError(
            f"xbn-export: {path} lists {len(names)} class names; the model has {classes} classes."
        )
    return names
