"""Tables and figures of the study, generated from its ``results.json`` alone."""

import math

import numpy as np

from xbn.study.analysis import Estimate, accumulation_factor, by_cell, hypotheses

PLOTS = {
    "accuracy": "study_accuracy.png",
    "shift": "study_shift.png",
    "depth": "study_depth.png",
    "corruption": "study_corruption.png",
}


def _models(rows):
    return list(dict.fromkeys(r["model"] for r in rows))


def _trained(rows):
    return [r for r in rows if not r.get("diverged")]


def _cell(values, scale=100.0, digits=1):
    e = Estimate.of(values)
    if e.n == 0:
        return "-"
    if e.n == 1:
        return f"{e.mean * scale:.{digits}f}"
    return f"{e.mean * scale:.{digits}f} ± {e.sd * scale:.{digits}f}"


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


def to_markdown(document, command, picture_prefix=""):
    """The study's section: how it was run, the hypotheses, the tables, the figures."""
    plan, rows = document["plan"], document["rows"]
    normal = plan["normal_batch"]
    seeds = sorted({r["seed"] for r in rows})
    steps = {r["batch_size"]: r["steps"] for r in rows if r["model"] == plan["sweep"][0]}
    seconds = sum(r["train_seconds"] or 0 for r in rows)
    lines = [
        f"Command: `{command}`", "",
        f"{len(rows)} runs: {', '.join(f'`{m}`' for m in _models(rows))}; seeds {', '.join(map(str, seeds))}; "
        f"{plan['data']} at {plan['image_size']}x{plan['image_size']}. **Epochs are held equal** ({plan['epochs']} "
        f"per run, one of linear warm-up, cosine decay), so the steps differ: "
        + ", ".join(f"{s} steps at batch {b}" for b, s in sorted(steps.items()))
        + f". Learning rate {plan['lr']}. Test top-1 on the {plan['data']} test split; "
        f"{seconds / 60:.0f} minutes of training in all (the sum over runs).", "",
        "## What the evidence shows", "",
    ]
    for h in hypotheses(_trained(rows), normal):
        lines += [f"**{h['id']}** ({h['claim']}): **{h['verdict']}**.", "", *h["lines"], ""]
    lines += [
        "### Test top-1 (%), moving statistics as trained (mean ± sd over seeds)", "",
        _grid(rows, lambda r: r["top1_ema"]), "",
        f"### Test top-1 (%) after precise BN (population statistics of {plan['precise_bn_batches']} training "
        "batches)", "",
        _grid(rows, lambda r: r["top1_precise_bn"]), "",
        "### Mean estimation shift, averaged over the BatchNorm layers (GN+WS: none)", "",
        _grid([r for r in rows if r["layer_shifts"]], lambda r: r["mean_shift"], 1.0, 3), "",
        "### Accumulation factor: mean shift of the last third of BN layers over the first third", "",
        _grid([r for r in rows if r["layer_shifts"]], accumulation_factor, 1.0, 2), "",
    ]
    corruption = corruption_markdown(rows, normal)
    if corruption:
        lines += [corruption, ""]
    lines += [f"![{name}]({picture_prefix}{file})" for name, file in PLOTS.items()
              if name != "corruption" or corruption]
    return "\n".join(lines) + "\n"


def corruption_markdown(rows, normal):
    """Mean top-1 per corruption (over severities and seeds) of each form at the normal batch."""
    from xbn.diagnostics.corruptions import corruption_errors

    scored = [r for r in _trained(rows) if r.get("corruption") and r["batch_size"] == normal]
    if not scored:
        return ""
    models = _models(scored)
    names = list(dict.fromkeys(n for r in scored for n in r["corruption"]))
    lines = [f"### Corruptions at batch {normal}: top-1 (%) averaged over severities 1-5, mean ± sd over seeds", "",
             "| corruption | " + " | ".join(f"`{m}`" for m in models) + " |", "| --- |" + " ---: |" * len(models)]
    for name in names:
        cells = [_cell([np.mean(list(r["corruption"][name].values())) for r in scored if r["model"] == m])
                 for m in models]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    base = {r["seed"]: r for r in scored if r["norm"] == "bn"}
    mce = []
    for m in models:
        values = [corruption_errors(r["corruption"], r["top1_ema"],
                                    (base[r["seed"]]["corruption"], base[r["seed"]]["top1_ema"]))["mce"]
                  for r in scored if r["model"] == m and r["seed"] in base]
        mce.append(_cell(values))
    lines.append("| **mCE (%)**, vanilla of the same seed = 100 | " + " | ".join(mce) + " |")
    return "\n".join(lines)


