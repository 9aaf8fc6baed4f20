"""``xbn-bench``: run the benchmark suites and write the results.

Examples::

    xbn-bench                                  # every suite, full sizes
    xbn-bench --suite layers --repeats 20
    xbn-bench --quick --out runs/bench-quick   # small sizes, a smoke run
    xbn-bench --readme models/bench/README.md  # refresh the published table
    xbn-bench --suite models --mixed-precision bfloat16 --jit-compile
    xbn-bench --backend jax --suite layers --suite models --mixed-precision bfloat16
    xbn-bench --backend torch --suite layers

``--backend`` runs the layers and models suites on keras' JAX or PyTorch
backend, each with its natural fast step (see ``xbn/bench/backends.py``); the
record is filed per backend and device.  The export and pipeline suites
measure TensorFlow itself.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

from xbn.cli import _common
from xbn.errors import UsageError


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
        "--backend", choices=("tensorflow", "jax", "torch"),
        help="keras backend to measure on (default: KERAS_BACKEND, else tensorflow); the "
             "export and pipeline suites need tensorflow",
    )
    parser.add_argument(
        "--model", action="append", choices=("resnet50", "mobilenetv2"),
        help="model of the models suite (repeatable; default both)",
    )
    parser.add_argument(
        "--mixed-precision", action="append", choices=("float16", "bfloat16"), default=[],
        help="also time the layers and the ResNet-50 training steps under mixed_float16/mixed_bfloat16 "
             "(repeatable)",
    )
    parser.add_argument(
        "--jit-compile", action="store_true",
        help="also time the ResNet-50 training steps compiled: XLA on TensorFlow, torch.compile on "
             "PyTorch (JAX always compiles)",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench"),
                        help="folder for results.json and results.md (default runs/bench)")
    parser.add_argument("--readme", type=Path, help="also replace the generated 'bench' section of this Markdown file")
    _common.add_debug_flag(parser)
    return parser


def _body(argv):
    args = build_parser().parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        raise UsageError("--repeats must be >= 1 and --warmup >= 0.")
    _common.check_readme(args.readme, "bench")
    from xbn import bench
    from xbn.bench import report

    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    suites = args.suite or (bench.SUITES if backend == "tensorflow" else ("layers", "models"))
    if args.jit_compile and "models" not in suites:
        raise UsageError("--jit-compile is a variant of the models suite; add --suite models.")
    if args.mixed_precision and not {"models", "layers"} & set(suites):
        raise UsageError("--mixed-precision is a variant of the layers and models suites; add --suite models.")
    if args.model and "models" not in suites:
        raise UsageError("--model chooses the models suite's networks; add --suite models.")
    from xbn import _hardware

    if backend == "tensorflow":
        notes = dict.fromkeys(
            note for precision in (args.mixed_precision or ["none"])
            for note in _hardware.execution_warnings(precision, args.jit_compile)
        )
        for note in notes:
            print(f"[xbn-bench] note (measured anyway): {note}")
    precisions = list(dict.fromkeys(args.mixed_precision))
    options = {
        "models": {"precisions": [f"mixed_{p}" for p in precisions], "jit_compile": args.jit_compile,
                   **({"models": tuple(dict.fromkeys(args.model))} if args.model else {})},
        "layers": {"precisions": precisions},
    }
    def partial(document):  # what is measured is kept, suite by suite
        report.write(document, json_path=args.out / "results.json")

    result = bench.run(suites=suites, quick=args.quick, repeats=args.repeats, warmup=args.warmup,
                       options=options, on_suite=partial)
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


def main(argv=None):
    """The ``xbn-bench`` console script (see ``xbn-bench --help``).

    The keras backend is fixed when keras is first imported, so ``--backend``
    sets ``KERAS_BACKEND`` before that, or, where keras already runs on
    another backend (a test, a notebook), runs the bench in a fresh process.
    """
    args, _ = build_parser().parse_known_args(argv)
    if args.backend:
        loaded = sys.modules.get("keras")
        if loaded is not None and loaded.backend.backend() != args.backend:
            env = {**os.environ, "KERAS_BACKEND": args.backend}
            command = [sys.executable, "-m", "xbn.cli.bench", *(sys.argv[1:] if argv is None else argv)]
            return subprocess.run(command, env=env).returncode
        os.environ["KERAS_BACKEND"] = args.backend
    if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        _common.quiet_tensorflow()
    return _common.run_main("xbn-bench", _body, argv)

if __name__ == "__main__":
    sys.exit(main())
