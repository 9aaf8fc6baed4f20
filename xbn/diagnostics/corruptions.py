"""The corruption benchmark: accuracy under the ImageNet-C corruptions, mCE.

The corruptions themselves (15 named, 14 provided, severities 1-5, applied
at the model's input size) are :mod:`xbn.data.corruptions`; this module
scores models on them and computes the paper's figures (Hendrycks &
Dietterich, 2019): the corruption error ``E(c, s) = 1 - top1`` of a model
at corruption ``c`` and severity ``s``;

- ``CE_c = sum_s E(c, s) / sum_s E_base(c, s)`` and ``mCE``, their mean over
  the corruptions, against a baseline model (the paper's is AlexNet; here
  it is what ``--baseline`` names, and the study uses the vanilla network
  of the same seed);
- the relative ``CE_c = sum_s (E(c, s) - E(clean)) / sum_s (E_base(c, s) -
  E_base(clean))`` and relative mCE: how much accuracy each model *loses*
  to the corruption, against how much the baseline loses;
- without a baseline, the mean corruption error over every corruption and
  severity scored.

A relative CE divides by what the baseline *loses* to the corruption: where
that is under :data:`RELATIVE_FLOOR` (2 points on average over the
severities), the ratio is noise (a few images either way turn it from -100%
to +150%) and is left out, shown as ``-``.
"""

import math

import numpy as np

from xbn.data.corruptions import (
    ALL_CORRUPTIONS,
    CORRUPTIONS,
    NOT_PROVIDED,
    SEVERITIES,
    check_corruption,
    corrupt,
    parse_corruptions,
)
from xbn.errors import UsageError

__all__ = [
    "ALL_CORRUPTIONS", "CORRUPTIONS", "NOT_PROVIDED", "SEVERITIES", "check_corruption", "corrupt",
    "corruption_errors", "corruption_table", "parse_corruptions", "score_corruptions",
]


# A relative CE needs the baseline to lose at least this much top-1, on
# average over the severities, to the corruption.
RELATIVE_FLOOR = 0.02


def score_corruptions(top1_of, pairs, progress=None):
    """Top-1 per corruption and severity.

    Args:
        top1_of: ``top1_of((name, severity))``, the model's top-1 on the data
            so corrupted (``top1_of(None)``: clean).
        pairs: ``(name, severity)`` pairs (see :func:`parse_corruptions`).
        progress: optional ``progress(done)`` callback.

    Returns:
        ``(clean_top1, {name: {severity: top1}})``.
    """
    scores = {}
    clean = top1_of(None)
    for done, (name, severity) in enumerate(pairs, 1):
        scores.setdefault(name, {})[int(severity)] = top1_of((name, severity))
        if progress:
            progress(done)
    return clean, scores


def corruption_errors(top1, clean, baseline=None):
    """The paper's figures from accuracies.

    Args:
        top1: ``{name: {severity: top-1}}`` of the model.
        clean: its clean top-1.
        baseline: ``(top1, clean)`` of the baseline in the same form, or
            ``None``; it must cover the same corruptions and severities.

    Returns:
        ``{"mean_error"}``, and with a baseline also ``"ce"`` and
        ``"relative_ce"`` (per corruption), ``"mce"`` and ``"relative_mce"``.
        A relative CE whose baseline loses less than :data:`RELATIVE_FLOOR`
        to the corruption is NaN and left out of the relative mCE.
    """
    names = list(top1)
    if not names:
        raise UsageError("corruption_errors: no corruption was scored.")
    errors = {n: {int(s): 1.0 - a for s, a in top1[n].items()} for n in names}
    out = {"mean_error": float(np.mean([e for n in names for e in errors[n].values()]))}
    if baseline is None:
        return out
    base_top1, base_clean = baseline
    missing = [n for n in names if set(map(int, base_top1.get(n, {}))) != set(errors[n])]
    if missing:
        raise UsageError(
            f"the baseline was not scored on {', '.join(missing)} at the same severities; score it "
            "with the same `corruption` arguments."
        )
    base = {n: {int(s): 1.0 - a for s, a in base_top1[n].items()} for n in names}
    ce, relative = {}, {}
    for n in names:
        ce[n] = sum(errors[n].values()) / sum(base[n].values()) if sum(base[n].values()) > 0 else math.nan
        lost = sum(e - (1.0 - base_clean) for e in base[n].values())
        relative[n] = (sum(e - (1.0 - clean) for e in errors[n].values()) / lost
                       if lost > RELATIVE_FLOOR * len(base[n]) else math.nan)
    out.update(ce=ce, relative_ce=relative, mce=_mean(ce.values()), relative_mce=_mean(relative.values()))
    return out


def _mean(values):
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def corruption_table(top1, clean, baseline=None):
    """Markdown: one row per corruption (top-1 per severity, CE), then the means."""
    severities = sorted({int(s) for scores in top1.values() for s in scores})
    figures = corruption_errors(top1, clean, baseline)
    with_base = baseline is not None
    header = "| corruption | " + " | ".join(f"s{s}" for s in severities) + " | mean error |"
    header += " CE | relative CE |" if with_base else ""
    lines = [header, "| --- |" + " ---: |" * (len(severities) + 1 + 2 * with_base)]
    for name, scores in top1.items():
        scores = {int(k): v for k, v in scores.items()}
        cells = [f"{100 * scores[s]:.1f}" if s in scores else "-" for s in severities]
        row = f"| {name} | " + " | ".join(cells) + f" | {100 * np.mean([1 - v for v in scores.values()]):.1f} |"
        if with_base:
            row += f" {_percent(figures['ce'][name])} | {_percent(figures['relative_ce'][name])} |"
        lines.append(row)
    lines += ["", f"Clean top-1 {100 * clean:.2f}%; mean corruption error {100 * figures['mean_error']:.2f}%"
              + (f"; mCE {_percent(figures['mce'])}%, relative mCE {_percent(figures['relative_mce'])}% "
                 "(against the baseline)" if with_base else "") + "."]
    lines += _notes(top1, clean, figures, with_base)
    return "\n".join(lines) + "\n", figures


def _notes(top1, clean, figures, with_base):
    """What a reader must know to read the table: corruptions left out, and
    which figures are within noise."""
    notes = []
    left_out = [n for n in NOT_PROVIDED if n not in top1]
    if set(top1) == set(CORRUPTIONS) and left_out:
        notes.append(f"Not scored: {', '.join(left_out)} ({'; '.join(NOT_PROVIDED[n] for n in left_out)}).")
    above = [(n, s, v) for n, scores in top1.items() for s, v in scores.items() if v > clean]
    if above:
        most = max(v - clean for _, _, v in above)
        notes.append(f"{len(above)} score(s) lie above the clean top-1 (by up to {100 * most:.1f} points): a "
                     "corruption that leaves an image readable changes a few predictions either way, and "
                     "differences of that size between rows are noise.")
    if with_base:
        dropped = [n for n, v in figures["relative_ce"].items() if math.isnan(v)]
        if dropped:
            notes.append(f"Relative CE left out (-) for {', '.join(dropped)}: the baseline loses less than "
                         f"{100 * RELATIVE_FLOOR:.0f} points to them, and a ratio over so small a loss is noise.")
    return [""] + notes if notes else []


def _percent(value):
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}"
