"""Training settings: defaults, recipes and command-line flags, in one place.

:class:`TrainConfig` holds every setting of a run.  Its defaults are the
embedded digits job (what ``xbn-train`` runs with no arguments).  A recipe,
``models/NAME.yaml``, holds the same settings under the same names and may
name a ``base`` recipe to start from; flags given on the command line
override the recipe.  :func:`resolve` merges the three and validates the
result, naming the setting and the fix on any error.
"""

import dataclasses
import difflib
from pathlib import Path

from xbn import _checks

OPTIMIZERS = ("sgd", "adamw")
PRECISIONS = ("none", "float16", "bfloat16")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")

# Settings that may change between a run and its resumption.
RESUMABLE_CHANGES = ("out", "overwrite", "export", "verbose")


@dataclasses.dataclass
class TrainConfig:
    """Every setting of a training run (see ``xbn-train --help``)."""

    # what to train, on what
    model: str = "mobilenetv2_xbn"
    model_args: dict = dataclasses.field(default_factory=lambda: {"alpha": 0.35})
    data: str = "digits"
    val_data: str = None
    test_data: str = None
    val_split: float = 0.1
    skip_bad_images: bool = False
    num_classes: int = None
    label_offset: int = 0
    tfds_data_dir: str = None
    image_size: int = 64
    # optimization
    epochs: int = 15
    steps_per_epoch: int = None  # None: the whole training split each epoch
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = None  # None: 0.1 x batch/256 (SGD) or 1e-3 x batch/256 (AdamW)
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    # normalization
    bn_momentum: float = 0.9
    recalibrate_bn: int = 20  # steps of precise-BN statistics before the final evaluation
    sync_bn: bool = False
    # augmentation and input pipeline
    crop_scale: tuple = (0.6, 1.0)
    flip: bool = False
    eval_crop: float = 1.0
    cache: bool = True
    seed: int = 0
    # execution
    mixed_precision: str = "none"
    jit_compile: bool = False
    strategy: str = "auto"
    # output
    out: str = None  # None: runs/<model>-<data source>
    overwrite: bool = False
    export: bool = True
    verbose: bool = True

    @property
    def learning_rate(self):
        """The peak learning rate: ``lr``, or the linear-scaling default."""
        if self.lr is not None:
            return self.lr
        base = 0.1 if self.optimizer == "sgd" else 1e-3
        return base * self.batch_size / 256

    @property
    def out_dir(self):
        if self.out:
            return Path(self.out)
        source = self.data.split(":", 1)[0]
        return Path("runs") / f"{self.model}-{source}"

    def validate(self):
        """Check every setting; returns self (normalised) or raises ValueError/TypeError."""
        o = "xbn-train"
        from xbn.data import parse_spec
        from xbn.models import list_models

        if self.model not in list_models():
            raise ValueError(
                f"{o}: unknown --model {self.model!r}; the registered models are "
                f"{', '.join(list_models())}."
            )
        if not isinstance(self.model_args, dict):
            raise TypeError(f"{o}: model_args must be a mapping; got {self.model_args!r}.")
        for reserved in ("input_shape", "classes", "include_top", "weights", "classifier_activation"):
            if reserved in self.model_args:
                raise ValueError(
                    f"{o}: --model-arg {reserved} is set by xbn-train itself (from "
                    "--image-size and the data's classes); remove it."
                )
        for spec in (self.data, self.val_data, self.test_data):
            if spec is not None:
                parse_spec(spec)
        self.val_split = _checks.check_float(o, "val_split", self.val_split, minimum=0.0, maximum=0.9)
        self.skip_bad_images = _checks.check_bool(o, "skip_bad_images", self.skip_bad_images)
        if self.num_classes is not None:
            self.num_classes = _checks.check_int(o, "num_classes", self.num_classes, minimum=2)
        self.label_offset = _checks.check_int(o, "label_offset", self.label_offset)
        self.image_size = _checks.check_int(o, "image_size", self.image_size, minimum=32)
        self.epochs = _checks.check_int(o, "epochs", self.epochs, minimum=1)
        self.batch_size = _checks.check_int(o, "batch_size", self.batch_size, minimum=1)
        if self.steps_per_epoch is not None:
            self.steps_per_epoch = _checks.check_int(o, "steps_per_epoch", self.steps_per_epoch, minimum=1)
        _checks.check_choice(o, "optimizer", self.optimizer, OPTIMIZERS)
        if self.lr is not None:
            self.lr = _checks.check_float(o, "lr", self.lr, minimum=0.0, min_inclusive=False)
        self.momentum = _checks.check_float(o, "momentum", self.momentum, minimum=0.0, maximum=1.0, max_inclusive=False)
        self.warmup_epochs = _checks.check_float(o, "warmup_epochs", self.warmup_epochs, minimum=0.0)
        if self.warmup_epochs >= self.epochs:
            raise ValueError(
                f"{o}: --warmup-epochs {self.warmup_epochs} must be less than --epochs {self.epochs}."
            )
        self.weight_decay = _checks.check_float(o, "weight_decay", self.weight_decay, minimum=0.0)
        self.label_smoothing = _checks.check_float(o, "label_smoothing", self.label_smoothing, minimum=0.0, maximum=1.0, max_inclusive=False)
        if self.bn_momentum is not None:
            self.bn_momentum = _checks.check_float(o, "bn_momentum", self.bn_momentum, minimum=0.0, maximum=1.0, max_inclusive=False)
        self.recalibrate_bn = _checks.check_int(o, "recalibrate_bn", self.recalibrate_bn, minimum=0)
        self.sync_bn = _checks.check_bool(o, "sync_bn", self.sync_bn)
        if (
            not isinstance(self.crop_scale, (list, tuple)) or len(self.crop_scale) != 2
        ):
            raise ValueError(f"{o}: crop_scale must be two numbers MIN MAX; got {self.crop_scale!r}.")
        self.crop_scale = tuple(
            _checks.check_float(o, "crop_scale", v, minimum=0.0, maximum=1.0, min_inclusive=False)
            for v in self.crop_scale
        )
        self.flip = _checks.check_bool(o, "flip", self.flip)
        self.eval_crop = _checks.check_float(o, "eval_crop", self.eval_crop, minimum=0.0, maximum=1.0, min_inclusive=False)
        self.cache = _checks.check_bool(o, "cache", self.cache)
        self.seed = _checks.check_int(o, "seed", self.seed, minimum=0)
        _checks.check_choice(o, "mixed_precision", self.mixed_precision, PRECISIONS)
        self.jit_compile = _checks.check_bool(o, "jit_compile", self.jit_compile)
        _checks.check_choice(o, "strategy", self.strategy, STRATEGIES)
        return self

    def as_dict(self):
        data = dataclasses.asdict(self)
        data["crop_scale"] = list(self.crop_scale)
        return data

    def training_settings(self):
        """The settings that define the run (what a resumption must match)."""
        return {k: v for k, v in self.as_dict().items() if k not in RESUMABLE_CHANGES}


FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))


def load_recipe(path, _seen=None):
    """Read a recipe (YAML mapping of TrainConfig fields), following ``base``."""
    import yaml

    path = Path(path).expanduser()
    seen = _seen or []
    if path.resolve() in seen:
        raise ValueError(f"recipe {path}: its 'base' chain loops back to itself.")
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} does not exist; recipes live in models/*.yaml.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ValueError(f"recipe {path} is not valid YAML: {error}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"recipe {path} must be a mapping of settings, not {type(data).__name__}.")
    base = data.pop("base", None)
    unknown = [k for k in data if k not in FIELDS]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, FIELDS, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(
            f"recipe {path}: unknown setting(s) {', '.join(hints)}. Known settings: "
            f"{', '.join(FIELDS)}."
        )
    if base:
        merged = load_recipe(path.parent / base, seen + [path.resolve()])
        merged.update(data)
        return merged
    return data


def resolve(recipe=None, overrides=None):
    """Defaults <- recipe <- command-line overrides, validated."""
    settings = {}
    if recipe:
        settings.update(load_recipe(recipe))
    for key, value in (overrides or {}).items():
        if key == "model_args" and "model_args" in settings:
            settings["model_args"] = {**settings["model_args"], **value}
        else:
            settings[key] = value
    unknown = [k for k in settings if k not in FIELDS]
    if unknown:
        raise ValueError(f"xbn-train: unknown setting(s) {unknown}.")
    if "model" in settings and "model_args" not in settings and settings["model"] != TrainConfig.model:
        # The default model_args belong to the default model.
        settings["model_args"] = {}
    return TrainConfig(**settings).validate()
