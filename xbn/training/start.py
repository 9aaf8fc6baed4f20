"""Starting a run from trained weights (``xbn-train --weights``, ``--freeze``, ``--calibrate``).

``--weights`` names where the starting point comes from:

- a weights name of the model, or of its vanilla twin for an XBN or GN+WS
  model (``xbn.models.list_weights``: ``imagenet``, ``torchvision``, ...),
  downloaded once into keras' cache and verified;
- an earlier run folder (its ``model.keras``), a ``.keras`` file, a
  ``.weights.h5`` or keras ``.h5`` file, or a PyTorch checkpoint
  (``.pth``, ``.pt``, ``.bin``, ``.safetensors``) of the model or of its
  vanilla twin.

The run's model takes every layer whose name and weight shapes match
(:func:`xbn.models.transfer_weights`); a head for another number of
classes, and the GroupNorms an XBN model adds to a BatchNorm network, are
new.  :func:`load_start` says exactly which layers were loaded and which
are new, and the file's SHA-256, for the log and ``run.json``; with
``--calibrate`` the new GroupNorms are calibrated to the BatchNorms they
replace (:func:`xbn.surgery.calibrate_xbn`).
"""

import dataclasses
from pathlib import Path

from xbn.errors import UsageError
from xbn.models.pretrained import file_digest

HEAD = "predictions"
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
KERAS_SUFFIXES = (".keras", ".h5")


@dataclasses.dataclass
class StartReport:
    """What :func:`load_start` loaded (written to ``run.json`` as ``weights``).

    Attributes:
        source: the ``--weights`` value.
        kind: ``"name"``, ``"run"``, ``"keras"``, ``"weights"`` or ``"torch"``.
        file: the file read.
        sha256: its SHA-256.
        loaded: the layers that received weights.
        new: the layers left at their initial values, with why.
        calibration: the calibration's summary, where there was one.
        before_training: what the loaded network scored before training,
            where its head was loaded too (``{split: metrics}``).
    """

    source: str
    kind: str
    file: str
    sha256: str
    loaded: list
    new: dict
    calibration: dict = None
    before_training: dict = None

    def as_dict(self):
        return dataclasses.asdict(self)

    def lines(self):
        """The log lines of the start."""
        shown = ", ".join(f"{name} ({why})" for name, why in list(self.new.items())[:8])
        more = f" and {len(self.new) - 8} more" if len(self.new) > 8 else ""
        lines = [f"started from {self.source}: {self.file} (sha256 {self.sha256[:16]}...)",
                 f"  {len(self.loaded)} layers loaded; {len(self.new)} new"
                 + (f": {shown}{more}" if self.new else "")]
        if self.calibration:
            lines.append(f"  {self.calibration['summary']}")
        return lines


def weights_entry_for(model, spec):
    """The weights entry ``spec`` names for ``model``: its own, or its vanilla twin's; ``None`` if none."""
    from xbn.models import pretrained
    from xbn.models.registry import twin

    for name in (model, twin(model, "vanilla")):
        if name and pretrained.is_weights_name(name, spec):
            return pretrained.weights_entry(name, spec)
    return None


def _kind(spec, model):
    """What ``spec`` is, checked before any work is done."""
    from xbn.training.run_folder import MODEL_FILE, is_run

    path = Path(spec).expanduser()
    if weights_entry_for(model, spec) is not None:
        return "name", None
    if path.is_dir():
        if not is_run(path):
            raise FileNotFoundError(f"`weights` {spec} is a folder but not an xbn-train run folder (no run.json).")
        if not (path / MODEL_FILE).is_file():
            raise FileNotFoundError(f"`weights` {spec} is a run that has not finished (no {MODEL_FILE}); finish it "
                                    "first (run its xbn-train command again) or name one of its files.")
        return "run", path / MODEL_FILE
    if path.is_file():
        if path.suffix in TORCH_SUFFIXES:
            return "torch", path
        if path.name.endswith(".keras"):
            return "keras", path
        if path.suffix == ".h5":
            return "weights", path
        raise UsageError(f"`weights` {spec}: {path.suffix or 'no'} suffix; give a .keras, .weights.h5 or keras .h5 "
                         f"file, a PyTorch checkpoint ({', '.join(TORCH_SUFFIXES)}) or a run folder.")
    from xbn.models import pretrained
    from xbn.models.registry import twin

    names = {pretrained.names_text(m) for m in (model, twin(model, "vanilla")) if m}
    raise FileNotFoundError(f"`weights` {spec} is neither a file, a run folder nor a weights name of {model} "
                            f"({'; '.join(sorted(names))}).")


def check_start(config):
    """Refuse a ``--weights`` that names nothing, before any work (cheap: no download)."""
    if config.weights is not None:
        _kind(config.weights, config.model)


def entry_arguments(config):
    """The builder arguments a named ``--weights`` needs (its layout, width), as ``model_args`` additions.

    Returns ``{}`` for files; raises where ``model_args`` say otherwise.
    """
    entry = weights_entry_for(config.model, config.weights) if config.weights else None
    if entry is None:
        return {}
    needed = {}
    for key, value in entry.builder_args.items():
        given = config.model_args.get(key, value)
        if given != value:
            raise UsageError(
                f"xbn-train: `weights` {config.weights} were trained with {key}={value!r}; `model_args` gives "
                f"{key}={given!r}. Drop that `model_args`, or choose other weights."
            )
        if key not in config.model_args:
            needed[key] = value
    return needed


