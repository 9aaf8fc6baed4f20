"""Calibrate the corruption suite for small images on a trained reference network.

ImageNet-C's severities were set for 224x224 photographs (and CIFAR-C's
for 32x32): at 16x16 some run backwards, one leaves accuracy where it was,
one drops in a single step (issue 41).  This script scores a reference
network on the validation split at a grid of levels on ImageNet-C's own
scale (:data:`xbn.diagnostics.corruptions.CALIBRATION_LEVELS`; the integers
1 to 5 are ImageNet-C's severities) and chooses for each corruption the five
levels at which the network loses 10, 20, 30, 45 and 60% of its headroom
above chance (scaled down alike where a corruption cannot take that much;
:func:`xbn.diagnostics.corruptions.choose_levels` says how).  It then scores the chosen
severities again, and ImageNet-C's own, and writes the suite, with that
record, to ``xbn/data/corruption_suites.json``, a figure and a table.

Usage::

    python scripts/calibrate_corruptions.py --reference models/corruptions/resnet20-mnist_m-16 \\
        --suite 16px --figure docs/corruption_calibration.png --docs docs/diagnostics.md

``--train`` first trains the reference into ``--reference`` (the command
below; about 5 minutes on 2 CPU cores) when that folder holds no finished
run.
"""

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

# The reference: resnet20 (BatchNorm) on mnist_m at 16x16, batch 64, 40 epochs.
REFERENCE = ["--model", "resnet20", "--data", "mnist_m", "--image-size", "16", "--batch-size", "64",
             "--epochs", "40", "--lr", "0.2", "--seed", "200", "--recalibrate-bn", "0", "--no-export", "--quiet"]
SUITES_FILE = Path(__file__).resolve().parent.parent / "xbn" / "data" / "corruption_suites.json"


def _train(folder):
    command = [sys.executable, "-m", "xbn.cli.train", *REFERENCE, "--out", str(folder)]
    print(f"training the reference: {shlex.join(command)}", flush=True)
    subprocess.run(command, check=True)


def _scorer(reference, split, batch_size):
    from xbn.cli.evaluate import build_parser, scorer

    args = build_parser().parse_args([str(reference), "--split", split, "--batch-size", str(batch_size)])
    args.data_args = None
    score = scorer(reference, args)
    return (lambda corruption: score(corruption)["top1"]), len(score.class_names)


def calibrate(top1, classes, names, progress=True):
    """``(clean, levels, records)``: the clean top-1, ``{corruption: five
    levels}``, and ``{corruption: record}`` (the grid's scores, their
    envelope, then the chosen severities and ImageNet-C's scored again)."""
    from xbn._progress import Progress
    from xbn.data.corruptions import DEFAULT_SUITE, SEVERITIES
    from xbn.diagnostics.corruptions import CALIBRATION_LEVELS, choose_levels

    clean = top1(None)
    bar = Progress(len(names) * (len(CALIBRATION_LEVELS) + 2 * len(SEVERITIES)), "calibration", enabled=progress)
    chosen_levels, records, done = {}, {}, 0
    for name in names:
        grid = []
        for level in CALIBRATION_LEVELS:  # the draws keyed as severity 1's
            grid.append(top1((name, 1, DEFAULT_SUITE, level)))
            done += 1
            bar.update(done, corruption=name)
        chosen = choose_levels(CALIBRATION_LEVELS, grid, clean, 1.0 / classes)
        levels = chosen_levels[name] = [round(float(v), 3) for v in chosen["levels"]]
        checked, imagenet_c = [], []
        for severity, level in zip(SEVERITIES, levels):
            checked.append(top1((name, severity, DEFAULT_SUITE, level)))
            imagenet_c.append(top1((name, severity, DEFAULT_SUITE)))
            done += 2
            bar.update(done, corruption=name)
        records[name] = {"grid_top1": grid, "envelope": chosen["envelope"], "reach": chosen["reach"],
                         "scale": chosen["scale"], "flat": chosen["flat"], "top1": checked,
                         "imagenet_c_top1": imagenet_c}
    bar.finish()
    return clean, chosen_levels, records


def _monotone(values):
    return all(b <= a for a, b in zip(values, values[1:]))


def table(suite, record):
    """Markdown: each corruption's levels and the reference's top-1, ours and ImageNet-C's."""
    from xbn.diagnostics.corruptions import CALIBRATION_DROPS, FLAT_REACH

    lines = [f"Suite `{suite}`: severities 1-5 as levels on ImageNet-C's scale (level s = ImageNet-C's "
             f"severity s), and the reference's top-1 (%) on the {record['split']} split "
             f"({record['examples']} images; clean {100 * record['reference']['clean_top1']:.1f}%) at them "
             "and at ImageNet-C's own severities.", "",
             "| corruption | levels (s1-s5) | top-1 at s1-s5 | top-1 at ImageNet-C's s1-s5 | note |",
             "| --- | --- | --- | --- | --- |"]
    for name, r in record["calibration"].items():
        note = (f"flat: even level 10 costs it under {100 * FLAT_REACH:.0f}% of its headroom" if r["flat"] else
                f"severity 5 takes {100 * CALIBRATION_DROPS[-1] * r['scale']:.0f}% of the headroom (all it can)"
                if r["scale"] < 1 else "")
        if not _monotone(r["imagenet_c_top1"]):
            note = "; ".join(filter(None, [note, "ImageNet-C's run backwards here"]))
        lines.append(f"| {name} | {' / '.join(f'{v:g}' for v in record['levels'][name])} | "
                     f"{' / '.join(f'{100 * v:.1f}' for v in r['top1'])} | "
                     f"{' / '.join(f'{100 * v:.1f}' for v in r['imagenet_c_top1'])} | {note} |")
    return "\n".join(lines) + "\n"


