"""Training settings: defaults, recipes and command-line flags, in one place.

:class:`TrainConfig` holds every setting of a run.  Its defaults are the
embedded digits job (what ``xbn-train`` runs with no arguments).  A recipe,
``models/NAME.yaml``, holds the same settings under the same names and may
name a ``base`` recipe to start from; flags given on the command line
override the recipe.  :func:`resolve` merges the three and validates the
result, naming the setting and the fix on any error.
"""

import dataclasses
from pathlib import Path

from xbn import _checks
from xbn.errors import UsageError, UsageTypeError

OPTIMIZERS = ("sgd", "adamw")
PRECISIONS = ("none", "float16", "bfloat16")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
FREEZE = ("none", "backbone")

# Settings that may change between a run and its resumption.
RESUMABLE_CHANGES = ("out", "overwrite", "export", "verbose")


def _setting(default=None, help=None, group=None, *, factory=None, choices=None, metavar=None, nargs=None,
             flag=None, repeat=False, invert=False):
    """A :class:`TrainConfig` field with what its ``xbn-train`` flag needs.

    ``help`` may be a callable (evaluated when the parser is built, e.g. to
    list the registered data sources).  ``flag`` names a flag that is not
    ``--`` plus the field name with dashes; ``repeat`` makes a ``KEY=VALUE``
    flag that may be given many times and fills a dict; ``invert`` makes a
    flag that sets a True-by-default field to False (``--quiet``).
    """
    metadata = {"help": help, "group": group, "choices": choices, "metavar": metavar, "nargs": nargs,
                "flag": flag, "repeat": repeat, "invert": invert}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _data_help():
    from xbn.data.sources import data_help

    return f"where the images come from (default digits). {data_help()}"


MODEL_AND_DATA, START, OPTIMIZATION, NORMALIZATION, PIPELINE, EXECUTION = (
    "model and data", "starting from trained weights", "optimization", "normalization", "input pipeline",
    "execution and output",
)


