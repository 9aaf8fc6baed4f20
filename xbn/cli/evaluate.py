"""``xbn-evaluate``: top-1/top-5 accuracy of an exported model on a data source.

Without --data an export of a run is scored on the run's own data, on the
split it never trained on (test where the data has one, else the run's
validation hold-out); other data is scored whole unless --split says which.

Examples::

    xbn-evaluate runs/mobilenetv2_xbn-digits/export
    xbn-evaluate export/flowers --data folder:/data/flowers-test
"""

import json
import sys

from xbn.cli import _common


def build_parser():
    p = _common.parser_from_doc("xbn-evaluate", __doc__)
    p.add_argument("export", help="an export folder written by xbn-export or xbn-train")
    p.add_argument("--data", help=f"the data to evaluate on (default: the run's data). {_common.data_help()}")
    p.add_argument("--split", choices=("train", "val", "test"),
                   help="default: the run's held-out split on its own data, all of other data")
    p.add_argument("--val-split", type=float, help="hold-out fraction (default: the run's on its own data, else 0)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--skip-bad-images", action="store_true")
    p.add_argument("--json", help="also write the result to this JSON file")
    return p


def _body(argv):
    args = build_parser().parse_args(argv)
    if args.batch_size < 1:
        raise ValueError("--batch-size must be >= 1.")
    from xbn import _files
    from xbn.export.use import evaluate_export

    result = evaluate_export(
        args.export, args.data, split=args.split, batch_size=args.batch_size,
        val_split=args.val_split, skip_bad_images=args.skip_bad_images,
    )
    k = result["k"]
    print(f"| export | data | split | examples | top-1 | top-{k} |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    print(f"| {args.export} | {result['data']} | {result['split']} | {result['examples']} | "
          f"{result['top1']:.2%} | {result['topk']:.2%} |")
    if args.json:
        _files.atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


main = _common.console_main("xbn-evaluate", _body)

if __name__ == "__main__":
    sys.exit(main())
