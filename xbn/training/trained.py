"""A trained model from wherever it lives, with its facts; and its export.

The command-line tools that take a trained model (``xbn-export``,
``xbn-shift``) accept the same three kinds of SOURCE:

- a run folder written by ``xbn-train`` (read through
  :mod:`xbn.training.run_folder`): classes, input size, preprocessing,
  crop and data come from the run;
- a ``.keras`` file saved from an xbn model: its facts come from its name;
- a registered model name with ``--weights``: a weights name
  (``imagenet``, ``torchvision``: their classes, preprocessing and crop come
  with them), a keras weights file or a PyTorch checkpoint (and builder
  arguments).
"""

import dataclasses
from pathlib import Path

from xbn.errors import UsageError
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
    from xbn.models.registry import list_models, model_facts

    path = Path(source)
    if path.is_dir():
        if weights or class_names or image_size or model_args:
            raise UsageError(
                "a run folder brings its own weights, classes, size and builder arguments; "
                "drop `weights`, `class_names`, `image_size` and `model_args`."
            )
        return load_run(path, eval_crop=eval_crop)
    if path.suffix == ".keras":
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        model = load_model(path)
        facts = model_facts(model)
    elif source in list_models():
        if weights is None:
            raise UsageError(
                f"the registered model {source!r} needs `weights` NAME|PATH (an untrained model "
                "has nothing to show)."
            )
        return _named_model(source, weights, class_names, image_size, model_args or {}, eval_crop)
    else:
        raise UsageError(
            f"SOURCE {source!r} is neither a run folder, a .keras file nor a registered model "
            f"({', '.join(list_models())})."
        )
    classes = int(model.output_shape[-1])
    return LoadedModel(
        model, facts.name, facts.preprocessing, read_class_names(class_names, classes),
        0.875 if eval_crop is None else eval_crop, int(model.input_shape[1]),
    )


def _named_model(name, weights, class_names, image_size, model_args, eval_crop):
    """A registered model with ``weights``: a weights name, a keras weights file or a PyTorch checkpoint."""
    from xbn.models import pretrained
    from xbn.models.loading import read_class_names
    from xbn.models.registry import get_model, model_facts
    from xbn.models.weights import read_weights, transfer_weights
    from xbn.training.start import TORCH_SUFFIXES

    facts = model_facts(name)
    size = image_size or facts.default_size
    if pretrained.is_weights_name(name, weights):
        entry = pretrained.weights_entry(name, weights)
        model = get_model(name, weights=weights, input_shape=(size, size, 3), **model_args)
        names = read_class_names(class_names, entry.classes) if class_names else entry.names()
        return LoadedModel(model, name, entry.preprocessing, names,
                           entry.eval_crop if eval_crop is None else eval_crop, size)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"`weights` {weights}: no such file, and not a weights name of {name} "
                                f"({pretrained.names_text(name)}).")
    if path.suffix in TORCH_SUFFIXES:
        from xbn.models import model_from_torch

        model, _ = model_from_torch(name, path, image_size=size, model_args=model_args)
    else:
        arrays = read_weights(path)
        dense = arrays.get("predictions")
        classes = dense[0].shape[-1] if dense else 1000
        model = get_model(name, input_shape=(size, size, 3), classes=classes, **model_args)
        report = transfer_weights(arrays, model)
        if report.left_initial:
            shown = "; ".join(f"{k}: {v}" for k, v in list(report.mismatched.items())[:2])
            raise UsageError(
                f"{weights} does not fit {name!r} built with "
                f"{model_args or 'its default arguments'}: {report.summary()}"
                f"{' (' + shown + ')' if shown else ''}. Pass the builder arguments the weights "
                "were trained with, e.g. `model_args` alpha=0.35."
            )
    classes = int(model.output_shape[-1])
    return LoadedModel(model, facts.name, facts.preprocessing, read_class_names(class_names, classes),
                       0.875 if eval_crop is None else eval_crop, size)


