"""``xbn-study``: do the papers' claims about BatchNorm hold here?

Trains the CIFAR-style ResNet-20 in vanilla, XBN, GN+WS and batch-renormalized
form on digits_m (scikit-learn's digits blended into photographs, MNIST-M's
recipe) at 16x16 and batch sizes 2 to 64 with 5 seeds each (epochs held
equal, the learning rate tuned per form and batch on a held-out seed), and
ResNet-56 (vanilla and XBN) for the depth figure; checks that the batch-64
references have converged (twice the epochs); measures every run's test
top-1 with the moving statistics as trained and after precise BN, the
estimation shift of every BatchNorm (test split, unaugmented training
split, and a noise floor), the corruption benchmark and the plain digits (a
domain shift) at the normal batch; then tests H1-H4 with 95% confidence
intervals of paired differences over seeds.  Writes OUT/results.json (one
row per run, written as each run finishes), study.md and the figures;
--publish copies them to a folder, --readme replaces the generated "study"
section of a Markdown file.  Finished runs are reused, interrupted ones
resume, and runs trained with other settings are refused; --reuse takes the
finished rows of a published results.json, so that a larger plan trains
only what they lack.

Examples::

    xbn-study --jobs 2 --publish models/study --readme models/study/README.md
    xbn-study --quick --out runs/study-quick
    xbn-study --from-results models/study/results.json --readme models/study/README.md
    xbn-study --seeds 0 1 2 3 4 5 6 7 --reuse models/study/results.json --publish models/study
    xbn-study --epochs 10 --normal-epochs 40 gnws=20 --out runs/study
    xbn-study --epochs 10 --normal-epochs 40 --convergence-factors 0.5 2 gnws=4 --out runs/study
"""

import json
import math
import os
import shlex
import shutil
import sys
from pathlib import Path

from xbn.cli import _common
from xbn.errors import UsageError


def build_parser():
    p = _common.parser_from_doc("xbn-study", __doc__)
    p.add_argument("--quick", action="store_true",
                   help="the small plan the tests run: batch 4 and 16, 2 seeds, 1 epoch of 3 steps, 3 corruptions")
    p.add_argument("--model", default="resnet20",
                   help="network of the batch-size sweep: its vanilla, _xbn, _gnws and batch-renorm forms "
                   "(default resnet20)")
    p.add_argument("--depth-model", default="resnet56",
                   help="deeper network for the depth figure, vanilla and _xbn (default resnet56; none: no "
                   "deeper network)")
    p.add_argument("--seeds", type=int, nargs="+", metavar="S",
                   help="seeds of every cell (default 0 1 2 3 4; quick 0 1); 100 is held out for tuning")
    p.add_argument("--epochs", type=int, help="epochs of every run (default 20; quick 1)")
    p.add_argument("--normal-epochs", nargs="+", metavar=("N", "NORM=N"),
                   help="epochs of the normal (largest) batch's runs, which take the fewest steps, until they "
                   "converge (default: --epochs); NORM=N gives the forms of a norm (bn, xbn, gnws, brn) their "
                   "own, e.g. 40 gnws=20")
    p.add_argument("--batch-sizes", type=int, nargs="+", metavar="B",
                   help="batch sizes of the sweep (default 2 4 8 16 64); the largest is the normal batch")
    p.add_argument("--no-tune", dest="tune", action="store_false",
                   help="train with the linear rule's learning rate instead of tuning it on seed 100")
    p.add_argument("--no-brn", dest="brn", action="store_false", help="leave out the batch-renormalized form")
    p.add_argument("--severities", type=int, nargs="+", metavar="S", choices=range(1, 6),
                   help="corruption severities scored at the normal batch (default 1 2 3 4 5)")
    p.add_argument("--convergence-seeds", type=int, nargs="+", metavar="S",
                   help="seeds whose normal-batch runs are trained again at other epochs (default: all)")
    p.add_argument("--convergence-factors", nargs="+", metavar=("F", "NORM=F"),
                   help="multiples of the references' epochs those runs train for, 2 among them (default 2; "
                   "0.5 2: half as well, which tells a reference near its peak from one past it); NORM=F adds a "
                   "multiple for the forms of a norm alone, e.g. 0.5 2 gnws=4")
    p.add_argument("--depth-seeds", type=int, nargs="+", metavar="S",
                   help="seeds of the deeper network's runs, at least 2 of --seeds (default: all); it costs 2.8 "
                   "times the sweep's network per run")
    p.add_argument("--depth-batch-sizes", type=int, nargs="+", metavar="B",
                   help="batch sizes of the deeper network's runs (default 8 64; each costs 2.8 times the "
                   "sweep's network at the same batch)")
    p.add_argument("--jobs", type=int, default=2,
                   help="runs trained at once, each in a single-threaded process (default 2; 1: in this process)")
    p.add_argument("--out", default="runs/study", help="folder of the runs and results (default runs/study)")
    p.add_argument("--publish", type=Path, help="also copy results.json, study.md and the figures to this folder")
    p.add_argument("--readme", type=Path, help="also replace the generated 'study' section of this Markdown file")
    p.add_argument("--from-results", type=Path, metavar="FILE",
                   help="train nothing: tables and figures from this results.json")
    p.add_argument("--reuse", type=Path, metavar="FILE",
                   help="take the finished rows of this results.json (a published study's) as runs of this "
                   "plan, where their settings are the plan's; the recorded command leaves this out, since "
                   "it changes no result")
    return p


