"""``xbn-study``: the batch-size study, BN against XBN against GN+WS.

Trains the vanilla, XBN and GN+WS form of one family on the embedded digits
at several batch sizes with the same number of epochs, then writes a table
of test accuracy and mean estimation shift (study.md, study.json) and a
plot (study.png) to --out.  Finished runs are reused; an interrupted study
resumes where it stopped.

Examples::

    python scripts/study_batch_size.py --readme models/README.md
    xbn-study --family mobilenetv2 --batch-sizes 2 8 64 --epochs 3 --out runs/study-quick
"""

import dataclasses
import json
import shlex
import sys
from pathlib import Path

from xbn.cli import _common


def build_parser():
    from xbn.study import BATCH_SIZES

    p = _common.parser_from_doc("xbn-study", __doc__)
    p.add_argument("--family", default="mobilenetv2",
                   help="registered model family: its vanilla, XBN and GN+WS forms are trained (default mobilenetv2)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES), metavar="B")
    p.add_argument("--epochs", type=int, default=8, help="epochs per run, the same at every batch size (default 8)")
    p.add_argument("--image-size", type=int, default=32, help="input side (default 32)")
    p.add_argument(
        "--model-arg", action="append", metavar="[MODEL:]KEY=VALUE",
        help="builder argument of every form (default alpha=0.35 for MobileNetV2), or with a "
        "MODEL: prefix of that form only, e.g. mobilenetv2_gnws:gn_groups=8 (repeatable)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/study", help="folder of the runs and results (default runs/study)")
    p.add_argument("--readme", type=Path, help="also replace the generated 'study' section of this Markdown file")
    return p


def _body(argv):
    args = build_parser().parse_args(argv)
    for flag, value, minimum in (("--epochs", args.epochs, 1), ("--image-size", args.image_size, 32)):
        if value < minimum:
            raise ValueError(f"{flag} must be >= {minimum}; got {value}.")
    from xbn import _files
    from xbn import study

    shared, per_form = [], {}
    for item in args.model_arg or ():
        prefix, sep, rest = item.partition(":")
        if sep and "=" not in prefix:
            per_form.setdefault(prefix.strip(), []).append(rest)
        else:
            shared.append(item)
    results = study.run_study(
        args.family, args.batch_sizes, args.epochs, args.image_size,
        _common.parse_key_values(shared) or None, args.out, args.seed,
        form_args={form: _common.parse_key_values(items) for form, items in per_form.items()},
    )
    command = " ".join(["python scripts/study_batch_size.py", *map(shlex.quote, argv or sys.argv[1:])])
    table = study.to_markdown(results, command)
    out = Path(args.out)
    _files.atomic_write_text(out / "study.md", table)
    _files.atomic_write_text(out / "study.json", json.dumps([dataclasses.asdict(r) for r in results], indent=2) + "\n")
    study.plot(results, out / "study.png")
    if args.readme:
        picture = study.plot(results, args.readme.parent / "study_batch_size.png")
        _files.replace_section(args.readme, "study", f"{table}\n![batch-size study]({picture.name})\n")
    print(table)
    print(f"xbn-study: wrote {out / 'study.md'}, study.json and study.png")
    return 0


main = _common.console_main("xbn-study", _body)

if __name__ == "__main__":
    sys.exit(main())
