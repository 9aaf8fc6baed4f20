"""``xbn-bench``: run the benchmark suites and write the results.

Examples::

    xbn-bench                                  # every suite, full sizes
    xbn-bench --suite layers --repeats 20
    xbn-bench --quick --out runs/bench-quick   # small sizes, a smoke run
    xbn-bench --readme models/README.md        # refresh the published table
    xbn-bench --suite models --mixed-precision bfloat16 --jit-compile
"""

import argparse
import sys
from pathlib import Path

from xbn.cli import _common


def build_parser():
    from xbn.bench import SUITES

    parser = argparse.ArgumentParser(
        prog="xbn-bench",
        description="Measure xbn's speed and memory against keras' own layers and models.",
    )
    parser.add_argument(
        "--suite", action="append", choices=SUITES,
        help="suite to run (repeatable); default: all of " + ", ".join(SUITES),
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the benchmark runs, not the speed")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per case (median reported; default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    parser.add_argument(
        "--mixed-precision", action="append", choices=("float16", "bfloat16"), default=[],
        help="also time the ResNet-50 training steps under mixed_float16/mixed_bfloat16 (repeatable)",
    )
    parser.add_argument("--jit-compile", action="store_true", help="also time the ResNet-50 training steps with XLA")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"), help="folder for results.json and results.md (default runs/bench)")
    parser.add_argument("--readme", type=Path, help="also replace the generated 'bench' section of this Markdown file")
    return parser


def _body(argv):
    args = build_parser().parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        raise ValueError("--repeats must be >= 1 and --warmup >= 0.")
    from xbn import bench
    from xbn.bench import report

    suites = args.suite or bench.SUITES
    if (args.mixed_precision or args.jit_compile) and "models" not in suites:
        raise ValueError("--mixed-precision and --jit-compile are variants of the models suite; add --suite models.")
    from xbn import _hardware

    notes = dict.fromkeys(
        note for precision in (args.mixed_precision or ["none"])
        for note in _hardware.execution_warnings(precision, args.jit_compile)
    )
    for note in notes:
        print(f"[xbn-bench] note (measured anyway): {note}")
    options = {"models": {
        "precisions": [f"mixed_{p}" for p in dict.fromkeys(args.mixed_precision)],
        "jit_compile": args.jit_compile,
    }}
    result = bench.run(suites=suites, quick=args.quick, repeats=args.repeats, warmup=args.warmup, options=options)
    table = report.write(
        result, json_path=args.out / "results.json", markdown_path=args.out / "results.md",
        readme=args.readme,
    )
    print(table)
    missed = [r["case"] for r in result["rows"] if report.goal_met(r) is False]
    if missed:
        print(f"[xbn-bench] {len(missed)} goal(s) missed: " + "; ".join(missed))
    print(f"[xbn-bench] wrote {args.out / 'results.json'} and {args.out / 'results.md'}")
    return 0


main = _common.console_main("xbn-bench", _body)

if __name__ == "__main__":
    sys.exit(main())