@dataclasses.dataclass
class TrainConfig:
    """Every setting of a training run (see ``xbn-train --help``).

    Each field's metadata is its ``xbn-train`` flag: help, group, choices
    (:func:`xbn.cli.train.build_parser` builds the parser from them, so the
    command line never restates a setting, a choice or a default).
    """

    # what to train, on what
    model: str = _setting("mobilenetv2_xbn", "registered model name", MODEL_AND_DATA)
    model_args: dict = _setting(
        help="builder argument (e.g. alpha=0.35)", group=MODEL_AND_DATA, flag="--model-arg", repeat=True,
        factory=lambda: small_args(TrainConfig.model),
    )
    data: str = _setting("digits", _data_help, MODEL_AND_DATA)
    val_data: str = _setting(None, "separate validation data (same forms as --data)", MODEL_AND_DATA)
    test_data: str = _setting(None, "separate test data (same forms as --data)", MODEL_AND_DATA)
    val_split: float = _setting(0.1, "fraction of each class held out for validation", MODEL_AND_DATA)
    skip_bad_images: bool = _setting(False, "skip unreadable image files and report them", MODEL_AND_DATA)
    data_args: dict = _setting(
        help="option of the --data source (e.g. label_offset=-1)", group=MODEL_AND_DATA, flag="--data-arg",
        repeat=True, factory=dict,
    )
    image_size: int = _setting(64, "input side in pixels, >= 32 (>= 8 for the CIFAR ResNets)", MODEL_AND_DATA)
    # starting from trained weights
    weights: str = _setting(
        None, "start from trained weights: a weights name of the model or of its vanilla twin (see "
        "xbn.models.list_weights: imagenet, torchvision, ...), a .keras, .weights.h5 or keras .h5 file, a PyTorch "
        "checkpoint (.pth, .pt, .bin, .safetensors) or an earlier run folder; layers are loaded by name and shape "
        "and a head for other classes is replaced (default: random initialization)", START, metavar="NAME|PATH",
    )
    freeze: str = _setting(
        "none", "backbone: train only the head, every other layer frozen (its BatchNorms in inference mode)", START,
        choices=FREEZE,
    )
    freeze_epochs: int = _setting(
        None, "with --freeze backbone: unfreeze everything after this many epochs, with the optimizer's state "
        "reset and --unfreeze-lr (default: frozen the whole run)", START, metavar="N",
    )
    unfreeze_lr: float = _setting(
        None, "peak learning rate once unfrozen (default: a tenth of the peak learning rate)", START,
    )
    calibrate: int = _setting(
        0, "with --weights of a BatchNorm network and an XBN --model: calibrate each new GroupNorm to the "
        "BatchNorm it replaces on this many training images (xbn.surgery.calibrate_xbn; 0: off)", START,
        metavar="IMAGES",
    )
    # optimization
    epochs: int = _setting(15, group=OPTIMIZATION)
    steps_per_epoch: int = _setting(
        None, "at most this many batches per epoch (default: the whole split)", OPTIMIZATION
    )
    batch_size: int = _setting(64, "global batch size", OPTIMIZATION)
    optimizer: str = _setting("sgd", group=OPTIMIZATION, choices=OPTIMIZERS)
    lr: float = _setting(None, "peak learning rate (default 0.1 x batch/256 for SGD, 1e-3 x batch/256 for AdamW)",
                         OPTIMIZATION)
    momentum: float = _setting(0.9, "SGD momentum", OPTIMIZATION)
    warmup_epochs: float = _setting(
        None, "linear warm-up (default 1; a fifth of runs of 1 epoch or less)", OPTIMIZATION
    )
    weight_decay: float = _setting(1e-4, "decoupled weight decay", OPTIMIZATION)
    label_smoothing: float = _setting(0.1, group=OPTIMIZATION)
    # normalization
    bn_momentum: float = _setting(0.9, "momentum of every BatchNorm's moving averages", NORMALIZATION)
    recalibrate_bn: int = _setting(
        20, "precise-BN batches before the final evaluation (0: off)", NORMALIZATION, metavar="STEPS"
    )
    sync_bn: bool = _setting(False, "synchronized BatchNorm across replicas", NORMALIZATION)
    # augmentation and input pipeline; None: what the data source needs
    # (digits: (0.6, 1.0), no flips, the whole image, cached; photos:
    # (0.08, 1.0), flips, 87.5% central crop, cached if they fit in 1 GiB)
    crop_scale: tuple = _setting(
        None, "random-resized-crop area range (default: the data's, 0.6 1 for digits, 0.08 1 for photos)",
        PIPELINE, nargs=2, metavar=("MIN", "MAX"),
    )
    flip: bool = _setting(None, "random horizontal flips (default: off for digits, on for photos)", PIPELINE)
    eval_crop: float = _setting(
        None, "central fraction kept at evaluation (default: 1 for digits, 0.875 for photos)", PIPELINE
    )
    cache: bool = _setting(None, "keep decoded images in memory (default: when they fit in 1 GiB)", PIPELINE)
    seed: int = _setting(0, group=PIPELINE)
    # execution
    mixed_precision: str = _setting("none", group=EXECUTION, choices=PRECISIONS)
    jit_compile: bool = _setting(False, "XLA-compile the train step", EXECUTION)
    strategy: str = _setting("auto", group=EXECUTION, choices=STRATEGIES)
    # output
    out: str = _setting(None, "run folder (default runs/<model>-<data source>)", EXECUTION)
    overwrite: bool = _setting(False, "replace an existing run folder", EXECUTION)
    export: bool = _setting(True, "export a SavedModel at the end", EXECUTION)
    verbose: bool = _setting(True, "no progress bars", EXECUTION, flag="--quiet", invert=True)
    # What resolving the settings changed on the way (logged by the trainer;
    # not a setting, no flag).
    notes: list = dataclasses.field(default_factory=list, compare=False, repr=False)

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
        from xbn.data.sources import check_data_args, parse_spec
        from xbn.models import list_models, model_facts

        if self.model not in list_models():
            raise UsageError(
                f"{o}: unknown `model` {self.model!r}; the registered models are "
                f"{', '.join(list_models())}."
            )
        if not isinstance(self.model_args, dict):
            raise UsageTypeError(f"{o}: model_args must be a mapping; got {self.model_args!r}.")
        for reserved in RESERVED_MODEL_ARGS:
            if reserved in self.model_args:
                raise UsageError(
                    f"{o}: `model_args` {reserved} is set by the trainer itself (from "
                    "`image_size` and the data's classes); remove it."
                )
        check_builder_arguments(self.model, self.model_args)
        for spec in (self.data, self.val_data, self.test_data):
            if spec is not None:
                parse_spec(spec)
        if not isinstance(self.data_args, dict):
            raise UsageTypeError(f"{o}: data_args must be a mapping; got {self.data_args!r}.")
        check_data_args(self.data, self.data_args)
        self.val_split = _checks.check_float(o, "val_split", self.val_split, minimum=0.0, maximum=0.9)
        self.skip_bad_images = _checks.check_bool(o, "skip_bad_images", self.skip_bad_images)
        self.image_size = _checks.check_int(o, "image_size", self.image_size,
                                            minimum=model_facts(self.model).min_size)
        self.epochs = _checks.check_int(o, "epochs", self.epochs, minimum=1)
        self.batch_size = _checks.check_int(o, "batch_size", self.batch_size, minimum=1)
        if self.steps_per_epoch is not None:
            self.steps_per_epoch = _checks.check_int(o, "steps_per_epoch", self.steps_per_epoch, minimum=1)
        _checks.check_choice(o, "optimizer", self.optimizer, OPTIMIZERS)
        if self.lr is not None:
            self.lr = _checks.check_float(o, "lr", self.lr, minimum=0.0, min_inclusive=False)
        self.momentum = _checks.check_float(o, "momentum", self.momentum, minimum=0.0, maximum=1.0, max_inclusive=False)
        if self.warmup_epochs is None:
            self.warmup_epochs = 1.0 if self.epochs > 1 else round(WARMUP_SHARE * self.epochs, 3)
            if self.epochs <= 1:
                self.notes.append(
                    f"warm-up shortened from 1 to {self.warmup_epochs:g} epochs for a run of "
                    f"{self.epochs} epoch(s) (set `warmup_epochs` to choose)"
                )
        self.warmup_epochs = _checks.check_float(o, "warmup_epochs", self.warmup_epochs, minimum=0.0)
        if self.warmup_epochs >= self.epochs:
            raise UsageError(
                f"{o}: `warmup_epochs` {self.warmup_epochs} must be less than `epochs` {self.epochs}."
            )
        self.weight_decay = _checks.check_float(o, "weight_decay", self.weight_decay, minimum=0.0)
        self.label_smoothing = _checks.check_float(o, "label_smoothing", self.label_smoothing, minimum=0.0,
                                                   maximum=1.0, max_inclusive=False)
        if self.bn_momentum is not None:
            self.bn_momentum = _checks.check_float(o, "bn_momentum", self.bn_momentum, minimum=0.0, maximum=1.0,
                                                   max_inclusive=False)
        self.recalibrate_bn = _checks.check_int(o, "recalibrate_bn", self.recalibrate_bn, minimum=0)
        self.sync_bn = _checks.check_bool(o, "sync_bn", self.sync_bn)
        if self.crop_scale is not None:
            self.crop_scale = _checks.check_crop_scale(o, self.crop_scale)
        if self.flip is not None:
            self.flip = _checks.check_bool(o, "flip", self.flip)
        if self.eval_crop is not None:
            self.eval_crop = _checks.check_eval_crop(o, self.eval_crop)
        if self.cache is not None:
            self.cache = _checks.check_bool(o, "cache", self.cache)
        self.seed = _checks.check_int(o, "seed", self.seed, minimum=0)
        _checks.check_choice(o, "mixed_precision", self.mixed_precision, PRECISIONS)
        self.jit_compile = _checks.check_bool(o, "jit_compile", self.jit_compile)
        _checks.check_choice(o, "strategy", self.strategy, STRATEGIES)
        self._validate_start(o)
        return self

    def _validate_start(self, o):
        """The settings of starting from trained weights, checked together."""
        if self.weights is not None:
            if not isinstance(self.weights, str) or not self.weights:
                raise UsageTypeError(f"{o}: `weights` must be a weights name or a path; got {self.weights!r}.")
        _checks.check_choice(o, "freeze", self.freeze, FREEZE)
        if self.freeze != "none" and self.weights is None:
            raise UsageError(f"{o}: `freeze` {self.freeze} keeps trained layers as they are; give the `weights` "
                             "to start from (a frozen random backbone learns nothing).")
        if self.freeze_epochs is not None:
            if self.freeze == "none":
                raise UsageError(f"{o}: `freeze_epochs` says when to unfreeze; add `freeze` backbone.")
            self.freeze_epochs = _checks.check_int(o, "freeze_epochs", self.freeze_epochs, minimum=1,
                                                   maximum=max(1, self.epochs - 1))
        if self.unfreeze_lr is not None:
            if self.freeze_epochs is None:
                raise UsageError(f"{o}: `unfreeze_lr` is the learning rate once unfrozen; add `freeze` backbone "
                                 "and `freeze_epochs`.")
            self.unfreeze_lr = _checks.check_float(o, "unfreeze_lr", self.unfreeze_lr, minimum=0.0,
                                                   min_inclusive=False)
        self.calibrate = _checks.check_int(o, "calibrate", self.calibrate, minimum=0)
        if self.calibrate:
            from xbn.models import model_facts

            if self.weights is None or model_facts(self.model).variant != "xbn":
                raise UsageError(
                    f"{o}: `calibrate` sets the GroupNorms an XBN model adds to a trained BatchNorm network: give "
                    "an XBN `model` (e.g. resnet50_xbn) and the `weights` of the BatchNorm network (e.g. imagenet)."
                )

    @property
    def unfrozen_learning_rate(self):
        """The peak learning rate after unfreezing: ``unfreeze_lr``, or a tenth of the first phase's."""
        return self.unfreeze_lr if self.unfreeze_lr is not None else self.learning_rate / 10

    def as_dict(self):
        data = dataclasses.asdict(self)
        del data["notes"]
        if self.crop_scale is not None:
            data["crop_scale"] = list(self.crop_scale)
        return data

    def training_settings(self):
        """The settings that define the run (what a resumption must match)."""
        return {k: v for k, v in self.as_dict().items() if k not in RESUMABLE_CHANGES}

    def resolve_data_defaults(self, defaults):
        """The settings left unset (None), filled from the data source's
        ``defaults`` (:attr:`xbn.data.DataSource.defaults`); returns what was
        filled in, for ``run.json``."""
        filled = {}
        for key in DATA_DEFAULTED:
            if getattr(self, key) is None:
                value = defaults[key]
                setattr(self, key, tuple(value) if key == "crop_scale" else value)
                filled[key] = list(value) if key == "crop_scale" else value
        return filled


FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "notes")
# Settings that default to what the data source needs.
DATA_DEFAULTED = ("crop_scale", "flip", "eval_crop", "cache")
# Builder arguments xbn-train sets itself.
RESERVED_MODEL_ARGS = ("input_shape", "classes", "include_top", "weights", "classifier_activation")
# The warm-up of a run of one epoch (or less) that sets none: this share of it.
WARMUP_SHARE = 0.2


def small_args(model):
    """The registered builder arguments of ``model`` for small inputs."""
    from xbn.models import model_facts

    return dict(model_facts(model).small_args)


def check_builder_arguments(model, model_args):
    """Refuse ``--model-arg`` names the builder of ``model`` does not take (see
    :func:`xbn.models.registry.check_arguments`), and those xbn-train sets."""
    from xbn.models.registry import check_arguments

    check_arguments(model, model_args, exclude=RESERVED_MODEL_ARGS, flag="`model_args`")


def load_recipe(path, _seen=None):
    """Read a recipe (YAML mapping of TrainConfig fields), following ``base``."""
    import yaml

    path = Path(path).expanduser()
    seen = _seen or []
    if path.resolve() in seen:
        raise UsageError(f"recipe {path}: its 'base' chain loops back to itself.")
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} does not exist; recipes live in models/*.yaml.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UsageError(f"recipe {path} is not valid YAML: {error}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"recipe {path} must be a mapping of settings, not {type(data).__name__}.")
    base = data.pop("base", None)
    unknown = [k for k in data if k not in FIELDS]
    if unknown:
        hints = [f"{key!r}{_checks.close_match(key, FIELDS)}" for key in unknown]
        raise UsageError(
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
        if key in ("model_args", "data_args") and key in settings:
            settings[key] = {**settings[key], **value}
        else:
            settings[key] = value
    unknown = [k for k in settings if k not in FIELDS]
    if unknown:
        raise UsageError(f"xbn-train: unknown setting(s) {unknown}.")
    if "model" in settings and "model_args" not in settings and settings["model"] != TrainConfig.model:
        # The default model_args belong to the default model.
        settings["model_args"] = {}
    return TrainConfig(**settings).validate()
