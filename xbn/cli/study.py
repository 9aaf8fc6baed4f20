"""``xbn-study``: do the papers' claims about BatchNorm hold here?

Trains the CIFAR-style ResNets in vanilla, XBN, GN+WS and batch-renormalized
form on the embedded digits at batch sizes 2 to 64 with 3 seeds each (epochs
held equal), and a deeper pair (ResNet-56, vanilla and XBN) at a small and a
normal batch for the depth figure; measures every run's test top-1 with the
moving statistics as trained and after precise BN, the estimation shift of
every BatchNorm, and the corruption benchmark at the normal batch; then
tests H1-H4 with 95% confidence intervals of paired differences over seeds.
Writes OUT/results.json (one row per run), study.md and the figures;
--publish copies them to a folder, --readme replaces the generated "study"
section of a Markdown file.  Finished runs are reused, interrupted ones
resume, and runs trained with other settings are refused.

Examples::

    python scripts/study_batch_size.py --jobs 2 --publish models/study --readme models/README.md
    xbn-study --quick --out runs/study-quick
    xbn-study --from-results models/study/results.json --readme models/README.md
"""

import json
import os
import shlex
import shutil
import sys
from pathlib import Path

from xbn.cli import _common


def build_parser():
    p = _common.parser_from_doc("xbn-study", __doc__)
    p.add_argument("--quick", action="store_true",
                   help="the small plan the tests run: batch 4 and 16, 2 seeds, 1 epoch of 3 steps, 3 corruptions")
    p.add_argument("--model", default="resnet20",
                   help="network of the batch-size sweep: its vanilla, _xbn, _gnws and batch-renorm forms "
                   "(default resnet20)")
    p.add_argument("--depth-model", default="resnet56",
                   help="deeper network for the depth figure, vanilla and _xbn (default resnet56)")
    p.add_argument("--seeds", type=int, nargs="+", metavar="S", help="seeds of every cell (default 0 1 2; quick 0 1)")
    p.add_argument("--jobs", type=int, default=2,
                   help="runs trained at once, each in a single-threaded process (default 2; 1: in this process)")
    p.add_argument("--out", default="runs/study", help="folder of the runs and results (default runs/study)")
    p.add_argument("--publish", type=Path, help="also copy results.json, study.md and the figures to this folder")
    p.add_argument("--readme", type=Path, help="also replace the generated 'study' section of this Markdown file")
    p.add_argument("--from-results", type=Path, metavar="FILE",
                   help="train nothing: tables and figures from this results.json")
    return p


def _body(argv):
    args = build_parser().parse_args(argv)
    from xbn import _files
    from xbn.study import report, runner, study_plan

    command = " ".join(["python scripts/study_batch_size.py", *map(shlex.quote, argv or sys.argv[1:])])
    if args.from_results:
        if not args.from_results.is_file():
            raise FileNotFoundError(f"--from-results {args.from_results}: no such file; run the study first.")
        document = json.loads(args.from_results.read_text())
        command = document.get("command", command)
        out = args.publish or args.from_results.parent
    else:
        plan = study_plan(args.quick, args.model, args.depth_model, args.seeds)
        rows = runner.run_study(plan, args.out, args.jobs, command=command)
        out = Path(args.out)
        document = {"command": command, "plan": plan.describe(), "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    table = report.to_markdown(document, command)
    _files.atomic_write_text(out / "study.md", table)
    report.plot_all(document, out)
    if args.publish and not args.from_results:
        args.publish.mkdir(parents=True, exist_ok=True)
        for name in (runner.RESULTS_FILE, "study.md", *report.PLOTS.values()):
            if (out / name).is_file():
                with _files.atomic_path(args.publish / name) as tmp:
                    shutil.copyfile(out / name, tmp)
    if args.readme:
        figures = args.publish or out
        prefix = Path(os.path.relpath(figures, args.readme.parent)).as_posix() + "/"
        _files.replace_section(args.readme, "study", report.to_markdown(document, command, prefix))
    print(table)
    print(f"xbn-study: wrote {out / 'study.md'}, {runner.RESULTS_FILE} and the figures"
          + (f"; published to {args.publish}" if args.publish else ""))
    return 0


main = _common.console_main("xbn-study", _body)

if __name__ == "__main__":
    sys.exit(main())