def figure(suite, record, out):
    """One panel per corruption: the grid's top-1, its envelope, the chosen levels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xbn import _files
    from xbn.diagnostics.corruptions import CALIBRATION_LEVELS

    names = list(record["calibration"])
    columns = 5
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 2.4 * rows), sharey=True, squeeze=False)
    clean = record["reference"]["clean_top1"]
    xs = [0.0, *CALIBRATION_LEVELS]
    for axis, name in zip(axes.flat, names):
        r = record["calibration"][name]
        axis.plot(xs, [100 * clean, *[100 * v for v in r["grid_top1"]]], "o", ms=3, color="0.5", label="scored")
        axis.plot(xs[1:], [100 * v for v in r["envelope"]], "-", color="0.3", lw=1, label="envelope")
        axis.plot(record["levels"][name], [100 * v for v in r["top1"]], "s", ms=4, color="C3",
                  label=f"{suite} s1-s5")
        axis.plot([1, 2, 3, 4, 5], [100 * v for v in r["imagenet_c_top1"]], "x", ms=5, color="C0",
                  label="ImageNet-C s1-s5")
        axis.set_title(name, fontsize=9)
        axis.set_xlim(-0.3, 10.3)
        axis.grid(alpha=0.3)
    for axis in axes.flat[len(names):]:
        axis.axis("off")
    for axis in axes[:, 0]:
        axis.set_ylabel("top-1 (%)")
    for axis in axes[-1]:
        axis.set_xlabel("level (ImageNet-C's scale)")
    axes.flat[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"Corruption suite {suite}: {record['reference']['model']} on {record['data']} at "
                 f"{record['image_size']}x{record['image_size']}, {record['split']} split "
                 f"({record['examples']} images)", fontsize=10)
    fig.tight_layout()
    with _files.atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=90, format="png")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, help="the reference network's xbn-train run folder")
    parser.add_argument("--train", action="store_true", help="train the reference first if it is not there")
    parser.add_argument("--suite", default="16px", help="the suite's name (default 16px)")
    parser.add_argument("--split", default="val", choices=("train", "val", "test"),
                        help="the split it is calibrated on (default val: the test split stays unseen)")
    parser.add_argument("--corruption", nargs="+",
                        help="only these corruptions (default: all provided); an existing suite keeps the others")
    parser.add_argument("--batch-size", type=int, default=250, help="images per step (default 250)")
    parser.add_argument("--figure", help="also draw the calibration to this PNG")
    parser.add_argument("--docs", help="also put the table in this Markdown file's generated section "
                                       "'corruption-suite-SUITE'")
    parser.add_argument("--suites-file", default=str(SUITES_FILE), help="the suites file (default: xbn's)")
    args = parser.parse_args(argv)

    from xbn import _files
    from xbn.data.corruptions import CORRUPTIONS
    from xbn.training.run_folder import is_run

    reference = Path(args.reference)
    if not (reference / "metrics.json").is_file():
        if not args.train:
            parser.error(f"{reference} holds no finished xbn-train run; add --train to train it.")
        _train(reference)
    if not is_run(reference):
        parser.error(f"{reference} is not an xbn-train run folder.")
    names = args.corruption or list(CORRUPTIONS)
    top1, classes = _scorer(reference, args.split, args.batch_size)
    clean, levels, calibration = calibrate(top1, classes, names)
    run = json.loads((reference / "run.json").read_text())
    metrics = json.loads((reference / "metrics.json").read_text())
    settings = run["settings"]
    record = {
        "image_size": run["image_size"], "data": settings["data"], "split": args.split,
        "examples": run["splits"][args.split], "chance": 1.0 / classes,
        "reference": {"model": settings["model"], "folder": reference.as_posix(), "clean_top1": clean,
                      "weights_digest": metrics.get("weights_digest"),
                      "command": "xbn-train " + shlex.join(REFERENCE)},
        "command": "python scripts/calibrate_corruptions.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "levels": levels,
        "calibration": calibration,
    }
    suites_file = Path(args.suites_file)
    document = json.loads(suites_file.read_text()) if suites_file.is_file() else {"suites": {}}
    earlier = document["suites"].get(args.suite)
    if args.corruption and earlier:
        # Scoring is deterministic: the other corruptions' entries are what
        # the whole command computes, and it is the command recorded.
        if (earlier["reference"]["folder"], earlier["split"]) != (reference.as_posix(), args.split):
            parser.error(f"suite {args.suite!r} was calibrated on {earlier['reference']['folder']} "
                         f"({earlier['split']} split); calibrate it whole to change that.")
        for key in ("levels", "calibration"):
            record[key] = {**earlier[key], **record[key]}
        record["command"] = earlier["command"]
    document["suites"][args.suite] = record
    _files.atomic_write_text(suites_file, json.dumps(document, indent=1) + "\n")
    text = table(args.suite, record)
    print(text)
    if args.docs:
        _files.replace_section(args.docs, f"corruption-suite-{args.suite}", text)
    if args.figure:
        figure(args.suite, record, args.figure)
    bad = [n for n, r in calibration.items() if not r["flat"] and not _monotone(r["top1"])]
    print(f"wrote suite {args.suite!r} to {suites_file}"
          + (f"; not monotone when scored again: {', '.join(bad)}" if bad else "; every severity monotone"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