def _band(ax, x, values, label, style="o-"):
    values = np.asarray(values, np.float64)
    mean = np.nanmean(values, axis=0)
    line, = ax.plot(x, mean, style, markersize=3, label=label)
    if values.shape[0] > 1:
        sd = np.nanstd(values, axis=0, ddof=1)
        ax.fill_between(x, mean - sd, mean + sd, color=line.get_color(), alpha=0.2, linewidth=0)


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
    ax.legend(fontsize=7)


def plot_all(document, folder):
    """Write the study's figures into ``folder``; returns their paths."""
    from pathlib import Path

    from xbn import _plotting

    plt = _plotting.pyplot()
    rows, plan = document["rows"], document["plan"]
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
    axes[0].set_ylabel("test top-1 (%), mean ± sd over seeds")
    fig.suptitle("H2/H3: accuracy against batch size (epochs held equal)")
    fig.tight_layout()
    paths.append(_plotting.save_png(fig, folder / PLOTS["accuracy"]))

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key in zip(axes, ("mean_shift", "var_shift")):
        for model in sweep:
            if any(r["layer_shifts"] for r in rows if r["model"] == model):
                batches, grid = _per_batch(rows, model, lambda r, k=key: r[k])
                _band(ax, batches, grid, model)
        ax.set(xlabel="batch size", ylabel=key.replace("_", " ") + " (average over BN layers)")
        ax.set_ylim(bottom=0)
        _log2_axis(ax, all_batches, plt)
    fig.suptitle("Estimation shift of BN's moving statistics against batch size")
    fig.tight_layout()
    paths.append(_plotting.save_png(fig, folder / PLOTS["shift"]))

    paths.append(plot_depth(rows, plan, folder / PLOTS["depth"]))
    scored = [r for r in _trained(rows) if r.get("corruption")]
    if scored:
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for model in _models(scored):
            runs = [r for r in scored if r["model"] == model]
            severities = sorted({int(s) for r in runs for n in r["corruption"] for s in r["corruption"][n]})
            grid = [[100 * np.mean([scores[str(s)] for scores in r["corruption"].values() if str(s) in scores])
                     for s in severities] for r in runs]
            _band(ax, severities, grid, model)
        ax.set(xlabel="severity", ylabel="test top-1 (%), mean over corruptions",
               title=f"H4: accuracy under corruption (batch {plan['normal_batch']})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(_plotting.save_png(fig, folder / PLOTS["corruption"]))
    return paths


def plot_depth(rows, plan, path):
    """H1: per-layer shift against relative depth, BN and XBN, small and normal batch, bands over seeds."""
    from xbn import _plotting

    plt = _plotting.pyplot()
    rows = [r for r in _trained(rows) if r["layer_shifts"] and r["norm"] in ("bn", "xbn")]
    deep = [*plan["depth"], *plan["sweep"][:2]]  # the deep pair (solid) and the sweep's BN and XBN (dashed)
    batches = plan["depth_batch_sizes"] or [min(plan["batch_sizes"]), plan["normal_batch"]]
    fig, axes = plt.subplots(2, len(batches), figsize=(5.5 * len(batches), 7.5), squeeze=False)
    for column, batch in enumerate(batches):
        for model in deep:
            runs = [r for r in rows if r["model"] == model and r["batch_size"] == batch]
            if not runs:
                continue
            depth = [layer["depth"] for layer in runs[0]["layer_shifts"]]
            for row_index, key in enumerate(("mean_shift", "var_shift")):
                grid = [[layer[key] for layer in r["layer_shifts"]] for r in runs]
                style = "o-" if model in plan["depth"] else "s--"
                _band(axes[row_index, column], depth, grid, f"{model} ({len(runs)} seeds)", style)
        axes[0, column].set_title(f"batch {batch}")
        for row_index, key in enumerate(("mean shift", "variance shift")):
            ax = axes[row_index, column]
            ax.set(xlabel="relative depth of the BatchNorm layer", ylabel=key)
            ax.set_xlim(0, 1)
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle("H1: estimation shift per BatchNorm layer against depth (mean ± sd over seeds)")
    fig.tight_layout()
    return _plotting.save_png(fig, path)
