"""Tables and figures of the study, generated from its ``results.json`` alone."""

import itertools
import math

import numpy as np

from xbn.study.analysis import (
    GLOBAL_INTENSITY,
    Estimate,
    by_cell,
    convergence,
    convergence_curves,
    depth_slope,
    hypotheses,
    matched_layers,
    noise_floor,
    study_rows,
)
from xbn.study.plan import CONVERGED_POINTS

PLOTS = {
    "accuracy": "study_accuracy.png",
    "convergence": "study_convergence.png",
    "shift": "study_shift.png",
    "depth": "study_depth.png",
    "depth_variance": "study_depth_variance.png",
    "corruption": "study_corruption.png",
}


def _models(rows):
    return list(dict.fromkeys(r["model"] for r in rows))


def _trained(rows):
    return [r for r in rows if not r.get("diverged")]


def _cell(values, scale=100.0, digits=1):
    """``mean ± half-width of the 95% CI`` over seeds."""
    e = Estimate.of(values)
    if e.n == 0:
        return "-"
    if e.n == 1:
        return f"{e.mean * scale:.{digits}f}"
    return f"{e.mean * scale:.{digits}f} ± {(e.high - e.mean) * scale:.{digits}f}"


def _recalibration_lines(rows):
    """Whether precise BN settled every layer in each run that records it
    (runs with BatchNorms only: a GroupNorm network has nothing to settle)."""
    rows = [r for r in rows if r.get("layer_shifts")]
    recorded = [r for r in rows if "precise_bn_converged" in r]
    if not recorded:
        return []
    unsettled = [r["run"].split("/")[-1] for r in recorded if not r["precise_bn_converged"]]
    passes = [r["precise_bn_passes"] for r in recorded]
    text = (f"Precise BN settled every BatchNorm in {len(recorded) - len(unsettled)} of {len(recorded)} runs that "
            f"record it ({min(passes)}-{max(passes)} passes)")
    text += f"; not in {', '.join(unsettled)}." if unsettled else "."
    if len(recorded) < len(rows):
        text += (f" {len(rows) - len(recorded)} runs were measured before the passes were recorded, by the earlier "
                 "sweep of at most 8 passes.")
    return [text, ""]


def _grid(rows, value, scale=100.0, digits=1, models=None):
    cells = by_cell(rows)
    batches = sorted({r["batch_size"] for r in rows})
    lines = ["| model | " + " | ".join(f"bs {b}" for b in batches) + " |", "| --- |" + " ---: |" * len(batches)]
    for model in models or _models(rows):
        entries = []
        for b in batches:
            runs = cells.get((model, b), {})
            values = [value(r) for r in runs.values() if not r.get("diverged")]
            diverged = sum(1 for r in runs.values() if r.get("diverged"))
            text = _cell([v for v in values if v is not None], scale, digits) if runs else " "
            entries.append(text + (f" ({diverged} diverged)" if diverged else ""))
        lines.append(f"| `{model}` | " + " | ".join(entries) + " |")
    return "\n".join(lines)


def _tuning_table(document):
    """The learning-rate scales tried and chosen, with the validation top-1 of each."""
    rows = [r for r in document["rows"] if r.get("purpose") == "tuning"]
    if not rows:
        return ""
    chosen = {(c["model"], c["batch_size"]): c["scale"] for c in document.get("lr_scales", [])}
    scales = sorted({r["lr_scale"] for r in rows})
    seed = rows[0]["seed"]
    lines = [f"### Learning rate: validation top-1 (%) of each scale of the linear rule (seed {seed}, held out), "
             "**chosen** in bold", "",
             "| model | batch | " + " | ".join(f"x{s:g}" for s in scales) + " |",
             "| --- | ---: |" + " ---: |" * len(scales)]
    for model, batch in sorted({(r["model"], r["batch_size"]) for r in rows}):
        by_scale = {r["lr_scale"]: r for r in rows if r["model"] == model and r["batch_size"] == batch}
        entries = []
        for s in scales:
            r = by_scale.get(s)
            text = "-" if r is None else "diverged" if r.get("diverged") else f"{100 * r['val_top1']:.1f}"
            entries.append(f"**{text}**" if chosen.get((model, batch)) == s else text)
        lines.append(f"| `{model}` | {batch} | " + " | ".join(entries) + " |")
    return "\n".join(lines)