def _without_reuse(argv):
    """``argv`` less ``--reuse FILE`` or ``--reuse=FILE`` (or the prefixes
    of ``--reuse`` argparse takes for it, ``--reu`` and ``--reus``)."""
    kept, skip = [], False
    for arg in argv:
        name = arg.split("=", 1)[0]
        if skip:
            skip = False
        elif len(name) >= len("--reu") and "--reuse".startswith(name):
            skip = "=" not in arg
        else:
            kept.append(arg)
    return kept


def _per_norm(option, values, parse, wanted):
    """``([plain value, ...], [(norm, value, text), ...])`` from ``option``'s
    ``V [NORM=V ...]``; ``parse(text)`` gives a value or ``None`` where the
    text is not one (``wanted`` says what is)."""
    plain, own = [], []
    for text in values:
        norm, _, number = text.rpartition("=")
        value = parse(number)
        if value is None or (norm == "" and "=" in text):
            raise UsageError(f"{option} takes {wanted}; got {text!r}.")
        if norm:
            own.append((norm, value, text))
        else:
            plain.append(value)
    return plain, own


def _normal_epochs(values):
    """``(epochs, {norm: epochs})`` from ``--normal-epochs N [NORM=N ...]``."""
    if not values:
        return None, {}
    plain, given = _per_norm("--normal-epochs", values, lambda n: int(n) if n.isdigit() else None,
                             "N or NORM=N with N a whole number, e.g. 40 gnws=20")
    own = {}
    for norm, epochs, text in given:
        if norm in own:
            raise UsageError(f"--normal-epochs names {norm} twice ({norm}={own[norm]} and {text}); give it once.")
        own[norm] = epochs
    if len(plain) > 1:
        raise UsageError(f"--normal-epochs takes one plain N (the plan's) and NORM=N for the others; got "
                         f"{' '.join(values)}.")
    return (plain[0] if plain else None), own


def _positive(text):
    """``text`` as a positive number, or ``None``."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def _convergence_factors(values):
    """``(factors or None, {norm: factors})`` from ``--convergence-factors
    F [F ...] [NORM=F ...]`` (a norm may take several)."""
    if not values:
        return None, {}
    plain, given = _per_norm("--convergence-factors", values, _positive,
                             "F or NORM=F with F a positive number, e.g. 0.5 2 gnws=4")
    own = {}
    for norm, factor, _ in given:
        own[norm] = (*own.get(norm, ()), factor)
    return plain or None, own


def _read_results(option, path, fix):
    """The parsed results.json that ``option`` names; a missing file, one
    that is not JSON or not a study's results is refused with ``option``,
    the path and ``fix``."""
    from xbn.study import runner

    if not path.is_file():
        raise FileNotFoundError(f"{option} {path}: no such file; {fix}.")
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise UsageError(f"{option} {path} is not JSON ({error}); {fix}.") from None
    if not runner.is_results(document):
        raise UsageError(f"{option} {path} is not a study's results.json (it has no 'plan' and 'rows'); {fix}.")
    return document


def _body(argv):
    args = build_parser().parse_args(argv)
    from xbn import _checks, _files
    from xbn.study import report, runner, study_plan

    _checks.check_int("xbn-study", "jobs", args.jobs, minimum=1, type_error=ValueError)
    program = Path(sys.argv[0]).name if argv is None else "xbn-study"
    if program.endswith(".py"):
        program = f"python scripts/{program}"
    elif program != "xbn-study":
        program = "xbn-study"
    argv = sys.argv[1:] if argv is None else argv
    command = " ".join([program, *map(shlex.quote, _without_reuse(argv))])
    if args.from_results and args.reuse:
        raise UsageError("--reuse trains what a results.json lacks, --from-results trains nothing: give one of them.")
    _common.check_readme(args.readme, "study")
    if args.from_results:
        document = _read_results("--from-results", args.from_results, "run the study first")
        command = document.get("command", command)
        out = args.publish or args.from_results.parent
    else:
        if args.epochs is not None and args.epochs < 1:
            raise UsageError(f"--epochs must be >= 1; got {args.epochs}.")
        depth = None if args.depth_model.lower() == "none" else args.depth_model
        normal_epochs, own = _normal_epochs(args.normal_epochs)
        factors, own_factors = _convergence_factors(args.convergence_factors)
        plan = study_plan(args.quick, args.model, depth, args.seeds, args.epochs, args.batch_sizes,
                          args.tune, args.brn, args.convergence_seeds, args.severities, normal_epochs,
                          args.depth_seeds, args.depth_batch_sizes, own, factors, own_factors)
        reuse = _read_results("--reuse", args.reuse, "name a study's results.json") if args.reuse else None
        runner.run_study(plan, args.out, args.jobs, command=command, reuse=reuse, reuse_source=str(args.reuse))
        out = Path(args.out)
        document = json.loads((Path(args.out) / runner.RESULTS_FILE).read_text())
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
