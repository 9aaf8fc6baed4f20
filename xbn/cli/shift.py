"""``xbn-shift``: the estimation shift of every BatchNorm layer, against depth.

Each SOURCE (a run folder from xbn-train, a .keras file, or a registered
model name with --weights) is run in inference mode over --data; for every
BatchNorm the population statistics of its input are compared with its
moving statistics (see xbn.diagnostics.estimation_shift for the metrics).
Prints a table per model and writes shift.png (one line per model),
shift.json and shift.md to --out.

Examples::

    xbn-shift runs/mobilenetv2-digits runs/mobilenetv2_xbn-digits
    xbn-shift runs/resnet50 runs/resnet50_xbn --data folder:/data/val --out runs/shift-val
    xbn-shift runs/mobilenetv2-digits --recalibrate-bn 20   # before and after precise BN
"""

import json
import sys
from pathlib import Path

from xbn.cli import _common
from xbn.errors import UsageError


def build_parser():
    p = _common.parser_from_doc("xbn-shift", __doc__)
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="run folder, .keras file, or registered model name")
    p.add_argument("--data", help=f"the data to measure on (default: the run's own data). {_common.data_help()}")
    _common.add_data_arg(p)
    p.add_argument("--split", choices=("train", "val", "test"),
                   help="split to measure on (default: test where there is one, else val)")
    p.add_argument("--val-split", type=float,
                   help="hold-out fraction of a source without a val split (default: the run's, else 0.1)")
    p.add_argument("--steps", type=int, help="batches to pool (default: the whole split)")
    p.add_argument("--batch-size", type=int, default=64, help="images per step (default 64)")
    p.add_argument("--recalibrate-bn", type=int, metavar="STEPS", default=0,
                   help="also measure after precise BN over STEPS training batches (default 0: off)")
    p.add_argument("--weights", metavar="NAME|PATH",
                   help="a weights name (xbn.models.list_weights) or a weights file, when SOURCE is one registered "
                        "model name")
    _common.add_model_arg(p)
    p.add_argument("--image-size", type=int, help="input side for a registered model (default: its default size)")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="leave out files that are not decodable images, and list them (default: refuse them)")
    p.add_argument("--out", default="runs/shift",
                   help="folder for shift.png, shift.json, shift.md (default runs/shift)")
    return p


def _check(args):
    for flag, value, minimum in (("--batch-size", args.batch_size, 1), ("--steps", args.steps, 1),
                                 ("--recalibrate-bn", args.recalibrate_bn, 0)):
        if value is not None and value < minimum:
            raise UsageError(f"{flag} must be >= {minimum}; got {value}.")
    if (args.weights or args.model_arg or args.image_size) and len(args.sources) != 1:
        raise UsageError("--weights/--model-arg/--image-size describe one registered model; give one SOURCE.")
    out = Path(args.out)
    if out.exists() and not out.is_dir():  # refused before anything is measured
        raise FileExistsError(f"--out {out} is a file; name a folder for shift.png, shift.json and shift.md.")


def _labels(sources, names):
    """Legend labels: the folder or file name, made unique."""
    labels = []
    for source, name in zip(sources, names):
        path = Path(source)
        label = path.stem if (path.is_dir() or path.suffix == ".keras") else name
        while label in labels:
            label += "'"
        labels.append(label)
    return labels


def measure(args, log=print):
    """The reports of every SOURCE (and after precise BN with --recalibrate-bn)."""
    import keras

    from xbn.data import Augment, Pipeline
    from xbn.data.sources import data_record, is_recorded, open_recorded
    from xbn.diagnostics import StatisticsCollector, estimation_shift, recalibrate_bn
    from xbn.training.trained import load_trained

    reports, sources = [], {}
    model_args = _common.parse_key_values(args.model_arg)
    data_args = _common.parse_key_values(args.data_arg, "--data-arg") or None
    loaded = [
        load_trained(source, args.weights, image_size=args.image_size, model_args=model_args)
        for source in args.sources
    ]
    for source, label, item in zip(args.sources, _labels(args.sources, [m.name for m in loaded]), loaded):
        settings = item.settings
        data = args.data or settings.get("data")
        if data is None:
            raise UsageError(f"SOURCE {source} is not a run folder; say which data to measure on with --data.")
        record = data_record(settings)
        own = is_recorded(record, data, data_args)
        # Other data: a tenth held out, as a run would, to measure on.
        val_split = args.val_split if args.val_split is not None or own else 0.1
        key = (data, val_split, repr(record) if own else repr(data_args))
        if key not in sources:
            sources[key] = open_recorded(
                record, data, val_split, skip_bad_images=args.skip_bad_images, progress=log, data_args=data_args
            )[0]
        source_data = sources[key]
        split = args.split or ("test" if "test" in source_data.splits else "val")
        pipeline = Pipeline(
            source_data, item.image_size, item.preprocessing, args.batch_size,
            augment=Augment(eval_crop=item.eval_crop),
        )
        dataset = pipeline.evaluation(split)
        total = args.steps or pipeline.steps(split, training=False)
        collector = StatisticsCollector(item.model)
        bar = keras.utils.Progbar(total, verbose=1 if sys.stdout.isatty() else 0)
        log(f"xbn-shift: {label} ({item.name}) on {data}, {split} split")
        report = estimation_shift(item.model, dataset, args.steps, label=label, collector=collector,
                                  progress=bar.update)
        reports.append(report)
        if args.recalibrate_bn and report.layers:
            recalibrate_bn(item.model, pipeline.evaluation("train"), args.recalibrate_bn, progress=log)
            reports.append(estimation_shift(
                item.model, dataset, args.steps, label=f"{label} + precise BN", collector=collector,
            ))
    return reports


def _body(argv):
    args = build_parser().parse_args(argv)
    _check(args)
    from xbn import _files
    from xbn.data.images import named_bad_input
    from xbn.diagnostics import plot_shift

    with named_bad_input():
        reports = measure(args)
    out = Path(args.out)
    sections = []
    for report in reports:
        sections.append(f"## {report.model}\n\n{report.summary()}\n\n{report.table() if report.layers else ''}")
        print(f"\n{sections[-1]}")
    out.mkdir(parents=True, exist_ok=True)
    _files.atomic_write_text(out / "shift.md", "# Estimation shift\n\n" + "\n\n".join(sections) + "\n")
    _files.atomic_write_text(out / "shift.json", json.dumps([r.to_dict() for r in reports], indent=2) + "\n")
    plot_shift(reports, out / "shift.png")
    print(f"\nxbn-shift: wrote {out / 'shift.png'}, shift.json and shift.md")
    return 0


main = _common.console_main("xbn-shift", _body)

if __name__ == "__main__":
    sys.exit(main())
