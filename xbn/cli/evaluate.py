"""``xbn-evaluate``: top-1/top-5 accuracy of a trained model on a data source.

MODEL is an export folder (xbn-export, xbn-train), a run folder, a .keras
file, or a registered model name with --weights (a weights name such as
imagenet, or a weights file; as timm's validate.py takes a name and its
weights).  Without --data a model is scored on its run's own data, on the
split it never trained on (test where the data has one, else the run's
validation hold-out); other data is scored whole unless --split says which.

--corruption adds the corruption benchmark (Hendrycks & Dietterich, 2019):
top-1 per corruption and severity, applied deterministically to the images
at the model's input size, the mean corruption error and, against the same
benchmark on --baseline, the mCE and the relative mCE.

Examples::

    xbn-evaluate runs/mobilenetv2_xbn-digits/export
    xbn-evaluate export/flowers --data folder:/data/flowers-test
    xbn-evaluate runs/resnet20_xbn-digits --corruption all --baseline runs/resnet20-digits
    xbn-evaluate model.keras --data digits --corruption gaussian_noise:3 --corruption contrast
    xbn-evaluate resnet50 --weights imagenet --data tfrecord:/data/imagenet/validation-*
"""

import json
import sys
from pathlib import Path

from xbn.cli import _common
from xbn.errors import UsageError


def build_parser():
    from xbn.data.corruptions import CORRUPTIONS, DEFAULT_SUITE, NOT_PROVIDED, SUITES

    p = _common.parser_from_doc("xbn-evaluate", __doc__)
    p.add_argument("export", metavar="MODEL",
                   help="an export folder, a run folder, a .keras file, or a registered model name with --weights")
    p.add_argument("--weights", metavar="NAME|PATH",
                   help="with a registered model name: a weights name (xbn.models.list_weights) or a weights file "
                        "(.weights.h5, keras .h5, .keras, a PyTorch checkpoint)")
    _common.add_model_arg(p)
    p.add_argument("--image-size", type=int, help="input side for a registered model (default: the model's)")
    p.add_argument("--class-names", help="text file with one class name per line, for a registered model and a "
                                         "weights file (default: the weights' own, or class_0, class_1, ...)")
    p.add_argument("--data", help=f"the data to evaluate on (default: the run's data). {_common.data_help()}")
    _common.add_data_arg(p)
    p.add_argument("--split", choices=("train", "val", "test"),
                   help="default: the run's held-out split on its own data, all of other data")
    p.add_argument("--val-split", type=float, help="hold-out fraction (default: the run's on its own data, else 0)")
    p.add_argument("--batch-size", type=int, default=64, help="images per step (default 64)")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="leave out files that are not decodable images, and list them (default: refuse them)")
    p.add_argument(
        "--corruption", action="append", metavar="NAME[:SEVERITY]",
        help=f"score under a corruption (repeatable; all five severities without :SEVERITY), or 'all': "
        f"{', '.join(CORRUPTIONS)} (not provided: {', '.join(NOT_PROVIDED)})",
    )
    p.add_argument("--corruption-suite", default=DEFAULT_SUITE, choices=tuple(SUITES),
                   help=f"the severities' definitions: {DEFAULT_SUITE} (ImageNet-C's 32x32 rows) or a suite "
                        f"calibrated for small images (default {DEFAULT_SUITE})")
    p.add_argument("--baseline", metavar="MODEL",
                   help="with --corruption: the model the mCE is relative to (export, run folder or .keras)")
    p.add_argument("--json", help="also write the result to this JSON file")
    return p


def _keras_scorer(path, args):
    """``score(corruption)`` for a run folder or a .keras file."""
    from xbn.data import Augment, Pipeline
    from xbn.data.sources import data_record, open_recorded
    from xbn.training.steps import accuracy_function
    from xbn.training.trained import load_trained

    loaded = load_trained(path, args.weights, args.class_names, args.image_size,
                          _common.parse_key_values(args.model_arg))
    record = data_record(loaded.settings) if loaded.settings else None
    if record is None and args.data is None:
        raise UsageError(f"{path} has no run of its own to score on; name the data with --data.")
    source, _ = open_recorded(record, args.data, args.val_split, args.skip_bad_images, where=str(path),
                              data_args=args.data_args)
    split = args.split or next((s for s in ("test", "val") if s in source.splits), "train")
    named = "all" if split == "train" and len(source.splits) == 1 else split
    if source.num_classes != len(loaded.class_names):
        raise UsageError(f"--data {source.spec}: {source.num_classes} classes, the model has "
                         f"{len(loaded.class_names)}.")
    pipeline = Pipeline(source, loaded.image_size, loaded.preprocessing, args.batch_size,
                        augment=Augment(eval_crop=loaded.eval_crop))
    k = min(5, len(loaded.class_names))
    accuracy = accuracy_function(loaded.model, k)

    def score(corruption):
        return {"data": source.spec, "split": named, "k": k,
                **accuracy(pipeline.evaluation(split, corruption=corruption))}

    score.class_names = list(loaded.class_names)
    return score


