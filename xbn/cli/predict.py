"""``xbn-predict``: the top-k labels of image files, from a trained model.

MODEL is an export folder (xbn-export, xbn-train), a run folder, a .keras
file, or a registered model name with --weights (a weights name such as
imagenet, whose class names come with it, or a file).  IMAGES are image
files, or folders whose images (.jpg, .jpeg, .png, .bmp, .gif, at any depth)
are all predicted, in name order.

Examples::

    xbn-predict runs/mobilenetv2_xbn-digits/export digit.png photo.jpg
    xbn-predict runs/flowers photos/
    xbn-predict resnet50 --weights imagenet cat.jpg --top-k 3
"""

import sys
from pathlib import Path

from xbn.cli import _common
from xbn.errors import UsageError


def build_parser():
    p = _common.parser_from_doc("xbn-predict", __doc__)
    p.add_argument("export", metavar="MODEL",
                   help="an export folder, a run folder, a .keras file, or a registered model name with --weights")
    p.add_argument("images", nargs="+", metavar="IMAGES", help="JPEG, PNG, BMP or GIF files, or folders of them")
    p.add_argument("--top-k", type=int,
                   help="labels per image (default: the export's, 5 for other models; at most what an export holds)")
    p.add_argument("--weights", metavar="NAME|PATH",
                   help="with a registered model name: a weights name (xbn.models.list_weights) or a weights file")
    _common.add_model_arg(p)
    p.add_argument("--image-size", type=int, help="input side for a registered model (default: the weights' or "
                                                  "the model's)")
    p.add_argument("--class-names", help="text file with one class name per line, for a registered model and a "
                                         "weights file (default: class_0, class_1, ...)")
    return p


def expand(paths):
    """The image files ``paths`` name: files as given, folders as their image files."""
    from xbn.data.images import is_image_name

    files = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and is_image_name(p))
            if not found:
                raise FileNotFoundError(f"{name} is a folder without image files (.jpg, .jpeg, .png, .bmp, .gif).")
            files += [str(p) for p in found]
        else:
            files.append(name)
    return files


def _predictions(args, files):
    from xbn.export import INFO_FILE
    from xbn.models import list_models

    path = Path(args.export)
    if not path.exists() and args.export not in list_models():
        raise FileNotFoundError(f"MODEL {path} does not exist; give an export folder, a run folder, a .keras file "
                                "or a registered model name with --weights.")
    if path.is_dir() and (path / INFO_FILE).is_file():
        from xbn.export import load_info
        from xbn.export.use import predict_files

        if args.weights or args.model_arg or args.image_size or args.class_names:
            raise UsageError("an export brings its own weights, classes and size; drop --weights/--model-arg/"
                             "--image-size/--class-names.")
        held = load_info(path)["top_k"]
        if args.top_k is not None and args.top_k > held:
            raise UsageError(f"--top-k {args.top_k}: the export {path} returns its top {held} labels; ask for "
                             f"{held} or fewer, or export it again with xbn-export --top-k {args.top_k}.")
        return predict_files(path, files, args.top_k)
    from xbn.training.trained import load_trained, predict_files

    loaded = load_trained(args.export, args.weights, args.class_names, args.image_size,
                          _common.parse_key_values(args.model_arg))
    classes = len(loaded.class_names)
    if args.top_k is not None and args.top_k > classes:
        raise UsageError(f"--top-k {args.top_k}: the model has {classes} classes; ask for {classes} or fewer.")
    return predict_files(loaded, files, args.top_k or min(5, classes))


def _body(argv):
    args = build_parser().parse_args(argv)
    if args.top_k is not None and args.top_k < 1:
        raise UsageError("--top-k must be >= 1.")
    files = expand(args.images)
    failed = 0
    for path, labels, error in _predictions(args, files):
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
