"""Time ``xbn-train`` on each keras backend: the README's main job and an
epoch of ResNet-50 on synthetic images, each in a process of its own.

Usage::

    python scripts/train_timings.py --out runs/train-timings --publish models/bench

Each backend trains the same runs from scratch (``--overwrite``); what is
recorded is what ``xbn-train`` itself measures (``metrics.json``: the
training seconds, the last epoch's images/s, test top-1), with the machine
and the versions.  ``--publish FOLDER`` writes this machine's record to
``FOLDER/train/<machine>.json`` (replacing its earlier one) and replaces the
generated ``xbn-train`` section of ``FOLDER/README.md`` with the table of
every record there.  Nothing else may run while it measures.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

BACKENDS = ("tensorflow", "jax", "torch")
# name: (xbn-train arguments, what it is)
JOBS = {
    "main job": ([], "the README's main job: mobilenetv2_xbn (alpha 0.35) on the digits, 15 epochs at 64x64"),
    "resnet50 epoch": (
        ["--model", "resnet50", "--data", "synthetic", "--data-arg", "image_size=128", "--data-arg",
         "sizes=(512, 64, 64)", "--image-size", "128", "--batch-size", "32", "--epochs", "2", "--recalibrate-bn",
         "0", "--no-export"],
        "ResNet-50, synthetic 128x128 images, batch 32: the second epoch (the first compiles)",
    ),
}


def _run(backend, name, arguments, out):
    folder = out / f"{backend}-{name.replace(' ', '-')}"
    command = [sys.executable, "-m", "xbn.cli.train", "--out", str(folder), "--overwrite", "--quiet", *arguments]
    result = subprocess.run(command, env={**os.environ, "KERAS_BACKEND": backend}, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{backend} {name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    metrics = json.loads((folder / "metrics.json").read_text())
    rows = [line.split(",") for line in (folder / "history.csv").read_text().splitlines()]
    history = [dict(zip(rows[0], row)) for row in rows[1:]]
    split = metrics["final_split"]
    return {
        "backend": backend, "job": name, "train_seconds": metrics["train_seconds"],
        "last_epoch_images_per_s": float(history[-1]["images_per_s"]),
        "test_top1": metrics[split]["top1"], "split": split,
    }


def table(records):
    """The Markdown table of every record, machine by machine."""
    lines = ["| machine | job | " + " | ".join(BACKENDS) + " |", "| --- | --- |" + " ---: |" * len(BACKENDS)]
    for record in records:
        by = {(r["backend"], r["job"]): r for r in record["rows"]}
        for job in JOBS:
            cells = []
            for backend in BACKENDS:
                r = by.get((backend, job))
                if r is None:
                    cells.append("-")
                elif job == "main job":
                    cells.append(f"{r['train_seconds']:.0f} s ({r['test_top1']:.1%})")
                else:
                    cells.append(f"{r['last_epoch_images_per_s']:.1f} images/s")
            lines.append(f"| {record['machine']} | {job} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/train-timings", help="folder of the runs (default runs/train-timings)")
    parser.add_argument("--publish", help="folder whose train/ records and README.md section to update")
    parser.add_argument("--backend", action="append", choices=BACKENDS, help="backends to time (default all)")
    args = parser.parse_args(argv)
    from xbn import _files, _hardware
    from xbn.bench import report

    out = Path(args.out)
    rows = []
    for backend in args.backend or BACKENDS:
        for name, (arguments, _) in JOBS.items():
            rows.append(_run(backend, name, arguments, out))
            print(json.dumps(rows[-1]))
    if args.publish:
        import keras
        import tensorflow

        cpu = _hardware.cpu()
        record = {"machine": _hardware.cpu_label(), "cpu": cpu, "keras": keras.__version__,
                  "tensorflow": tensorflow.__version__, "jobs": {k: v[1] for k, v in JOBS.items()}, "rows": rows,
                  "command": "python scripts/train_timings.py " + " ".join(sys.argv[1:] if argv is None else argv)}
        slug = report.machine_slug({"machine": {"device": "CPU", "cpu": cpu["model"], "cpu_info": cpu,
                                                "cpu_count": cpu["cores"], "tensorflow": tensorflow.__version__}})
        folder = Path(args.publish)
        _files.atomic_write_text(folder / "train" / f"{slug}.json", json.dumps(record, indent=1) + "\n")
        records = [json.loads(p.read_text()) for p in sorted((folder / "train").glob("*.json"))]
        _files.replace_section(folder / "README.md", "xbn-train", table(records))


if __name__ == "__main__":
    main()
