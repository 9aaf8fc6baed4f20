"""``xbn-export``: export a trained model as a SavedModel for serving.

SOURCE is a run folder from xbn-train, a .keras file, or a registered model
name with --weights.  BatchNorm is folded into the convolutions unless
--no-fold.  The export is written atomically and checked against the source
model before it is put in place.  A SavedModel is TensorFlow's format: under
keras' JAX or PyTorch backend xbn-export does its work under TensorFlow, in a
process of its own.

Examples::

    xbn-export runs/mobilenetv2_xbn-digits --out runs/digits-export
    xbn-export model.keras --out export/ --class-names classes.txt
    xbn-export resnet50 --weights ~/.keras/models/resnet50_weights_tf_dim_ordering_tf_kernels.h5 \\
        --class-names imagenet_classes.txt --out export/resnet50
    xbn-export runs/flowers --out flowers-litert --format litert
"""

import sys

from xbn.cli import _common


def build_parser():
    p = _common.parser_from_doc("xbn-export", __doc__)
    p.add_argument("source", help="run folder, .keras file, or registered model name")
    p.add_argument("--out", required=True, help="destination folder (an export is a folder, whatever the format)")
    p.add_argument("--weights", metavar="NAME|PATH",
                   help="with a registered model name: a weights name (xbn.models.list_weights) or a weights file")
    _common.add_model_arg(p)
    p.add_argument("--class-names", help="text file with one class name per line")
    p.add_argument("--image-size", type=int, help="input side for a registered model (default: its default size)")
    p.add_argument("--eval-crop", type=float,
                   help="central fraction kept by serve_bytes (default 0.875; run folders use their own)")
    p.add_argument("--top-k", type=int, default=5, help="labels returned per image (default 5)")
    p.add_argument("--format", choices=("saved_model", "litert", "onnx"), default="saved_model",
                   help="saved_model (TensorFlow Serving, tf.saved_model.load), litert (model.tflite) or onnx "
                        "(model.onnx), each in the --out folder with assets.extra/xbn.json (default saved_model)")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="serve_bytes refuses images with more pixels, before decoding them (default 50000000)")
    p.add_argument("--no-fold", action="store_true", help="keep BatchNorm layers as they are")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return p


def _body(argv):
    args = build_parser().parse_args(argv)
    import keras

    if keras.backend.backend() != "tensorflow":
        from xbn.training.trained import in_tensorflow

        return in_tensorflow("xbn.cli.export", sys.argv[1:] if argv is None else list(argv), capture=False)
    from xbn.export import MAX_PIXELS
    from xbn.training.trained import export_source

    path = export_source(
        args.source, args.out, weights=args.weights, class_names=args.class_names,
        image_size=args.image_size, fold=not args.no_fold, overwrite=args.overwrite,
        fmt=args.format, eval_crop=args.eval_crop, top_k=args.top_k,
        model_args=_common.parse_key_values(args.model_arg),
        max_pixels=MAX_PIXELS if args.max_pixels is None else args.max_pixels,
        log=lambda m: print(f"xbn-{m}"),
    )
    print(f"xbn-export: done; serve it with TensorFlow Serving or tf.saved_model.load('{path}')"
          if args.format == "saved_model" else f"xbn-export: done: {path}")
    return 0


main = _common.console_main("xbn-export", _body)

if __name__ == "__main__":
    sys.exit(main())
