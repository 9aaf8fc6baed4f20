"""Does starting from trained weights pay?  Two measurements on embedded data
(issue 39), each over seeds with 95% intervals, every number from
``xbn-train``'s own ``metrics.json``:

1. **XBN from a trained BatchNorm network**: ``resnet20`` trained at batch
   64 on ``digits_m`` (16x16, 40 epochs), converted to ``resnet20_xbn`` with
   and without calibrating the new GroupNorms (``--calibrate 512``): test
   top-1 right after the conversion and after 1 and 5 epochs of fine-tuning,
   against the BatchNorm network and ``resnet20_xbn`` trained from scratch
   for the same 40 epochs.
2. **Fine-tuning against training from scratch** at equal epochs: the
   ``digits_m`` networks of (1) fine-tuned on the plain ``digits`` (another
   scanner's look: no blending), with all the training labels and with a
   tenth of them (``--data-arg labelled=0.1``), against ``resnet20`` trained
   on them from scratch.

Usage::

    python scripts/finetune_evidence.py --out runs/finetune --seeds 0 1 2 3 4 --jobs 2 \\
        [--publish models/finetune] [--readme README.md]

Runs that finished are not trained again (rerun the same command after an
interruption); ``--publish`` writes ``results.json`` and ``README.md`` there;
``--readme`` puts the short table (:func:`summary`) in a Markdown file's
generated section ``finetune``.
"""

import argparse
import concurrent.futures
import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

# The study's batch-64 setting on digits_m (models/study): 16x16, 40 epochs,
# lr 0.1 x 64/64, one epoch of warm-up, BN momentum 0.9; moving statistics
# at the end (no precise BN: what the network carries is what is scored).
SOURCE = ["--data", "digits_m", "--image-size", "16", "--batch-size", "64", "--epochs", "40", "--lr", "0.1",
          "--recalibrate-bn", "0", "--no-export", "--quiet"]
# Fine-tuning after the conversion: a tenth of the learning rate, no warm-up.
TUNE = ["--image-size", "16", "--batch-size", "64", "--lr", "0.01", "--warmup-epochs", "0", "--recalibrate-bn", "0",
        "--no-export", "--quiet"]
# On the plain digits (1,258 training scans, 126 with a tenth of the labels):
# batch 16 and the linear rule's 0.025 from scratch, a tenth of it fine-tuning.
TRANSFER_EPOCHS = 15
DIGITS = ["--image-size", "16", "--batch-size", "16", "--recalibrate-bn", "0", "--no-export", "--quiet"]


def _plan(seeds, out):
    """``{name: xbn-train arguments}`` in the order they can run (sources first)."""
    runs = {}
    for seed in seeds:
        s = ["--seed", str(seed)]
        runs[f"bn-s{seed}"] = ["--model", "resnet20", *SOURCE, *s]
        runs[f"xbn-scratch-s{seed}"] = ["--model", "resnet20_xbn", *SOURCE, *s]
    for seed in seeds:
        s = ["--seed", str(seed)]
        source = str(out / f"bn-s{seed}")
        for calibrate in (512, 0):
            for epochs in (1, 5):
                runs[f"xbn-from-bn-cal{calibrate}-e{epochs}-s{seed}"] = [
                    "--model", "resnet20_xbn", "--data", "digits_m", "--weights", source, "--calibrate",
                    str(calibrate), "--epochs", str(epochs), *TUNE, *s]
        for labelled in (1.0, 0.1):
            data = ["--data", "digits", "--data-arg", f"labelled={labelled}"]
            common = ["--model", "resnet20", *data, "--epochs", str(TRANSFER_EPOCHS), *DIGITS, *s]
            runs[f"digits-l{labelled}-finetuned-s{seed}"] = [*common, "--weights", source, "--lr", "0.0025",
                                                              "--warmup-epochs", "0"]
            runs[f"digits-l{labelled}-scratch-s{seed}"] = [*common, "--lr", "0.025"]
    return runs


def _train(name, arguments, out):
    """``(name, metrics)``: the run's ``metrics.json`` with its split sizes
    (from ``run.json``) under ``"splits"``; trained unless it finished."""
    folder = out / name
    if not (folder / "metrics.json").is_file():
        env = {**os.environ, "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "xbn.cli.train", "--out", str(folder), *arguments]
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"{name} failed ({shlex.join(command)}):\n{result.stderr[-2000:]}")
    metrics = json.loads((folder / "metrics.json").read_text())
    return name, {**metrics, "splits": json.loads((folder / "run.json").read_text())["splits"]}


