"""Opening a trained model from wherever it lives, with its facts.

The command-line tools that take a trained model (``xbn-export``,
``xbn-shift``) accept the same three kinds of SOURCE:

- a run folder written by ``xbn-train`` (``run.json`` + ``model.keras``):
  classes, input size, preprocessing and crop come from the run;
- a ``.keras`` file saved from an xbn model: its facts come from its name;
- a registered model name with a weights file (and builder arguments).
"""

import dataclasses
import json
from pathlib import Path


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


def _default_names(classes):
    return [f"class_{i}" for i in range(classes)]


def read_class_names(path, classes):
    """One class name per line of ``path`` (``None``: ``class_0``...)."""
    if path is None:
        return _default_names(classes)
    names = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if len(names) != classes:
        raise ValueError(f"{path} lists {len(names)} class names; the model has {classes} classes.")
    return names


def _load_keras_file(path):
    """A ``.keras`` file with xbn's layers (and folded BatchNorms) registered."""
    import keras

    import xbn.fold  # noqa: F401  (registers FoldedBatchNorm)
    import xbn.layers  # noqa: F401  (registers the layers)

    return keras.saving.load_model(path)


def load_run(run_dir, model=None, eval_crop=None):
    """Open an ``xbn-train`` run folder; ``model`` is its final model if already in memory."""
    run_dir = Path(run_dir)
    run_file, model_file = run_dir / "run.json", run_dir / "model.keras"
    if not run_file.is_file():
        raise FileNotFoundError(f"{run_dir} is not an xbn-train run folder (no run.json).")
    if model is None:
        if not model_file.is_file():
            raise FileNotFoundError(
                f"{run_dir} has no model.keras yet: the run has not finished. Run the same "
                "xbn-train command again to resume it."
            )
        model = _load_keras_file(model_file)
    info = json.loads(run_file.read_text())
    return LoadedModel(
        model, info["settings"]["model"], info["facts"]["preprocessing"], info["class_names"],
        info["settings"]["eval_crop"] if eval_crop is None else eval_crop, int(model.input_shape[1]),
        info["settings"],
    )


def load_trained(source, weights=None, class_names=None, image_size=None, model_args=None, eval_crop=None):
    """Open SOURCE (see the module docstring) as a :class:`LoadedModel`.

    Raises:
        ValueError, FileNotFoundError: naming the problem and the fix.
    """
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
        model = _load_keras_file(path)
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
