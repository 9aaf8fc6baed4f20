"""``xbn-train``: train a zoo model on a tf.data pipeline.

With no arguments it runs the embedded digits job: ``mobilenetv2_xbn``
(alpha 0.35) on scikit-learn's 8x8 digits upsampled to 64x64, evaluated on
a held-out test split, in a few minutes on two CPU cores.

Examples::

    xbn-train
    xbn-train --recipe models/digits_mobilenetv2_xbn.yaml --epochs 30
    xbn-train --model resnet50_xbn --data folder:/data/flowers --image-size 128 \\
        --batch-size 32 --epochs 20 --out runs/flowers
    xbn-train --recipe models/imagenet_resnet50_xbn.yaml --data tfrecord:/data/train-* \\
        --val-data tfrecord:/data/validation-* --mixed-precision float16

Running the same command again resumes an interrupted run from its last
finished epoch, or reports a finished one (and makes its export if it is
missing).  Exit status: 0 done; 1 the loss became NaN or infinite (the last
good checkpoint is kept); 2 bad settings or data, a folder in use, a full
disk (one line says which and what to do); 3 the training finished and its
results are saved, but the export failed.
"""

import argparse
import sys

from xbn.cli import _common


def build_parser():
    """The parser, one flag per :class:`~xbn.training.TrainConfig` field (from its metadata)."""
    import dataclasses

    from xbn.training import TrainConfig

    p = _common.parser_from_doc(
        "xbn-train", __doc__, description="Train an xbn zoo model (see --help for every setting).",
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("--recipe", help="models/NAME.yaml with settings; flags override it")
    groups = {}
    for field in dataclasses.fields(TrainConfig):
        meta = field.metadata
        if not meta:
            continue  # not a setting
        group = groups.get(meta["group"]) or groups.setdefault(meta["group"], p.add_argument_group(meta["group"]))
        flag = meta["flag"] or "--" + field.name.replace("_", "-")
        help_text = meta["help"]() if callable(meta["help"]) else meta["help"]
        options = {"dest": field.name, "help": help_text, "metavar": meta["metavar"]}
        if meta["repeat"]:
            options.update(action="append", metavar="KEY=VALUE", help=f"{help_text}; repeatable")
        elif meta["invert"]:
            options.update(action="store_false")
        elif field.type is bool:
            options.update(action="store_true" if field.default is False else argparse.BooleanOptionalAction)
        else:
            options.update(type=float if field.type is tuple else field.type if field.type in (int, float) else None,
                           nargs=meta["nargs"], choices=meta["choices"])
        shown = field.default is not False and not meta["invert"]  # flags that only switch on: no default
        if shown and field.default not in (None, dataclasses.MISSING) and "default" not in (help_text or ""):
            default = {True: "on"}.get(field.default, field.default)
            options["help"] = f"{help_text} (default {default})" if help_text else f"default {default}"
        group.add_argument(flag, **{k: v for k, v in options.items() if v is not None})
    return p


def config_from_args(argv):
    """The :class:`~xbn.training.TrainConfig` that ``xbn-train ARGV`` runs, validated."""
    from xbn.training import resolve

    args = vars(build_parser().parse_args(argv))
    recipe = args.pop("recipe", None)
    for key, flag in (("model_args", "--model-arg"), ("data_args", "--data-arg")):
        if key in args:
            args[key] = _common.parse_key_values(args[key], flag=flag)
    if "crop_scale" in args:
        args["crop_scale"] = tuple(args["crop_scale"])
    return resolve(recipe, args)


def _body(argv):
    from xbn.training import ExportFailedError, NonFiniteLossError, train

    config = config_from_args(argv)
    try:
        # The trainer's notes name arguments as Python does; here, as flags.
        train(config, log=lambda line: print(_common.in_flags(line, "xbn-train")))
    except NonFiniteLossError as error:
        print(_common.error_line("xbn-train", error), file=sys.stderr)
        return 1
    except ExportFailedError as error:
        print(_common.error_line("xbn-train", error), file=sys.stderr)
        return 3
    return 0


main = _common.console_main("xbn-train", _body)

if __name__ == "__main__":
    sys.exit(main())