def _converged_points(plan):
    """The convergence threshold the study was run with (results written
    before the plan recorded it used today's)."""
    return plan.get("converged_points", CONVERGED_POINTS)


def _convergence_lines(document):
    normal = document["plan"]["normal_batch"]
    found = convergence(document["rows"], normal)
    if not found:
        return []
    limit = _converged_points(document["plan"])
    epochs = _normal_epochs(document["plan"])
    references = {r["model"]: r["epochs"] for r in study_rows(document["rows"]) if r["batch_size"] == normal}
    own = {m: e for m, e in references.items() if m in found and e != epochs}
    single = all(list(steps) == [(references[m], 2 * references[m])] for m, steps in found.items())
    if single and not own:
        head = f"trained again for {2 * epochs} epochs; test top-1 with {2 * epochs} minus with {epochs} epochs"
    else:
        factors = document["plan"].get("convergence_factors", [2])
        others = "".join(f"; `{m}`'s {e}" for m, e in own.items())
        norms = {r["model"]: r.get("norm") for r in study_rows(document["rows"])}
        more = _more_factors_text(document["plan"], norms, references)
        head = (f"trained again at {' and '.join(_factor_word(f) for f in factors)} their epochs ({epochs}{others})"
                f"{more}; test top-1 with the more minus with the fewer epochs")
    lines = [f"**Converged references**: the batch-{normal} runs {head} (converged when the mean moves by less "
             f"than {limit} points):", ""]
    for model, steps in found.items():
        reference = references[model]
        doubled = steps.get((reference, 2 * reference))
        if single and not own:
            text = doubled.text()
        else:
            text = "; ".join(f"{a} -> {b} epochs {e.text()}" for (a, b), e in sorted(steps.items()))
        if doubled is None:
            verdict = "not checked (no run at twice its epochs)"
        else:
            rise = steps.get((reference // 2, reference)) if reference % 2 == 0 else None
            later = [(a, b, 100 * e.mean) for (a, b), e in sorted(steps.items()) if a >= 2 * reference]
            verdict = convergence_verdict(100 * doubled.mean, limit, None if rise is None else 100 * rise.mean,
                                          later)
        lines.append(f"- `{model}`: {text}: {verdict}")
    twins = sorted({r["model"] for r in document["rows"] if r.get("same_run_as")})
    if twins:
        lines += ["", f"Some of {', '.join(f'`{m}`' for m in twins)}'s convergence runs trained exactly what a "
                  "study run trained (a form's own normal epochs): their rows are those runs' (`same_run_as`)."]
    return lines + [""]


_FACTOR_WORDS = {0.5: "half", 2: "twice", 4: "four times", 8: "eight times"}
_COUNT_WORDS = {3: "three", 4: "four", 5: "five", 6: "six"}


def _factor_word(factor):
    return _FACTOR_WORDS.get(factor, f"{factor:g}x")


def _more_factors_text(plan, norms, references):
    """``, `resnet20_gnws` also at four times (160)``: the multiples only
    some forms were trained at (:attr:`~xbn.study.plan.Plan.form_convergence_factors`)."""
    parts = []
    for norm, extra in sorted((plan.get("form_convergence_factors") or {}).items()):  # the plan refuses its own
        for model in (m for m in plan["sweep"] if m in references and norms.get(m) == norm):
            parts.append(f"`{model}` also at {' and '.join(_factor_word(f) for f in extra)} "
                         f"({', '.join(f'{round(f * references[model])}' for f in extra)})")
    return "".join(f", {part}" for part in parts)


def convergence_verdict(points, limit, rise=None, later=()):
    """What doubling the epochs says of a reference that moved by ``points``:
    converged within ``limit``; still improving (under-trained, which would
    favour the small batches); or lower with more training: past its best,
    or, where half the epochs were ``rise`` points lower (by ``limit`` or
    more), near its peak: the best trained of the points measured.

    ``later``: ``(fewer, more, points)`` of the doublings after the
    reference's (``80 -> 160``), in order: said after the verdict, which
    then ends with where the curve first moves by less than ``limit``, or
    that no doubling measured does."""
    # Each later point minus the reference.
    levels = list(itertools.accumulate((p for _, _, p in later), initial=points))[1:]
    steps = "; ".join(f"{a} -> {b} {p:+.1f}" for a, b, p in later)
    if abs(points) < limit:
        verdict = "converged"
    elif points > 0:
        verdict = "**not converged** (still improving)"
    elif any(level > 0 for level in levels):
        higher = next(b for (_, b, _), level in zip(later, levels) if level > 0)
        verdict = f"**not converged** (lower with twice the epochs, higher again at {higher}: not its best)"
    elif rise is not None and rise >= limit:
        after = "".join(f", {_step_word(p, limit)} at {b}" for _, b, p in later)  # the steps are listed before
        count = 3 + len(later)
        verdict = (f"**not converged** by the rule, but near its peak: higher than with half the epochs and lower "
                   f"with twice{after}, so the best trained of the {_COUNT_WORDS.get(count, count)}")
        steps = ""  # the verdict says them
    else:
        verdict = "**not converged** (lower with twice the epochs: past its best, not under-trained)"
    if not later:
        return verdict
    flat = next((a for a, _, p in later if abs(p) < limit), None)
    if abs(points) < limit:
        end = f"within {limit} points as well" if all(abs(p) < limit for _, _, p in later) else ""
    elif flat is not None:
        end = f"converged from {flat} epochs on"
    elif rise is None or abs(rise) >= limit:
        end = f"no doubling up to {later[-1][1]} epochs stays within {limit} points"
    else:
        end = ""
    said = f"{verdict}; then {steps}" if steps else verdict
    return f"{said}{': ' if steps else '; '}{end}" if end else said


def _step_word(points, limit):
    """How a doubling past the reference moved top-1."""
    if abs(points) < limit:
        return "about the same"
    return "higher again" if points > 0 else "lower still"


def _normal_epochs(plan):
    """The normal batch's epochs (older results have one number for all)."""
    return plan.get("normal_epochs") or plan["epochs"]


NORM_NAMES = {"bn": "BN", "xbn": "XBN", "gnws": "GN+WS", "brn": "BRN"}


def _epochs_held_equal(plan):
    """Whether every run took the plan's epochs (no normal-batch or
    per-form exception)."""
    return _normal_epochs(plan) == plan["epochs"] and not plan.get("form_normal_epochs")


def _normal_epochs_text(plan):
    """The normal batch's epochs, with the forms that take their own
    (``40 (GN+WS 20)``)."""
    own = plan.get("form_normal_epochs") or {}
    forms = ", ".join(f"{NORM_NAMES.get(n, n)} {e}" for n, e in sorted(own.items()))
    return f"{_normal_epochs(plan)}" + (f" ({forms})" if forms else "")


def _epochs_sentence(plan, steps):
    """How the schedule treats the batch sizes, with the steps it gives each."""
    normal, epochs = plan["normal_batch"], plan["epochs"]
    steps_text = ", ".join(f"{s} steps at batch {b}" for b, s in sorted(steps.items()))
    if _epochs_held_equal(plan):
        return (f"**Epochs are held equal** ({epochs} per run, one of linear warm-up, cosine decay), so the steps "
                f"differ: {steps_text}: equal steps would give the small batches a fraction of the data, a second "
                "difference besides the statistics.")
    return (f"**Epochs are held equal below the normal batch** ({epochs} per run, one of linear warm-up, cosine "
            f"decay) and the batch-{normal} references take {_normal_epochs_text(plan)}: {steps_text}. Equal steps "
            "would give the small batches a fraction of the data, a second difference besides the statistics; the "
            "references take the fewest steps of all, so they get the epochs, and whether doubling them moves "
            f"top-1 by less than {_converged_points(plan)} points is checked below (the small batches' "
            "convergence is not)." + (" A form with epochs of its own is checked for convergence at those "
                                      "(below)." if plan.get("form_normal_epochs")
                                      else ""))


def _scope_lines(plan):
    """What this run of the study leaves out of the full plan
    (:func:`xbn.study.plan.study_plan`), said before any result."""
    from xbn.study.plan import study_plan

    if plan.get("steps_per_epoch"):
        return ["**Scope**: the quick plan (a few steps per run): it checks the machinery and shows nothing.", ""]
    full = study_plan().describe()
    left = []
    missing = sorted(set(full["batch_sizes"]) - set(plan["batch_sizes"]))
    if missing:
        ends = len(plan["batch_sizes"]) == 2
        left.append(f"batch sizes {', '.join(map(str, missing))} (the sweep runs "
                    f"{', '.join(map(str, plan['batch_sizes']))}: the two ends H2 compares"
                    + (")" if ends else ", and between)"))
    forms = [f for f in full["sweep"] if f not in plan["sweep"]]
    if forms:
        left.append(f"the {', '.join(f'`{f}`' for f in forms)} form")
    if full["depth"] and not plan["depth"]:
        left.append(f"the deeper network ({', '.join(f'`{f}`' for f in full['depth'])}): H1 rests on "
                    f"`{plan['sweep'][0]}`'s layers alone")
    deep = plan.get("depth_seeds")
    if plan["depth"] and deep is not None and len(deep) < len(plan["seeds"]):
        left.append(f"the deeper network's seeds beyond {', '.join(map(str, deep))}")
    shallow = sorted(set(plan["batch_sizes"]) - set(plan.get("depth_batch_sizes") or ()))
    if plan["depth"] and shallow:
        left.append(f"the deeper network at batch sizes {', '.join(map(str, shallow))} (`--depth-batch-sizes`)")
    if not plan.get("tuned_batches"):
        left.append("the learning-rate tuning: every run takes the linear rule's rate (scale 1)")
    converged = plan.get("convergence_seeds")
    if converged is not None and len(converged) < len(plan["seeds"]):
        left.append(f"convergence checks beyond seed(s) {', '.join(map(str, converged))}")
    severities = plan.get("severities", full["severities"])
    if severities != full["severities"]:
        left.append(f"corruption severities other than {', '.join(map(str, severities))} (the mCE here is over "
                    "those)")
    if plan["epochs"] < full["epochs"]:
        below = f" below batch {plan['normal_batch']}" if _normal_epochs(plan) >= full["epochs"] else ""
        left.append(f"{full['epochs'] - plan['epochs']} of the full plan's {full['epochs']} epochs per run{below}")
    if not left:
        return []
    return ["**Scope**: this run of the study is smaller than the full plan (`xbn-study` without options, about "
            "6 hours of this 2-core machine); it leaves out " + "; ".join(left) + ". A rerun reuses every "
            "finished run whose settings it shares (a tuned scale other than 1 trains its own runs beside them); "
            "runs of other epochs are refused, so more epochs need their own `--out`.", ""]


def to_markdown(document, command, picture_prefix=""):
    """The study's section: how it was run, the hypotheses, the tables, the figures."""
    plan, all_rows = document["plan"], document["rows"]
    rows = study_rows(all_rows)
    normal = plan["normal_batch"]
    seeds = sorted({r["seed"] for r in rows})
    steps = {r["batch_size"]: r["steps"] for r in rows if r["model"] == plan["sweep"][0]}
    seconds = sum(r.get("train_seconds") or 0 for r in all_rows)
    test_size = plan.get("test_images")
    lines = [
        f"Command: `{command}`", "",
        f"{len(rows)} study runs of {', '.join(f'`{m}`' for m in _models(rows))}; seeds "
        f"{', '.join(map(str, seeds))}; `{plan['data']}` at {plan['image_size']}x{plan['image_size']}"
        + (f" ({test_size} test images: one image is {100 / test_size:.3f} points)" if test_size else "")
        + ". " + _epochs_sentence(plan, steps) + f" Learning rate {plan['lr']}"
        + (f", the scale tuned per form and batch among {plan.get('lr_scales')} on a held-out seed's validation "
           "split (table below)" if plan.get("tuning_seed") is not None else "")
        + f". {seconds / 3600:.1f} hours of training in all (the sum over runs, two at a time). Intervals are "
        "95% Student-t confidence intervals over seeds; table cells are mean ± the interval's half-width.", "",
        "## What the evidence shows", "",
    ]
    lines += _scope_lines(plan)
    lines += _convergence_lines(document)
    for h in hypotheses(rows, normal):
        lines += [f"**{h['id']}** ({h['claim']}): **{h['verdict']}**.", "", *h["lines"], ""]
    lines += [
        "### Test top-1 (%), moving statistics as trained", "",
        _grid(rows, lambda r: r["top1_ema"]), "",
        f"### Test top-1 (%) after precise BN (population statistics of {plan['precise_bn_batches']} training "
        "batches)", "",
        _grid(rows, lambda r: r["top1_precise_bn"]), "",
        *_recalibration_lines(rows),
    ]
    if any("shift_top1" in r for r in rows):
        lines += [f"### Top-1 (%) on `{plan.get('shift_data')}` (the same test scans, not blended: another "
                  "domain)", "", _grid(rows, lambda r: r.get("shift_top1")), ""]
    shifted = [r for r in rows if r.get("layer_shifts")]
    lines += [
        "### Mean estimation shift, averaged over the BatchNorm layers (GN+WS: none); below it the noise floor "
        "(the test split's sampling error: half the shift between its halves)", "",
        _grid(shifted, lambda r: r["mean_shift"], 1.0, 3), "",
        _grid(shifted, noise_floor, 1.0, 3), "",
    ]
    slopes = []
    for bn in [m for m in _models(shifted) if not m.endswith(("_xbn", "_gnws", "_brn"))]:
        names = matched_layers(shifted, bn, bn + "_xbn")
        if names:
            slopes.append((bn, names))
    if slopes:
        models = [m for bn, _ in slopes for m in (bn, bn + "_xbn")]
        lookup = dict(slopes)

        def slope(row):
            base = row["model"].removesuffix("_xbn")
            return depth_slope(row, lookup[base]) if base in lookup else None

        lines += ["### Slope of log(mean shift) against relative depth, on the BatchNorm layers both forms share",
                  "", _grid([r for r in shifted if r["model"] in models], slope, 1.0, 2, models), ""]
    corruption = corruption_markdown(rows, normal)
    if corruption:
        lines += [corruption, ""]
    tuning = _tuning_table(document)
    if tuning:
        lines += [tuning, ""]
    shown = {"corruption": bool(corruption), "convergence": bool(convergence_curves(all_rows, normal))}
    lines += [f"![{name}]({picture_prefix}{file})" for name, file in PLOTS.items() if shown.get(name, True)]
    return "\n".join(lines) + "\n"


def corruption_markdown(rows, normal):
    """Mean top-1 per corruption (over severities) of each form at the normal batch, and the mCE."""
    from xbn.diagnostics.corruptions import corruption_errors

    scored = [r for r in _trained(rows) if r.get("corruption") and r["batch_size"] == normal]
    if not scored:
        return ""
    models = _models(scored)
    names = list(dict.fromkeys(n for r in scored for n in r["corruption"]))
    severities = sorted({int(s) for r in scored for scores in r["corruption"].values() for s in scores})
    shown = ("severities " + ", ".join(map(str, severities)) if len(severities) > 1
             else f"severity {severities[0]}")
    lines = [f"### Corruptions at batch {normal}: top-1 (%) at {shown} (averaged), mean ± 95% CI over seeds",
             "", "| corruption | " + " | ".join(f"`{m}`" for m in models) + " |",
             "| --- |" + " ---: |" * len(models)]
    for name in names:
        cells = [_cell([np.mean(list(r["corruption"][name].values())) for r in scored if r["model"] == m])
                 for m in models]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    base = {r["seed"]: r for r in scored if r["norm"] == "bn"}
    for label, subset in (("", names), (" without " + "/".join(GLOBAL_INTENSITY),
                                        [n for n in names if n not in GLOBAL_INTENSITY])):
        mce = []
        for m in models:
            values = [corruption_errors({n: r["corruption"][n] for n in subset}, r["top1_ema"],
                                        ({n: base[r["seed"]]["corruption"][n] for n in subset},
                                         base[r["seed"]]["top1_ema"]))["mce"]
                      for r in scored if r["model"] == m and r["seed"] in base]
            mce.append(_cell(values))
        lines.append(f"| **mCE (%)**{label}, vanilla of the same seed = 100 | " + " | ".join(mce) + " |")
    return "\n".join(lines)


def _band(ax, x, values, label, style="o-", log=False):
    """The mean over seeds with its 95% confidence band; with ``log`` (a
    positive quantity on a log axis) the geometric mean and the band of the
    logarithms, which a log axis shows whole (a band of the values reaches
    below zero where few seeds spread widely)."""
    from scipy import stats

    values = np.asarray(values, np.float64)
    if log:
        values = np.log(values)
    mean = np.nanmean(values, axis=0)
    back = np.exp if log else (lambda v: v)
    line, = ax.plot(x, back(mean), style, markersize=3, label=label)
    n = np.sum(~np.isnan(values), axis=0)
    if values.shape[0] > 1 and np.all(n > 1):
        half = stats.t.ppf(0.975, n - 1) * np.nanstd(values, axis=0, ddof=1) / np.sqrt(n)
        ax.fill_between(x, back(mean - half), back(mean + half), color=line.get_color(), alpha=0.2, linewidth=0)
    return line


def _per_batch(rows, model, value):
    cells = by_cell(_trained(rows))
    batches = sorted(b for (m, b) in cells if m == model)
    seeds = sorted({s for b in batches for s in cells[model, b]})
    grid = [[value(cells[model, b][s]) if s in cells[model, b] else math.nan for b in batches] for s in seeds]
    return batches, [[math.nan if v is None else v for v in row] for row in grid]


def _log2_axis(ax, batches, plt):
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # a panel with nothing to draw has no legend
        ax.legend(fontsize=7)


def _one_image_note(ax, plan):
    """What one test image is worth, in the corner of an accuracy panel."""
    if plan.get("test_images"):
        ax.annotate(f"one test image = {100 / plan['test_images']:.3f} points", (0.02, 0.02),
                    xycoords="axes fraction", fontsize=7)


def plot_all(document, folder):
    """Write the study's figures into ``folder``; returns their paths."""
    from pathlib import Path

    from xbn import _plotting

    plt = _plotting.pyplot()
    plan = document["plan"]
    rows = study_rows(document["rows"])
    folder = Path(folder)
    sweep = [m for m in _models(rows) if m in plan["sweep"]]
    all_batches = sorted({r["batch_size"] for r in rows if r["model"] in sweep})
    paths = []

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, key, title in zip(axes, ("top1_ema", "top1_precise_bn"),
                              ("moving statistics as trained", "after precise BN")):
        for model in sweep:
            batches, grid = _per_batch(rows, model, lambda r, k=key: 100 * r[k])
            _band(ax, batches, grid, model)
        ax.set(xlabel="batch size", title=title)
        _log2_axis(ax, all_batches, plt)
        below = [b for b in all_batches if b < plan["normal_batch"]]
        if not _epochs_held_equal(plan) and below:
            # The step into the normal batch also holds its extra epochs (H2
            # compares batches of equal epochs): shaded, so no one reads it
            # as the batch's effect alone.
            ax.axvspan(max(below), plan["normal_batch"], color="0.5", alpha=0.08, linewidth=0)
            ax.annotate(f"epochs {plan['epochs']} -> {_normal_epochs_text(plan)}", (0.98, 0.02),
                        xycoords="axes fraction", ha="right", fontsize=7, color="0.35")
    axes[0].set_ylabel("test top-1 (%), mean and 95% CI over seeds")
    _one_image_note(axes[0], plan)
    held = "epochs held equal" if _epochs_held_equal(plan) else (
        f"{plan['epochs']} epochs, {_normal_epochs_text(plan)} at batch {plan['normal_batch']}")
    fig.suptitle(f"H2/H3: accuracy against batch size ({plan['data']}, {held})")
    fig.tight_layout()
    paths.append(_plotting.save_png(fig, folder / PLOTS["accuracy"]))
    curves = convergence_curves(document["rows"], plan["normal_batch"])
    if curves:
        paths.append(plot_convergence(curves, plan, folder / PLOTS["convergence"]))

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key in zip(axes, ("mean_shift", "var_shift")):
        for model in sweep:
            if any(r["layer_shifts"] for r in rows if r["model"] == model):
                batches, grid = _per_batch(rows, model, lambda r, k=key: r[k])
                _band(ax, batches, grid, model)
        ax.set(xlabel="batch size", ylabel=key.replace("_", " ") + " (average over BN layers)")
        _log2_axis(ax, all_batches, plt)
    fig.suptitle("Estimation shift of BN's moving statistics against batch size (mean and 95% CI)")
    fig.tight_layout()
    paths.append(_plotting.save_png(fig, folder / PLOTS["shift"]))

    paths.append(plot_depth(rows, plan, folder / PLOTS["depth"], "mean_shift"))
    paths.append(plot_depth(rows, plan, folder / PLOTS["depth_variance"], "var_shift"))
    scored = [r for r in _trained(rows) if r.get("corruption")]
    if scored:
        # Per corruption (the unit H4 is tested on), each form's top-1
        # averaged over the severities scored, with its 95% CI over seeds.
        names = list(dict.fromkeys(n for r in scored for n in r["corruption"]))
        severities = sorted({int(s) for r in scored for n in r["corruption"] for s in r["corruption"][n]})
        models = _models(scored)
        fig, ax = plt.subplots(figsize=(max(6.5, 0.6 * len(names) + 2), 4.4))
        x = np.arange(len(names), dtype=float)
        lowest, highest = 100.0, 0.0
        for k, model in enumerate(models):
            runs = [r for r in scored if r["model"] == model]
            estimates = [Estimate.of([100 * np.mean(list(r["corruption"][n].values()))
                                      for r in runs if n in r["corruption"]]) for n in names]
            means = np.array([e.mean for e in estimates])
            halves = np.array([0.0 if math.isnan(e.low) else e.mean - e.low for e in estimates])
            lowest, highest = min(lowest, float(np.nanmin(means))), max(highest, float(np.nanmax(means)))
            ax.errorbar(x + (k - (len(models) - 1) / 2) * 0.22, means, yerr=halves, fmt="o", markersize=4,
                        capsize=2, label=f"{model} ({len(runs)} seeds)")
        ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
        # Sized to the means; an interval beyond 0-100% (few seeds) is cut at the possible range.
        ax.set_ylim(max(0.0, lowest - 10.0), min(100.0, highest + 5.0))
        shown = ", ".join(map(str, severities))
        ax.set(ylabel="test top-1 (%)", title=f"H4: top-1 per corruption at batch {plan['normal_batch']} "
               f"(severity {shown}; mean and 95% CI over seeds)")
        ax.title.set_fontsize(10)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(_plotting.save_png(fig, folder / PLOTS["corruption"]))
    return paths


def plot_convergence(curves, plan, path):
    """The references' test top-1 against the epochs they were trained
    for (log2 axis), one line per form, mean and 95% CI over the seeds
    trained at every point (``curves``: :func:`~xbn.study.analysis.convergence_curves`)."""
    from xbn import _plotting

    plt = _plotting.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ticks = sorted({e for levels in curves.values() for e in levels})
    for model, levels in curves.items():
        epochs = list(levels)
        means = np.array([100 * levels[e].mean for e in epochs])
        halves = np.array([0.0 if math.isnan(levels[e].low) else 100 * (levels[e].mean - levels[e].low)
                           for e in epochs])
        line, = ax.plot(epochs, means, "o-", markersize=3, label=f"{model} ({levels[epochs[0]].n} seeds)")
        ax.fill_between(epochs, means - halves, means + halves, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.axvline(_normal_epochs(plan), color="0.5", linestyle=":", linewidth=1)
    ax.set(xlabel=f"epochs at batch {plan['normal_batch']}", ylabel="test top-1 (%), mean and 95% CI over seeds")
    _log2_axis(ax, ticks, plt)
    _one_image_note(ax, plan)
    ax.set_title(f"Converged references: top-1 against epochs at batch {plan['normal_batch']}\n(dotted: the "
                 f"references' {_normal_epochs(plan)} epochs; converged where doubling moves it by < "
                 f"{_converged_points(plan)} points;\nbands: the spread between seeds; the text pairs each doubling "
                 "by seed, which is tighter)", fontsize=9)
    fig.tight_layout()
    return _plotting.save_png(fig, path)


def plot_depth(rows, plan, path, key="mean_shift"):
    """H1: per-layer shift against relative depth, BN and XBN, one panel per
    network and batch size, with the noise floor, bands over seeds."""
    from xbn import _plotting

    plt = _plotting.pyplot()
    rows = [r for r in _trained(rows) if r["layer_shifts"] and r["norm"] in ("bn", "xbn")]
    networks = [m for m in (*plan["sweep"][:1], *plan["depth"][:1]) if any(r["model"] == m for r in rows)]
    batches = sorted({r["batch_size"] for r in rows})
    if not networks or not batches:
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.text(0.5, 0.5, "no BatchNorm runs", ha="center")
        return _plotting.save_png(fig, path)
    fig, axes = plt.subplots(len(networks), len(batches), figsize=(3.3 * len(batches), 3.2 * len(networks)),
                             squeeze=False, sharey="row")
    what = "mean shift" if key == "mean_shift" else "variance shift"
    for i, bn in enumerate(networks):
        names = matched_layers(rows, bn, bn + "_xbn")
        trained = [b for b in batches if any(r["model"] == bn and r["batch_size"] == b for r in rows)]
        for j, batch in enumerate(batches):
            ax = axes[i, j]
            if batch not in trained:
                ax.text(0.5, 0.5, f"{bn}\nnot trained at batch {batch}", ha="center", va="center",
                        transform=ax.transAxes, fontsize=8, color="gray")
                ax.set_axis_off()
                continue
            for model, style in ((bn, "o-"), (bn + "_xbn", "s-")):
                runs = [r for r in rows if r["model"] == model and r["batch_size"] == batch]
                if not runs:
                    continue
                depth = [layer["depth"] for layer in runs[0]["layer_shifts"]]
                grid = [[layer[key] for layer in r["layer_shifts"]] for r in runs]
                line = _band(ax, depth, grid, f"{model} ({len(runs)} seeds)", style, log=True)
                if model == bn:
                    kind = key.removesuffix("_shift")
                    floor = [[noise_floor(layer, kind) for layer in r["layer_shifts"]] for r in runs]
                    floor = [[math.nan if f is None else f for f in layers] for layers in floor]
                    ax.plot(depth, np.nanmean(np.asarray(floor, np.float64), axis=0), ":", color=line.get_color(),
                            linewidth=1, label="noise floor (the test split's sampling error)")
                    shared = [d for d, layer in zip(depth, runs[0]["layer_shifts"]) if layer["name"] in names]
                    ax.plot(shared, [0.04] * len(shared), "|", color="black", markersize=6,
                            transform=ax.get_xaxis_transform())  # near the bottom however far the bands reach
            ax.set_title(f"{bn}, batch {batch}", fontsize=9)
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
            ax.set_xlim(0, 1)
            ax.set_xlabel("relative depth of the BatchNorm layer")
            if batch == trained[0]:  # the row's first panel may not be the grid's first column
                ax.set_ylabel(what + " (log scale)")
                ax.tick_params(labelleft=True)
                ax.legend(fontsize=6)
    fig.suptitle(f"H1: {what} per BatchNorm layer against depth\n(geometric mean and 95% CI over seeds; ticks: "
                 "layers both forms share)", fontsize=10)
    fig.tight_layout()
    return _plotting.save_png(fig, path)