def export_run(run_dir, model=None, out=None, fold=True, overwrite=True, fmt="saved_model",
               max_pixels=None, log=print):
    """Export the model of an ``xbn-train`` run folder (default: ``<run>/export``).

    ``model`` is the run's final model when the caller holds it already (as
    ``xbn-train`` does); otherwise ``model.keras`` is loaded.  The export
    records the run's data and held-out split, which ``xbn-evaluate`` scores
    by default.  On keras' JAX and PyTorch backends the export is made by
    TensorFlow in a process of its own (:func:`in_tensorflow`) from
    ``model.keras``, and a SavedModel is then checked against ``model``'s
    own outputs.
    """
    import keras

    run_dir = Path(run_dir)
    out = Path(out or run_dir / "export")
    if keras.backend.backend() != "tensorflow":
        argv = [str(run_dir), "--out", str(out), "--format", fmt, *([] if fold else ["--no-fold"]),
                *(["--overwrite"] if overwrite else []),
                *([] if max_pixels is None else ["--max-pixels", str(max_pixels)])]
        in_tensorflow("xbn.cli.export", argv, log)
        if fmt == "saved_model":
            loaded = load_run(run_dir, model)
            check_export(loaded.model, out, loaded.preprocessing, log)
        return out
    loaded = load_run(run_dir, model)
    return _export(loaded, out, fold, overwrite, fmt, 5, max_pixels, log)


def in_tensorflow(module, argv, log=print, capture=True):
    """Run the console script ``module`` (``"xbn.cli.export"``) with ``argv``
    under keras' TensorFlow backend, in a process of its own: what only
    TensorFlow can do (a SavedModel) from a JAX or PyTorch process.

    With ``capture`` its output goes to ``log`` and a failure raises (a
    :class:`~xbn.errors.UsageError` where the script refused its input, with
    its error line); without, it writes to this process's terminal and its
    exit status is returned."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    command = [sys.executable, "-m", module, *argv]
    if not capture:
        return subprocess.run(command, env=env).returncode
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    for line in result.stdout.splitlines():
        log(line)
    if result.returncode:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit status {result.returncode}"
        error = UsageError if result.returncode == 2 else RuntimeError
        raise error(f"{module.rsplit('.', 1)[-1]} under TensorFlow failed: {last}")
    return result.returncode


def check_export(model, export_dir, preprocessing, log=print):
    """Compare a SavedModel's ``serving_default`` with ``model``'s own outputs
    (of this process's keras backend) on real and random images, within
    what the export's precision promises; raises ``ExportError`` otherwise."""
    import numpy as np

    from xbn import _backend
    from xbn.export.verify import check_batch, compare, has_logits, probabilities, reference, tolerance

    tf = _backend.tensorflow()
    images = check_batch(model)
    expected = reference(model, preprocessing, images)
    served = tf.saved_model.load(str(export_dir)).signatures["serving_default"](images=tf.constant(images))
    name = "logits" if has_logits(model) else "probabilities"
    got = served[name].numpy() if name in served else served["probabilities"].numpy()
    if name not in served:
        expected = probabilities(model, expected)
    compare(f"export's {name} (against the {model.name} of this backend)", np.asarray(expected), got, log,
            tolerance(model))


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


def predict_files(loaded, paths, top_k=5):
    """Top-k labels of each image file with a model in memory (a
    :class:`LoadedModel`), as the export's ``serve_bytes`` does it: the file
    decoded, its shorter side resized to ``size / eval_crop``, the center
    cropped, the model's preprocessing; bad files get an error, not an
    exception.

    Returns:
        ``[(path, [(label, probability), ...] or None, error or None)]``.
    """
    import keras
    import numpy as np

    from xbn import _backend
    from xbn.data.images import decode, read_image_file, readable_decode_error
    from xbn.data.pipeline import eval_image
    from xbn.export.verify import has_logits
    from xbn.models.preprocessing import preprocess_images

    tf = _backend.tensorflow()
    logits = has_logits(loaded.model)
    results = []
    for path in paths:
        data, unreadable = read_image_file(path)
        if unreadable:
            results.append((path, None, unreadable))
            continue
        try:
            image = eval_image(decode(tf.constant(data)), loaded.image_size, loaded.eval_crop)
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
            results.append((path, None, readable_decode_error(error.message)))
            continue
        batch = preprocess_images(image.numpy()[None], loaded.preprocessing)
        scores = np.asarray(keras.ops.convert_to_numpy(loaded.model.predict_on_batch(batch)), np.float64)[0]
        if logits:
            scores = np.exp(scores - scores.max())
            scores /= scores.sum()
        order = np.argsort(-scores, kind="stable")[:top_k]
        results.append((path, [(loaded.class_names[i], float(scores[i])) for i in order], None))
    return results

