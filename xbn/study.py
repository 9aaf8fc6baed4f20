"""The batch-size study: BN, XBN and GN+WS as the batch shrinks.

The GN paper (Wu & He, 2018) shows BatchNorm's ImageNet error growing from
23.6% to 34.7% as the batch per GPU shrinks from 32 to 2, while GroupNorm
stays at about 24%; the XBNBlock paper attributes part of BN's trouble to
the estimation shift of its moving statistics and removes it by replacing
one BN per block with GroupNorm.  :func:`run_study` repeats the experiment
at small scale: the vanilla, XBN and GN+WS form of one family, trained with
``xbn-train``'s loop on the embedded digits with the same number of epochs
at every batch size (learning rate scaled as 0.1 x batch / 256), evaluated
in inference mode with the moving statistics as trained (no precise BN),
and the estimation shift of every BN measured on the test split.

Runs live in ``OUT/<model>-bs<batch>``; a finished run (``metrics.json``)
is reused and an interrupted one resumes, so the study survives a crash.
"""

import dataclasses
import json
import math
from pathlib import Path

from xbn.models.registry import VARIANTS, model_facts

BATCH_SIZES = (2, 4, 8, 16, 64)
# Wu & He (2018), Table 2 / Figure 1: ResNet-50 ImageNet top-1 error (%) per
# batch size per GPU.
GN_PAPER = {"BN": {32: 23.6, 16: 23.7, 8: 24.8, 4: 27.3, 2: 34.7},
            "GN": {32: 24.1, 16: 24.2, 8: 24.0, 4: 24.2, 2: 24.1}}


@dataclasses.dataclass
class StudyResult:
    """One trained model at one batch size."""

    model: str
    batch_size: int
    test_top1: float
    mean_shift: float  # NaN for a model without BatchNorm
    var_shift: float
    train_seconds: float
    run: str


def _measure_shift(run_dir):
    from xbn.data import Augment, Pipeline
    from xbn.data.sources import data_record, open_recorded
    from xbn.diagnostics.estimation_shift import estimation_shift
    from xbn.training.trained import load_run

    loaded = load_run(run_dir)
    source, _ = open_recorded(data_record(loaded.settings))
    pipeline = Pipeline(
        source, loaded.image_size,
        loaded.preprocessing, 64, augment=Augment(eval_crop=loaded.eval_crop),
    )
    return estimation_shift(loaded.model, pipeline.evaluation("test"))


def run_one(model, batch_size, out, epochs, image_size, model_args, seed=0, log=print):
    """Train (or reuse) one run and measure it; returns a :class:`StudyResult`."""
    from xbn.training import TrainConfig, changed_settings, train

    config = TrainConfig(
        model=model, model_args=dict(model_args), batch_size=batch_size, epochs=epochs,
        image_size=image_size, warmup_epochs=1.0 if epochs > 1 else 0.0, recalibrate_bn=0,
        export=False, verbose=False, seed=seed, out=str(Path(out) / f"{model}-bs{batch_size}"),
    )
    run_dir = config.out_dir
    metrics_file = run_dir / "metrics.json"
    if metrics_file.is_file():
        changed = changed_settings(config)
        if changed:
            details = "; ".join(f"{k}: {old!r} there, {new!r} asked" for k, (old, new) in changed.items())
            raise ValueError(
                f"{run_dir} holds a finished run with other settings ({details}). Use another "
                "--out folder for this study, or delete that run to retrain it."
            )
        metrics = json.loads(metrics_file.read_text())
        log(f"[study] {model} at batch {batch_size}: reusing {run_dir}")
    else:
        log(f"[study] {model} at batch {batch_size}: training {epochs} epochs")
        metrics = train(config, log=lambda message: None)
    shift = _measure_shift(run_dir)
    return StudyResult(
        model, batch_size, metrics["test"]["top1"], shift.mean_shift, shift.var_shift,
        metrics["train_seconds"], str(run_dir),
    )


def family_forms(family):
    """The registered forms of ``family`` the study compares: vanilla, XBN, GN+WS.

    A family's models are grouped by their variant; where a family has
    several of one variant (ResNet-50 and ResNet-101), the first in natural
    order is taken (``resnet50``, ``resnet50_xbn``, ``resnet50_gnws``).
    """
    from xbn.models import list_models

    forms = []
    for variant in VARIANTS:
        names = list_models(family=family, variant=variant)
        if names:
            forms.append(names[0])
    if not list_models(family=family, variant="vanilla"):
        raise ValueError(f"the {family} family has no vanilla model to compare against.")
    return tuple(forms)