def _interval(values):
    """``(mean, low, high)``: the mean and its 95% Student-t interval."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def _cell(values):
    mean, low, high = _interval([100 * v for v in values])
    return f"{mean:.1f} ({low:.1f} to {high:.1f})"


def _difference(a, b):
    mean, low, high = _interval([100 * (x - y) for x, y in zip(a, b)])
    return f"{mean:+.1f} ({low:+.1f} to {high:+.1f})"


def report(results, seeds, command):
    """The two tables, as Markdown."""
    test, before = _scores(results, seeds)

    def size(name, split):
        return results[f"{name}-s{seeds[0]}"]["splits"][split]

    bn, scratch = test("bn"), test("xbn-scratch")
    lines = [f"Command: `{command}`; seeds {', '.join(map(str, seeds))}; test top-1 (%) with the moving "
             "statistics, mean (95% interval over seeds); differences paired by seed. The intervals are over "
             "seeds on one test split: its own sampling error (the same scans rendered several times in "
             "`digits_m`) is not in them.", "",
             f"### XBN from a trained BatchNorm network (`digits_m`, 16x16, {size('bn', 'test')} test images)", "",
             "| network | test top-1 | minus resnet20_xbn from scratch |", "| --- | ---: | ---: |",
             f"| `resnet20` (BatchNorm), 40 epochs | {_cell(bn)} | {_difference(bn, scratch)} |",
             f"| `resnet20_xbn` from scratch, 40 epochs | {_cell(scratch)} | - |"]
    for calibrate, label in ((512, "calibrated on 512 images"), (0, "GroupNorms at scale 1, offset 0")):
        key = f"xbn-from-bn-cal{calibrate}"
        converted = before(f"{key}-e1")
        lines.append(f"| converted, {label}: before training | {_cell(converted)} | "
                     f"{_difference(converted, scratch)} |")
        for epochs in (1, 5):
            tuned = test(f"{key}-e{epochs}")
            lines.append(f"| converted, {label}: {epochs} epoch{'s' if epochs > 1 else ''} fine-tuned | "
                         f"{_cell(tuned)} | {_difference(tuned, scratch)} |")
    lines += ["", f"### Fine-tuned from `digits_m` against trained from scratch on `digits`, {TRANSFER_EPOCHS} "
              f"epochs each ({size('digits-l1.0-scratch', 'test')} test scans)", "",
              "| training labels | from scratch | fine-tuned | fine-tuned minus scratch |",
              "| --- | ---: | ---: | ---: |"]
    for labelled in (1.0, 0.1):
        tuned, fresh = test(f"digits-l{labelled}-finetuned"), test(f"digits-l{labelled}-scratch")
        train = size(f"digits-l{labelled}-scratch", "train")
        share = f"all ({train:,})" if labelled == 1.0 else f"a tenth ({train:,})"
        lines.append(f"| {share} | {_cell(fresh)} | {_cell(tuned)} | {_difference(tuned, fresh)} |")
    return "\n".join(lines)


def _scores(results, seeds):
    """``(test, before)``: a run family's test top-1 per seed, trained and
    before training (``test("bn")`` reads ``bn-s0``, ``bn-s1``, ...)."""
    def test(name):
        return [results[f"{name}-s{s}"]["test"]["top1"] for s in seeds]

    def before(name):
        return [results[f"{name}-s{s}"]["before_training"]["test"]["top1"] for s in seeds]

    return test, before


def _contains_zero(a, b):
    _, low, high = _interval([x - y for x, y in zip(a, b)])
    return low <= 0 <= high


def reading(results, seeds):
    """What the tables show and do not, every figure from the results."""
    test, before = _scores(results, seeds)

    bn = test("bn")
    calibrated, plain = before("xbn-from-bn-cal512-e1"), before("xbn-from-bn-cal0-e1")
    tuned, tuned_plain = test("xbn-from-bn-cal512-e1"), test("xbn-from-bn-cal0-e1")
    few = (test("digits-l0.1-finetuned"), test("digits-l0.1-scratch"))
    full = (test("digits-l1.0-finetuned"), test("digits-l1.0-scratch"))
    after = ("the interval of the difference includes 0: after one epoch calibration makes no measurable "
             "difference here" if _contains_zero(tuned, tuned_plain) else
             f"calibrated minus not, paired by seed: {_difference(tuned, tuned_plain)} points")
    return " ".join([
        f"Calibrating the new GroupNorms makes the converted network usable before any training: "
        f"{_cell(calibrated)} against {_cell(plain)} with the GroupNorms at scale 1 and offset 0 (the BatchNorm "
        f"network it came from: {_cell(bn)}). One epoch of fine-tuning brings both to about the same "
        f"({_cell(tuned)} and {_cell(tuned_plain)}); {after}.",
        f"Fine-tuning from the `digits_m` network pays when labels are few: with a tenth of them it gains "
        f"{_difference(*few)} points over training from scratch for as many epochs; with all of them "
        + ("the difference's interval includes 0" if _contains_zero(*full) else "it differs by "
           f"{_difference(*full)} points") + f" ({_difference(*full)}).",
        f"What this does not show: one network (`resnet20`), one pair of small digit datasets, {len(seeds)} "
        "seeds, learning rates not tuned for either start; nothing here says how far it carries to "
        "photographs at full size.",
    ])


def summary(results, seeds, published="models/finetune/README.md"):
    """The README's short table: what starting from trained weights buys."""
    test, before = _scores(results, seeds)

    scratch = test("xbn-scratch")
    lines = [f"Test top-1 (%), mean (95% interval) over {len(seeds)} seeds; differences paired by seed "
             f"([all the figures and the command]({published})).", "",
             "| starting point | training | test top-1 | against training from scratch |",
             "| --- | --- | ---: | ---: |"]
    for labelled, share in ((1.0, "all labels"), (0.1, "a tenth of the labels")):
        tuned, fresh = test(f"digits-l{labelled}-finetuned"), test(f"digits-l{labelled}-scratch")
        lines.append(f"| `resnet20` trained on `digits_m` | {TRANSFER_EPOCHS} epochs on `digits`, {share} | "
                     f"{_cell(tuned)} | {_difference(tuned, fresh)} |")
    converted, tuned = before("xbn-from-bn-cal512-e1"), test("xbn-from-bn-cal512-e5")
    lines.append(f"| `resnet20` on `digits_m`, made `resnet20_xbn` (`--calibrate 512`) | none | {_cell(converted)} "
                 f"| {_difference(converted, scratch)} |")
    lines.append(f"| the same | 5 epochs on `digits_m` | {_cell(tuned)} | {_difference(tuned, scratch)} |")
    lines += ["", "Against training from scratch: on `digits` for as many epochs; for the XBN network, "
              "`resnet20_xbn` trained on `digits_m` for 40 epochs."]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/finetune", help="folder of the runs (default runs/finetune)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="seeds (default 0-4)")
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once (default 2)")
    parser.add_argument("--publish", help="folder to write results.json and README.md to")
    parser.add_argument("--readme", help="Markdown file whose generated 'finetune' section gets the short table")
    args = parser.parse_args(argv)
    out = Path(args.out)
    runs = _plan(args.seeds, out)
    results = {}
    sources = {name: a for name, a in runs.items() if "--weights" not in a}
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for stage in (sources, {n: a for n, a in runs.items() if n not in sources}):
            for name, metrics in pool.map(lambda item: _train(*item, out), stage.items()):
                results[name] = metrics
                print(f"{name}: test top-1 {metrics['test']['top1']:.3f}", flush=True)
    command = "python scripts/finetune_evidence.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    text = report(results, args.seeds, command) + "\n\n" + reading(results, args.seeds)
    print(text)
    if args.publish:
        from xbn import _files

        folder = Path(args.publish)
        keep = ("test", "before_training", "train_seconds", "weights_digest")
        _files.atomic_write_text(folder / "results.json", json.dumps(
            {"command": command, "seeds": args.seeds, "runs": {n: {"arguments": runs[n], **{k: m[k] for k in keep
                                                                                            if k in m}}
                                                                for n, m in results.items()}}, indent=1) + "\n")
        _files.atomic_write_text(folder / "README.md", "# Starting from trained weights: what it buys\n\n" + text
                                 + "\n")
    if args.readme:
        from xbn import _files

        _files.replace_section(args.readme, "finetune", summary(results, args.seeds))


if __name__ == "__main__":
    main()