def scorer(path, args):
    """``score(corruption)`` -> the accuracy dict, for any MODEL form."""
    from xbn.export import INFO_FILE
    from xbn.models import list_models
    from xbn.training.run_folder import is_run

    if str(path) in list_models():
        return _keras_scorer(path, args)
    if getattr(args, "weights", None):
        raise UsageError(f"--weights goes with a registered model name; {path} is not one "
                         f"({', '.join(list_models()[:6])}, ...).")
    path = Path(path)
    if path.is_dir() and not (path / INFO_FILE).is_file() and not is_run(path):
        raise UsageError(f"{path} is not an xbn export (no {INFO_FILE.as_posix()}) nor an xbn-train run "
                         "folder (no run.json).")
    if path.suffix != ".keras" and not is_run(path):
        from xbn.export import load_info
        from xbn.export.use import evaluate_export

        def score(corruption):
            return evaluate_export(
                path, args.data, split=args.split, batch_size=args.batch_size, val_split=args.val_split,
                skip_bad_images=args.skip_bad_images, corruption=corruption, data_args=args.data_args,
            )

        score.class_names = list(load_info(path)["class_names"])
        return score
    return _keras_scorer(path, args)


def classes_of(path):
    """The class names of an export, a run folder or a ``.keras`` file."""
    from xbn.export import INFO_FILE, load_info
    from xbn.training.trained import load_trained

    path = Path(path)
    if path.is_dir() and (path / INFO_FILE).is_file():
        return list(load_info(path)["class_names"])
    return list(load_trained(path).class_names)


def check_same_classes(model, classes, baseline, baseline_classes):
    """A baseline must answer the same question: the same classes, in order."""
    if list(classes) == list(baseline_classes):
        return
    if len(classes) != len(baseline_classes):
        what = f"{len(baseline_classes)} classes where {model} has {len(classes)}"
    else:
        what = f"other classes than {model} ({list(baseline_classes)[:5]} against {list(classes)[:5]})"
    raise UsageError(
        f"--baseline {baseline}: it has {what}; the mCE compares two models on the same task, so give a "
        "baseline trained on the same classes."
    )


def _body(argv):
    args = build_parser().parse_args(argv)
    if args.batch_size < 1:
        raise UsageError("--batch-size must be >= 1.")
    args.data_args = _common.parse_key_values(args.data_arg, "--data-arg") or None
    if args.baseline and not args.corruption:
        raise UsageError("--baseline is the reference of the corruption benchmark; add --corruption NAME or all.")
    from xbn import _files
    from xbn.diagnostics.corruptions import corruption_table, parse_corruptions, score_corruptions

    pairs = parse_corruptions(args.corruption or ())  # bad names refused before any model loads
    score = scorer(args.export, args)
    base_score = None
    if args.baseline:  # checked before any image is scored
        import argparse

        check_same_classes(args.export, score.class_names, args.baseline, classes_of(args.baseline))
        # The baseline is a model of its own: MODEL's --weights and builder options are not its.
        base_args = argparse.Namespace(**{**vars(args), "weights": None, "model_arg": None, "image_size": None,
                                          "class_names": None})
        base_score = scorer(args.baseline, base_args)
    result = score(None)
    k = result["k"]
    print(f"| model | data | split | examples | top-1 | top-{k} |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    print(f"| {args.export} | {result['data']} | {result['split']} | {result['examples']} | "
          f"{result['top1']:.2%} | {result['topk']:.2%} |")
    if pairs:
        from xbn._progress import Progress

        def benchmark(model_score, label):
            bar = Progress(len(pairs), f"corruptions of {label}")
            clean, top1 = score_corruptions(
                lambda c: model_score(c)["top1"], pairs, progress=lambda done: bar.update(done),
                suite=args.corruption_suite)
            bar.finish()
            return clean, top1

        clean, top1 = benchmark(lambda c: result if c is None else score(c), args.export)
        baseline = None
        if base_score is not None:
            base_clean, base_top1 = benchmark(base_score, args.baseline)
            baseline = (base_top1, base_clean)
        table, figures = corruption_table(top1, clean, baseline)
        print()
        print(table)
        result["corruption"] = {"suite": args.corruption_suite, "top1": top1, **figures}
        if baseline:
            result["corruption"]["baseline"] = {"model": args.baseline, "top1": baseline[0], "clean": baseline[1]}
    if args.json:
        _files.atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


main = _common.console_main("xbn-evaluate", _body)

if __name__ == "__main__":
    sys.exit(main())
