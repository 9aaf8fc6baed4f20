"""``xbn-plot``: draw a zoo model's architecture to a PNG (or SVG/PDF).

Examples::

    xbn-plot resnet50_xbn --out runs/resnet50_xbn.png
    xbn-plot mobilenetv2_xbn --model-arg alpha=0.35 --image-size 96 --out mnv2.svg
"""

import argparse
import sys

from xbn.cli import _common


def build_parser():
    parser = argparse.ArgumentParser(
        prog="xbn-plot", description="Draw a registered xbn model with keras.utils.plot_model."
    )
    parser.add_argument("model", help="registered model name (see --list)")
    parser.add_argument("--out", required=True, help="image file to write (.png, .svg, .pdf)")
    _common.add_model_arg(parser)
    parser.add_argument("--image-size", type=int, help="input side in pixels (default: the model's default size)")
    parser.add_argument("--no-shapes", action="store_true", help="leave tensor shapes out of the boxes")
    parser.add_argument("--rankdir", choices=("TB", "LR"), default="TB",
                        help="top-to-bottom or left-to-right (default TB)")
    parser.add_argument("--dpi", type=int, default=96, help="resolution of a PNG (default 96)")
    _common.add_debug_flag(parser)
    return parser


def _body(argv):
    args = build_parser().parse_args(argv)
    from xbn.models.plot import plot_model

    model_args = _common.parse_key_values(args.model_arg)
    path = plot_model(
        args.model, args.out, image_size=args.image_size, show_shapes=not args.no_shapes,
        rankdir=args.rankdir, dpi=args.dpi, **model_args,
    )
    print(f"xbn-plot: wrote {path}")
    return 0


main = _common.console_main("xbn-plot", _body)

if __name__ == "__main__":
    sys.exit(main())