def _source(kind, spec, path, model_name, image_size, model_args):
    """``(source model or None, {layer: arrays} or None, file read)``."""
    from xbn.models import get_model, read_weights
    from xbn.models.loading import load_model
    from xbn.models.registry import twin

    if kind == "name":
        entry = weights_entry_for(model_name, spec)
        args = {k: v for k, v in model_args.items() if k not in ("xbn_groups", "xbn_position", "stem_norm")
                or entry.model == model_name}
        source = get_model(entry.model, weights=entry.name, input_shape=(image_size, image_size, 3), **args)
        from xbn.models import pretrained

        return source, None, pretrained.fetch(entry, progress=False)
    if kind in ("run", "keras"):
        return load_model(path), None, path
    if kind == "weights":
        return None, read_weights(path), path
    from xbn.models import model_from_torch

    errors = []
    for name in (model_name, twin(model_name, "vanilla")):
        if name is None:
            continue
        try:
            args = {k: v for k, v in model_args.items() if name == model_name or k in ("layout", "alpha")}
            return model_from_torch(name, path, image_size=image_size, model_args=args)[0], None, path
        except ValueError as error:
            errors.append(f"{name}: {error}")
    raise UsageError(f"`weights` {spec} fits neither {model_name} nor its vanilla twin: {' | '.join(errors)}")


def load_start(model, config, image_size, calibration_images=None, progress=None):
    """Load ``config.weights`` into ``model`` by layer name and shape; returns a :class:`StartReport`.

    Args:
        model: the run's model (its head sized for the run's classes).
        config: the :class:`~xbn.training.TrainConfig`.
        image_size: the run's input side.
        calibration_images: with ``config.calibrate``, a dataset of
            ``(images, labels)`` batches of training images (preprocessed).
        progress: ``progress(line)``.

    Raises:
        ValueError: the weights are another model's (most layers found no
            match), or there is nothing to calibrate.
    """
    from xbn.models import transfer_weights
    from xbn.models.registry import get_model, model_facts, twin

    kind, path = _kind(config.weights, config.model)
    source, arrays, path = _source(kind, config.weights, path, config.model, image_size, config.model_args)
    report = transfer_weights(source if source is not None else arrays, model)
    weighted = len(report.loaded) + len(report.left_initial)
    from xbn.layers import GroupNorm

    new = {}
    for name in report.left_initial:
        reason = report.mismatched.get(name)
        if name == HEAD and reason:
            new[name] = "the head, for this data's classes"
        elif isinstance(model.get_layer(name), GroupNorm) and not reason:
            new[name] = "a GroupNorm in a BatchNorm's place" + (", calibrated" if config.calibrate else
                                                                ", at scale 1, offset 0")
        else:
            new[name] = reason or "not in the weights"
    body = [n for n in report.loaded if n != HEAD]
    if 2 * len(body) < weighted - 1:
        detail = "; ".join(f"{k}: {v}" for k, v in list(report.mismatched.items())[:2])
        raise UsageError(
            f"`weights` {config.weights}: only {len(report.loaded)} of the {weighted} layers of {config.model} "
            f"found weights of their name and shape{' (' + detail + ')' if detail else ''}; they are another "
            "model's, or this one's built with other `model_args` (alpha, layout)."
        )
    start = StartReport(config.weights, kind, str(path), file_digest(path), report.loaded, new)
    if config.calibrate:
        from xbn.surgery import calibrate_xbn

        groupnorms = [n for n in new if isinstance(model.get_layer(n), GroupNorm)]
        if not groupnorms:
            raise UsageError(f"`calibrate`: the weights {config.weights} hold every GroupNorm of {config.model} "
                             "already; there is none to calibrate. Drop `calibrate`.")
        if source is None or model_facts(source).variant != "vanilla":  # a file of arrays: its BN network
            vanilla = get_model(twin(config.model, "vanilla"), input_shape=(image_size, image_size, 3),
                                classes=model.output_shape[-1], classifier_activation=None,
                                **{k: v for k, v in config.model_args.items()
                                   if k not in ("xbn_groups", "xbn_position", "stem_norm")})
            transfer_weights(source if source is not None else arrays, vanilla)
            source = vanilla
        images = calibration_images.unbatch().take(config.calibrate).batch(64)
        result = calibrate_xbn(model, source, images, progress=progress)
        start.calibration = {"summary": result.summary(), "images": result.images, "layers": result.layers}
        if result.images < config.calibrate:
            start.calibration["summary"] += f" (the training split has {result.images} images)"
    return start


def set_frozen(model, frozen):
    """``frozen``: every layer but the head untrainable (its BatchNorms in
    inference mode, as keras' transfer-learning guide has it); else all trainable."""
    for layer in model.layers:
        layer.trainable = not frozen or layer.name == HEAD
