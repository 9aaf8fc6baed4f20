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
    DEFAULT_SUITE,
    NOT_PROVIDED,
    SEVERITIES,
    check_corruption,
    corrupt,
    parse_corruptions,
)
from xbn.errors import UsageError

__all__ = [
    "ALL_CORRUPTIONS", "CORRUPTIONS", "NOT_PROVIDED", "SEVERITIES", "check_corruption", "choose_levels", "corrupt",
    "corruption_errors", "corruption_table", "parse_corruptions", "score_corruptions",
]


# A relative CE needs the baseline to lose at least this much top-1, on
# average over the severities, to the corruption.
RELATIVE_FLOOR = 0.02


def score_corruptions(top1_of, pairs, progress=None, suite=DEFAULT_SUITE):
    """Top-1 per corruption and severity.

    Args:
        top1_of: ``top1_of((name, severity, suite))``, the model's top-1 on
            the data so corrupted (``top1_of(None)``: clean).
        pairs: ``(name, severity)`` pairs (see :func:`parse_corruptions`).
        progress: optional ``progress(done)`` callback.
        suite: the severities' definitions (:data:`xbn.data.corruptions.SUITES`).

    Returns:
        ``(clean_top1, {name: {severity: top1}})``.
    """
    scores = {}
    clean = top1_of(None)
    for done, (name, severity) in enumerate(pairs, 1):
        scores.setdefault(name, {})[int(severity)] = top1_of((name, severity, suite))
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


# -- Calibrating a suite for small images --------------------------------------
# The levels (on ImageNet-C's scale, :func:`xbn.data.corruptions.parameters`)
# a reference network is scored at: dense where small images lose most, and
# the fractions of its headroom above chance (clean top-1 minus chance) that
# severities 1 to 5 should take away.
CALIBRATION_LEVELS = tuple([round(0.1 * i, 1) for i in range(1, 10)] + [0.25 * i for i in range(4, 21)]
                           + [0.5 * i for i in range(11, 21)])
CALIBRATION_DROPS = (0.1, 0.2, 0.3, 0.45, 0.6)
# A corruption that never takes away this fraction of the headroom, even at
# the strongest level, cannot be spread over five severities: it is
# reported as flat.
FLAT_REACH = 0.05


def choose_levels(levels, top1, clean, chance, drops=CALIBRATION_DROPS):
    """Five levels at which a reference network loses ``drops`` of its headroom.

    The parameters of a corruption need not weaken it monotonically between
    ImageNet-C's severities (defocus blur's disk gains no pixel below radius
    1 while its antialiasing shrinks), so no curve is fitted between the
    scored levels: for each target, the level chosen is a scored one, the
    first from which every stronger level scored at most the target, moved
    to where the highest of those scores was measured; where that is the
    previous severity's level, the next level that scores lower.  The
    chosen levels' scores then never rise with severity (on the images
    scored), and they differ wherever the scored levels allow.

    Args:
        levels: the increasing levels it was scored at (0 excluded).
        top1: its top-1 at each of them.
        clean: its clean top-1 (level 0).
        chance: top-1 by chance (1 / classes).
        drops: increasing fractions of ``clean - chance``.

    Returns:
        ``{"levels", "envelope", "reach", "scale", "flat"}``: the levels
        (increasing, where the scores allow); the envelope of the scores they were read from
        (each level's score replaced by the highest at it or any stronger
        level); ``reach``, the fraction of the headroom the strongest level
        takes away; ``scale``, 1 where the largest drop is reachable, else
        ``reach / drops[-1]`` (every target scaled down alike, so the
        severities still spread over what the corruption can do); ``flat``
        where ``reach`` is under :data:`FLAT_REACH` (then the levels are
        spread evenly to the strongest).
    """
    levels, top1 = [float(v) for v in levels], [float(v) for v in top1]
    if len(levels) != len(top1) or not levels or any(b <= a for a, b in zip([0.0] + levels, levels)):
        raise UsageError("choose_levels: `levels` must be increasing positive levels, one per `top1` score.")
    if not drops or not all(0 < d < 1 for d in drops) or any(b <= a for a, b in zip(drops, drops[1:])):
        raise UsageError(f"choose_levels: `drops` must be increasing fractions between 0 and 1; got {drops!r}.")
    headroom = clean - chance
    if headroom <= 0:
        raise UsageError(f"choose_levels: the reference scores {clean:.3f} clean, not above chance ({chance:.3f}); "
                         "calibrate on a trained network.")
    envelope = np.maximum.accumulate(np.asarray(top1)[::-1])[::-1].tolist()
    reach = (clean - envelope[-1]) / headroom
    if reach < FLAT_REACH:
        chosen = [float(v) for v in np.linspace(levels[-1] / len(drops), levels[-1], len(drops))]
        return {"levels": chosen, "envelope": envelope, "reach": reach, "scale": 0.0, "flat": True}
    scale = min(1.0, reach / drops[-1])
    chosen, previous = [], None
    for drop in drops:
        target = clean - drop * scale * headroom
        first = next(i for i, v in enumerate(envelope) if v <= target + 1e-12)
        if previous is not None and first <= previous:
            # The step that met the last target met this one too (a
            # corruption whose strength moves in steps, as a disk of whole
            # pixels does): the next step down, if there is one.
            first = next((i for i in range(previous + 1, len(levels)) if envelope[i] < envelope[previous]), previous)
        previous = next(j for j in range(first, len(levels)) if top1[j] == envelope[first])
        chosen.append(levels[previous])
    return {"levels": chosen, "envelope": envelope, "reach": reach, "scale": scale, "flat": False}
