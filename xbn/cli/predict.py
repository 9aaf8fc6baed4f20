"""``xbn-predict``: the top-k labels of image files, from an exported model.

Example::

    xbn-predict runs/mobilenetv2_xbn-digits/export digit.png photo.jpg
"""

import sys

from xbn.cli import _common


def build_parser():
    p = _common.parser_from_doc("xbn-predict", __doc__)
    p.add_argument("export", help="an export folder written by xbn-export or xbn-train")
    p.add_argument("images", nargs="+", help="JPEG, PNG, BMP or GIF files")
    p.add_argument("--top-k", type=int, help="labels per image (default: the export's)")
    return p


def _body(argv):
    args = build_parser().parse_args(argv)
    if args.top_k is not None and args.top_k < 1:
        raise ValueError("--top-k must be >= 1.")
    from xbn.export.use import predict_files

    failed = 0
    for path, labels, error in predict_files(args.export, args.images, args.top_k):
        if error:
            failed += 1
            print(f"{path}: error: {error}", file=sys.stderr)
            continue
        ranked = ", ".join(f"{label} ({p:.1%})" for label, p in labels)
        print(f"{path}: {ranked}")
    return 1 if failed else 0


main = _common.console_main("xbn-predict", _body)

if __name__ == "__main__":
    sys.exit(main())