def run_study(family="mobilenetv2", batch_sizes=BATCH_SIZES, epochs=8, image_size=32,
              model_args=None, out="runs/study", seed=0, log=print, form_args=None):
    """Train every form of ``family`` at every batch size; returns the results.

    Args:
        family: a registered family (see :func:`family_forms`), e.g.
            ``mobilenetv2`` or ``resnet``.
        batch_sizes: the batch sizes (each >= 2: BatchNorm needs two examples).
        epochs: epochs per run, the same at every batch size.
        image_size: input side (digits are upsampled from 8x8).
        model_args: builder arguments (default: the vanilla model's registered
            ``small_args``, ``alpha=0.35`` for MobileNetV2).
        out: folder of the runs and the study's files.
        seed: training seed of every run.
        form_args: extra builder arguments for single forms, e.g.
            ``{"mobilenetv2_gnws": {"gn_groups": 8}}``.
    """
    forms = family_forms(family)
    batch_sizes = sorted({int(b) for b in batch_sizes})
    if not batch_sizes or batch_sizes[0] < 2:
        raise ValueError(f"batch sizes must be integers >= 2 (BatchNorm needs two examples); got {batch_sizes}.")
    if model_args is None:
        model_args = dict(model_facts(forms[0]).small_args)
    form_args = dict(form_args or {})
    unknown = sorted(set(form_args) - set(forms))
    if unknown:
        raise ValueError(
            f"builder arguments for {', '.join(unknown)}, which the {family} study does not "
            f"train; its forms are {', '.join(forms)}."
        )
    results = []
    for model in forms:
        args = {**model_args, **form_args.get(model, {})}
        for batch_size in batch_sizes:
            results.append(run_one(model, batch_size, out, epochs, image_size, args, seed, log))
    return results


def _cell(value, percent=False):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.1f}" if percent else f"{value:.3f}"


def to_markdown(results, command):
    """Test accuracy and mean estimation shift per model and batch size."""
    batch_sizes = sorted({r.batch_size for r in results})
    models = list(dict.fromkeys(r.model for r in results))
    by = {(r.model, r.batch_size): r for r in results}
    header = "| model | " + " | ".join(f"bs {b}" for b in batch_sizes) + " |"
    rule = "| --- |" + " ---: |" * len(batch_sizes)
    lines = [f"Command: `{command}`", "", "Test top-1 accuracy (%), inference mode, moving statistics as trained:", "",
             header, rule]
    for model in models:
        lines.append(f"| `{model}` | " + " | ".join(_cell(by[model, b].test_top1, True) for b in batch_sizes) + " |")
    lines += ["", "Mean estimation shift of the BatchNorm layers on the test split "
              "(`-`: no BatchNorm):", "", header, rule]
    for model in models:
        lines.append(f"| `{model}` | " + " | ".join(_cell(by[model, b].mean_shift) for b in batch_sizes) + " |")
    paper = sorted(GN_PAPER["BN"], reverse=True)
    lines += ["", "For reference, the GN paper's ResNet-50 ImageNet top-1 error (%) per batch size per GPU:", "",
              "| norm | " + " | ".join(f"bs {b}" for b in paper) + " |", "| --- |" + " ---: |" * len(paper)]
    for norm, row in GN_PAPER.items():
        lines.append(f"| {norm} | " + " | ".join(f"{row[b]}" for b in paper) + " |")
    return "\n".join(lines) + "\n"


def plot(results, path, title=None):
    """Test accuracy and mean shift against batch size, one line per model."""
    from xbn import _plotting

    plt = _plotting.pyplot()
    fig, (ax_acc, ax_shift) = plt.subplots(1, 2, figsize=(11, 4.2))
    for model in dict.fromkeys(r.model for r in results):
        rows = sorted((r for r in results if r.model == model), key=lambda r: r.batch_size)
        sizes = [r.batch_size for r in rows]
        ax_acc.plot(sizes, [100 * r.test_top1 for r in rows], "o-", label=model)
        if not all(math.isnan(r.mean_shift) for r in rows):
            ax_shift.plot(sizes, [r.mean_shift for r in rows], "o-", label=model)
    ax_acc.set(xlabel="batch size", ylabel="test top-1 (%)", title="accuracy (inference mode)")
    ax_shift.set(xlabel="batch size", ylabel="mean shift (average over BN layers, log scale)",
                 title="estimation shift of BN's moving statistics")
    ax_shift.set_yscale("log")
    sizes = sorted({r.batch_size for r in results})
    for ax in (ax_acc, ax_shift):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.xaxis.set_minor_locator(plt.NullLocator())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or "Batch-size study on the digits")
    fig.tight_layout()
    return _plotting.save_png(fig, path)
