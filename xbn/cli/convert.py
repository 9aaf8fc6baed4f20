"""``xbn-convert``: a PyTorch checkpoint of the official XBNBlock code (or torchvision) as an xbn model.

CHECKPOINT is a ``.pth``/``.pt`` file as the official training script saves
it (``{"state_dict": ...}`` with DataParallel's ``module.`` prefix), a
plain state dict, or a ``.safetensors`` file.  The model is built with ``layout="torchvision"``, the
checkpoint's number of classes and the model's default input size; every
tensor must find its weight and every weight its tensor (else one line
lists what is left over on each side and the likely cause).  Needs PyTorch:
``pip install 'xbn[torch]'``.

Examples::

    xbn-convert resnet50_xbnblock.pth --model resnet50_xbn --out resnet50_xbn.keras
    xbn-convert resnext50_xbnblock.pth --model resnext50_32x4d_xbn --out rx50.keras \\
        --export export/rx50 --class-names imagenet_classes.txt
"""

import sys

from xbn.cli import _common
from xbn.errors import UsageError


def build_parser():
    p = _common.parser_from_doc("xbn-convert", __doc__)
    p.add_argument("checkpoint", help="PyTorch checkpoint (.pth/.pt)")
    p.add_argument("--model", required=True, help="registered model name (e.g. resnet50_xbn)")
    _common.add_model_arg(p)
    p.add_argument("--image-size", type=int, help="input side (default: the model's default size)")
    p.add_argument("--out", required=True, help="the .keras file to write")
    p.add_argument("--export", metavar="DIR", help="also export a serving SavedModel (BatchNorm folded) there")
    p.add_argument("--class-names", help="text file with one class name per line, for --export")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out / --export")
    return p


def _body(argv):
    args = build_parser().parse_args(argv)
    from pathlib import Path

    from xbn import _files
    from xbn.models.torch_weights import model_from_torch

    out = Path(args.out)
    if out.suffix != ".keras":
        raise UsageError(f"--out must name a .keras file; got {out}.")
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"--out {out} exists; pass --overwrite to replace it.")
    if args.export and Path(args.export).exists() and not args.overwrite:
        raise FileExistsError(f"--export {args.export} exists; pass --overwrite to replace it.")
    if args.class_names and not args.export:
        raise UsageError("--class-names names the classes of an --export; add --export DIR.")
    try:
        model, report = model_from_torch(
            args.model, args.checkpoint, args.image_size, _common.parse_key_values(args.model_arg)
        )
    except ImportError as error:  # no PyTorch: one line naming the extra, not a traceback
        raise UsageError(str(error)) from None
    print(f"xbn-convert: {report.summary()}")
    if args.class_names:  # checked before anything is written
        from xbn.models.loading import read_class_names

        try:
            read_class_names(args.class_names, model.output_shape[-1])
        except ValueError as error:
            raise UsageError(f"--class-names {error} Nothing was written.") from None
    with _files.atomic_path(out) as tmp:
        model.save(tmp)
    print(f"xbn-convert: wrote {out} ({args.model}, {model.output_shape[-1]} classes, "
          f"{model.input_shape[1]}x{model.input_shape[2]} input)")
    if args.export:
        from xbn.training.trained import export_source

        path = export_source(str(out), args.export, class_names=args.class_names, overwrite=args.overwrite,
                             log=lambda m: print(f"xbn-{m}"))
        print(f"xbn-convert: exported {path}")
    return 0


main = _common.console_main("xbn-convert", _body)

if __name__ == "__main__":
    sys.exit(main())
