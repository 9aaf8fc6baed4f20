"""A trained model from wherever it lives, with its facts; and its export.

The command-line tools that take a trained model (``xbn-export``,
``xbn-shift``) accept the same three kinds of SOURCE:

- a run folder written by ``xbn-train`` (read through
  :mod:`xbn.training.run_folder`): classes, input size, preprocessing,
  crop and data come from the run;
- a ``.keras`` file saved from an xbn model: its facts come from its name;
- a registered model name with a weights file (and builder arguments).
"""

import dataclasses
from pathlib import Path

from xbn.training import run_folder


@dataclasses.dataclass
class LoadedModel:
    """A trained model and what serving or analysing it needs."""

    model: object
    name: str  # registered model name
    preprocessing: str
    class_names: list
    eval_crop: float
    image_size: int
    settings: dict = dataclasses.field(default_factory=dict)  # a run folder's xbn-train settings


def load_run(run_dir, model=None, eval_crop=None):
    """Open an ``xbn-train`` run folder; ``model`` is its final model if already in memory."""
    from xbn.models.loading import load_model

    run_dir = Path(run_dir)
    model_file = run_dir / run_folder.MODEL_FILE
    if not run_folder.is_run(run_dir):
        raise FileNotFoundError(f"{run_dir} is not an xbn-train run folder (no run.json).")
    if model is None:
        if not model_file.is_file():
            raise FileNotFoundError(
                f"{run_dir} has no model.keras yet: the run has not finished. Run the same "
                "xbn-train command again to resume it."
            )
        model = load_model(model_file)
    info = run_folder.read_run(run_dir)
    settings = run_folder.resolved_settings(info)  # with the data's defaults filled in
    return LoadedModel(
        model, settings["model"], info["facts"]["preprocessing"], info["class_names"],
        settings["eval_crop"] if eval_crop is None else eval_crop, int(model.input_shape[1]),
        settings,
    )


def load_trained(source, weights=None, class_names=None, image_size=None, model_args=None, eval_crop=None):
    """Open SOURCE (see the module docstring) as a :class:`LoadedModel`.

    Raises:
        ValueError, FileNotFoundError: naming the problem and the fix.
    """
    from xbn.models.loading import load_model, read_class_names
    from xbn.models.registry import get_model, list_models, model_facts
    from xbn.models.weights import read_weights, transfer_weights

    path = Path(source)
    if path.is_dir():
        if weights or class_names or image_size or model_args:
            raise ValueError(
                "a run folder brings its own weights, classes, size and builder arguments; "
                "drop --weights/--class-names/--image-size/--model-arg."
            )
        return load_run(path, eval_crop=eval_crop)
    if path.suffix == ".keras":
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        model = load_model(path)
        facts = model_facts(model)
    elif source in list_models():
        if weights is None:
            raise ValueError(
                f"the registered model {source!r} needs --weights PATH (an untrained model "
                "has nothing to show)."
            )
        facts = model_facts(source)
        arrays = read_weights(weights)
        dense = arrays.get("predictions")
        classes = dense[0].shape[-1] if dense else 1000
        size = image_size or facts.default_size
        model = get_model(source, input_shape=(size, size, 3), classes=classes, **(model_args or {}))
        report = transfer_weights(arrays, model)
        if report.left_initial:
            shown = "; ".join(f"{k}: {v}" for k, v in list(report.mismatched.items())[:2])
            raise ValueError(
                f"{weights} does not fit {source!r} built with "
                f"{model_args or 'its default arguments'}: {report.summary()}"
                f"{' (' + shown + ')' if shown else ''}. Pass the builder arguments the weights "
                "were trained with, e.g. --model-arg alpha=0.35."
            )
    else:
        raise ValueError(
            f"SOURCE {source!r} is neither a run folder, a .keras file nor a registered model "
            f"({', '.join(list_models())})."
        )
    classes = int(model.output_shape[-1])
    return LoadedModel(
        model, facts.name, facts.preprocessing, read_class_names(class_names, classes),
        0.875 if eval_crop is None else eval_crop, int(model.input_shape[1]),
    )


def export_run(run_dir, model=None, out=None, fold=True, overwrite=True, fmt="saved_model",
               max_pixels=None, log=print):
    """Export the model of an ``xbn-train`` run folder (default: ``<run>/export``).

    ``model`` is the run's final model when the caller holds it already (as
    ``xbn-train`` does); otherwise ``model.keras`` is loaded.  The export
    records the run's data and held-out split, which ``xbn-evaluate`` scores
    by default.
    """
    run_dir = Path(run_dir)
    loaded = load_run(run_dir, model)
    return _export(loaded, out or run_dir / "export", fold, overwrite, fmt, 5, max_pixels, log)


def export_source(
    source, out, weights=None, class_names=None, image_size=None, fold=True, overwrite=False,
    fmt="saved_model", eval_crop=None, top_k=5, model_args=None, max_pixels=None, log=print,
):
    """Export a run folder, a ``.keras`` file or a registered model name."""
    loaded = load_trained(source, weights, class_names, image_size, model_args, eval_crop)
    return _export(loaded, out, fold, overwrite, fmt, top_k, max_pixels, log)


def _export(loaded, out, fold, overwrite, fmt, top_k, max_pixels, log):
    from xbn.data.sources import data_record
    from xbn.export import MAX_PIXELS, export_model

    path, _ = export_model(
        loaded.model, out, class_names=loaded.class_names, preprocessing=loaded.preprocessing,
        model_name=loaded.name, eval_crop=loaded.eval_crop, fold=fold, overwrite=overwrite,
        fmt=fmt, top_k=top_k, max_pixels=MAX_PIXELS if max_pixels is None else max_pixels,
        data=data_record(loaded.settings), log=log,
    )
    return path
