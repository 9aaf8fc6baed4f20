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
    p = argparse.ArgumentParser(
        prog="xbn-train", description="Train an xbn zoo model (see --help for every setting).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("Examples::")[1],
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("--recipe", help="models/NAME.yaml with settings; flags override it")
    g = p.add_argument_group("model and data")
    g.add_argument("--model", help="registered model name (default mobilenetv2_xbn)")
    g.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="builder argument, repeatable (e.g. alpha=0.35)")
    g.add_argument("--data", help=f"where the images come from (default digits). {_common.data_help()}")
    g.add_argument("--data-arg", action="append", metavar="KEY=VALUE",
                   help="option of the --data source, repeatable (e.g. label_offset=-1)")
    g.add_argument("--val-data", help="separate validation data (same forms as --data)")
    g.add_argument("--test-data", help="separate test data (same forms as --data)")
    g.add_argument("--val-split", type=float, help="fraction of each class held out for validation (default 0.1)")
    g.add_argument("--skip-bad-images", action="store_true", help="skip unreadable image files and report them")
    g.add_argument("--image-size", type=int, help="input side in pixels, >= 32 (default 64)")
    g = p.add_argument_group("optimization")
    g.add_argument("--epochs", type=int)
    g.add_argument("--steps-per-epoch", type=int, help="at most this many batches per epoch (default: the whole split)")
    g.add_argument("--batch-size", type=int, help="global batch size")
    g.add_argument("--optimizer", choices=("sgd", "adamw"))
    g.add_argument("--lr", type=float, help="peak learning rate (default 0.1 x batch/256 for SGD)")
    g.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    g.add_argument("--warmup-epochs", type=float, help="linear warm-up (default 1; a fifth of runs shorter than that)")
    g.add_argument("--weight-decay", type=float, help="decoupled weight decay (default 1e-4)")
    g.add_argument("--label-smoothing", type=float)
    g = p.add_argument_group("normalization")
    g.add_argument("--bn-momentum", type=float, help="momentum of every BatchNorm's moving averages")
    g.add_argument("--recalibrate-bn", type=int, metavar="STEPS", help="precise-BN batches before the final evaluation (0: off)")
    g.add_argument("--sync-bn", action="store_true", help="synchronized BatchNorm across replicas")
    g = p.add_argument_group("input pipeline")
    g.add_argument("--crop-scale", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="random-resized-crop area range (default: the data's, 0.6 1 for digits, 0.08 1 for photos)")
    g.add_argument("--flip", action=argparse.BooleanOptionalAction,
                   help="random horizontal flips (default: off for digits, on for photos)")
    g.add_argument("--eval-crop", type=float,
                   help="central fraction kept at evaluation (default: 1 for digits, 0.875 for photos)")
    g.add_argument("--cache", action=argparse.BooleanOptionalAction,
                   help="keep decoded images in memory (default: when they fit in 1 GiB)")
    g.add_argument("--seed", type=int)
    g = p.add_argument_group("execution and output")
    g.add_argument("--mixed-precision", choices=("none", "float16", "bfloat16"))
    g.add_argument("--jit-compile", action="store_true", help="XLA-compile the train step")
    g.add_argument("--strategy", choices=("auto", "default", "mirrored", "multiworker"))
    g.add_argument("--out", help="run folder (default runs/<model>-<data>)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    g.add_argument("--export", action=argparse.BooleanOptionalAction, help="export a SavedModel at the end (default on)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def config_from_args(argv):
    from xbn.training import resolve

    args = vars(build_parser().parse_args(argv))
    recipe = args.pop("recipe", None)
    if "model_arg" in args:
        args["model_args"] = _common.parse_key_values(args.pop("model_arg"))
    if "data_arg" in args:
        args["data_args"] = _common.parse_key_values(args.pop("data_arg"), flag="--data-arg")
    if args.pop("quiet", False):
        args["verbose"] = False
    if "crop_scale" in args:
        args["crop_scale"] = tuple(args["crop_scale"])
    return resolve(recipe, args)


def _body(argv):
    from xbn.training import ExportFailedError, NonFiniteLossError, train

    config = config_from_args(argv)
    try:
        train(config)
    except NonFiniteLossError as error:
        print(_common.error_line("xbn-train", error), file=sys.stderr)
        return 1
    except ExportFailedError as error:
        print(_common.error_line("xbn-train", error), file=sys.stderr)
        return 3
    return 0


def main(argv=None):
    _common.quiet_tensorflow()
    return _common.run_main("xbn-train", _body, argv)


if __name__ == "__main__":
    sys.exit(main())
