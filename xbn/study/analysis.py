"""The hypotheses H1-H4, tested on the study's rows with confidence intervals.

Every comparison is **paired by seed**: two forms trained with the same seed
share their initialization draw, data order and augmentation, so their
difference is free of that variation.  A 95% confidence interval of a mean
over ``n`` seeds is ``mean +- t(0.975, n - 1) * sd / sqrt(n)`` (Student's t).

The tests, with their margins fixed before the data (here, in code):

- **H1** (BN's estimation shift grows with depth; XBN stops it): on the
  BatchNorm layers both forms share (XBN's stem and first convolution of
  each block are GroupNorms, so only the blocks' second BatchNorm is
  common), the per-seed least-squares slope of log(mean shift) against
  relative depth; BN accumulates when its slope's interval lies above 0,
  XBN stops it when BN's slope minus XBN's lies above 0.  Measured on the
  test split and on the unaugmented training split, beside the noise floor
  (:func:`noise_floor`: the sampling error of the test split's statistics,
  half the same measure between the split's two halves).
- **H2** (BN falls at small batches, GN+WS stays flat): BN's top-1 at the
  normal batch minus at the smallest, with its interval (falls when above
  0); GN+WS's flatness by two one-sided tests: equivalent when the 90%
  interval of its difference lies within +-:data:`EQUIVALENCE_MARGIN`.
- **H3** (XBN at least as accurate as BN at a normal batch): non-inferior
  when XBN's error exceeds BN's by less than :data:`RELATIVE_MARGIN` of
  BN's error: the interval of ``top1_xbn - top1_bn + margin * err_bn`` lies
  above 0.
- **H4** (XBN more robust to distribution shift): per-corruption intervals
  of XBN's top-1 minus BN's, the mCE (BN of the same seed = 100%) with and
  without the three global-intensity corruptions, and top-1 on the plain
  digits (a real domain shift).  No relative mCE: its denominator, what
  BN loses to a corruption, was near zero for several corruptions, and a
  ratio of noise is no result.

Verdicts, decided by the interval and nothing else:

- **replicates**: the interval lies on the claim's side of its threshold;
- **does not replicate**: it lies entirely on the other side;
- **inconclusive**: it straddles the threshold.
"""

import dataclasses
import math

import numpy as np

REPLICATES, FAILS, INCONCLUSIVE = "replicates", "does not replicate", "inconclusive"
# H2: GN+WS is "flat" when its top-1 at the smallest batch is within this of
# its top-1 at the normal batch (two one-sided tests at 5%: the 90% CI).
EQUIVALENCE_MARGIN = 0.01
# H3: XBN is "at least as accurate" as BN when its error is at most this
# fraction above BN's (BN at 12% error: XBN within 1.2 points).
RELATIVE_MARGIN = 0.10
# H4: the corruptions that change an image's global intensity only.
GLOBAL_INTENSITY = ("brightness", "contrast", "fog")
# H1's noise floor from the shift between the test split's halves: each
# half's statistic errs by sqrt(2) times the whole split's, and the two
# errors add independently (sqrt(2) again), so the halves lie twice the
# whole split's sampling error apart (both shift measures are linear in the
# error where it is small).
HALVES_TO_WHOLE = 0.5


@dataclasses.dataclass
class Estimate:
    """A mean over seeds with its spread and 95% confidence interval."""

    mean: float
    sd: float
    n: int
    low: float
    high: float

    @classmethod
    def of(cls, values, confidence=0.95):
        values = np.asarray([v for v in values if v is not None and not math.isnan(v)], np.float64)
        n = len(values)
        if n == 0:
            return cls(math.nan, math.nan, 0, math.nan, math.nan)
        mean = float(values.mean())
        if n == 1:
            return cls(mean, math.nan, 1, math.nan, math.nan)
        from scipy import stats

        sd = float(values.std(ddof=1))
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
        return cls(mean, sd, n, mean - half, mean + half)

    def verdict(self, threshold, above=True):
        """Replicates if the interval is above (or below) ``threshold``."""
        if math.isnan(self.low):
            return INCONCLUSIVE
        if (self.low > threshold) if above else (self.high < threshold):
            return REPLICATES
        if (self.high < threshold) if above else (self.low > threshold):
            return FAILS
        return INCONCLUSIVE

    def text(self, scale=100.0, unit=" points", digits=1):
        f = f"{{:+.{digits}f}}"
        body = f.format(self.mean * scale) + unit
        if self.n > 1:
            body += (f" (95% CI {f.format(self.low * scale)} to {f.format(self.high * scale)}, "
                     f"sd {self.sd * scale:.{digits}f}, {self.n} seeds)")
        return body


def study_rows(rows):
    """The rows the hypotheses are tested on (not the tuning or convergence runs)."""
    return [r for r in rows if r.get("purpose", "study") == "study"]


def by_cell(rows):
    """``{(model, batch_size): {seed: row}}`` over the rows that trained."""
    cells = {}
    for row in rows:
        cells.setdefault((row["model"], row["batch_size"]), {})[row["seed"]] = row
    return cells


def forms(rows, norm):
    """Model labels of a design (``bn``, ``xbn``, ``gnws``, ``brn``) in row order."""
    return list(dict.fromkeys(r["model"] for r in rows if r["norm"] == norm))


def paired(cells, a, b, value):
    """``value(row_a) - value(row_b)`` per seed both cells have (``a``, ``b``: cell keys)."""
    first, second = cells.get(a, {}), cells.get(b, {})
    out = []
    for seed in sorted(set(first) & set(second)):
        x, y = value(first[seed]), value(second[seed])
        if x is not None and y is not None:
            out.append(x - y)
    return out


def matched_layers(rows, bn, xbn):
    """Names of the BatchNorm layers both forms have, in depth order."""
    def names(model):
        for row in rows:
            if row["model"] == model and row.get("layer_shifts"):
                return [layer["name"] for layer in row["layer_shifts"]]
        return []

    shared = set(names(xbn))
    return [name for name in names(bn) if name in shared]


def depth_slope(row, names, key="mean_shift"):
    """The least-squares slope of log(``key``) against relative depth over
    the layers ``names`` of one run (``None`` with fewer than 3 layers or a
    zero shift)."""
    layers = {layer["name"]: layer for layer in row.get("layer_shifts") or []}
    points = [(layers[n]["depth"], layers[n][key]) for n in names if n in layers]
    if len(points) < 3 or any(v <= 0 for _, v in points):
        return None
    depth, value = np.asarray(points, np.float64).T
    return float(np.polyfit(depth, np.log(value), 1)[0])


def matched_average(row, names, key="mean_shift"):
    """``key`` averaged over the layers ``names`` of one run."""
    layers = {layer["name"]: layer for layer in row.get("layer_shifts") or []}
    values = [layers[n][key] for n in names if n in layers and key in layers[n]]
    return float(np.mean(values)) if values else None


def noise_floor(record, kind="mean"):
    """The noise floor of a ``kind`` (``"mean"`` or ``"var"``) shift: the
    shift that the test split's sampling error alone gives, estimated as
    :data:`HALVES_TO_WHOLE` times the shift between the split's two halves
    (``noise_<kind>_shift`` of a row or of one of its ``layer_shifts``;
    ``None`` where it was not measured).  A measured shift near it is
    indistinguishable from a perfect estimate measured on this split."""
    value = record.get(f"noise_{kind}_shift")
    return None if value is None else HALVES_TO_WHOLE * value


def _value(row, key):
    return None if row.get("diverged") else row.get(key)


def hypotheses(rows, normal_batch):
    """H1-H4: a list of dicts ``{"id", "claim", "verdict", "lines"}`` (Markdown lines)."""
    rows = study_rows(rows)
    cells = by_cell(rows)
    tests = ((_h1, "H1", "estimation shift accumulates with depth in a BN network; XBN stops it"),
             (_h2, "H2", "BN's accuracy falls as the batch shrinks; GN+WS stays flat"),
             (_h3, "H3", "at a normal batch XBN is at least as accurate as BN"),
             (_h4, "H4", "XBN is more robust to distribution shift: corruptions and another domain"))
    results = []
    for test, name, claim in tests:
        lines, verdicts = test(rows, cells, normal_batch)
        results.append({"id": name, "claim": claim, "verdict": _overall(verdicts), "lines": lines})
    return results


def _h1(rows, cells, normal_batch):
    """Per network and batch, on the layers both forms share: BN's slope of
    log shift against depth, and BN's minus XBN's."""
    lines, verdicts = [], []
    for bn in forms(rows, "bn"):
        xbn = bn + "_xbn"
        names = matched_layers(rows, bn, xbn)
        if not names:
            continue
        lines.append(f"- `{bn}` and `{xbn}` share {len(names)} BatchNorm layers (the blocks' second); slopes of "
                     "log(mean shift) against relative depth on them, per seed:")
        for batch in sorted({b for (m, b) in cells if m == bn}):
            if (xbn, batch) not in cells:
                continue
            parts = []
            for split, key in (("test", "mean_shift"), ("train", "train_mean_shift")):
                grows = Estimate.of([depth_slope(r, names, key) for r in cells[bn, batch].values()])
                stops = Estimate.of(paired(cells, (bn, batch), (xbn, batch), lambda r, k=key: depth_slope(r, names, k)))
                if split == "test":
                    verdicts += [grows.verdict(0.0), stops.verdict(0.0)]
                parts.append(f"{split} split: BN's slope {grows.text(1.0, '', 2)} ({grows.verdict(0.0)}: BN "
                             f"accumulates); BN's minus XBN's {stops.text(1.0, '', 2)} ({stops.verdict(0.0)}: "
                             "XBN accumulates less)")
            lines.append(f"  - batch {batch}: " + "; ".join(parts) + ". " + _levels(cells, bn, xbn, batch, names))
            lines.append(f"    - variance shift (reported beside the mean-shift test stated in advance, not a "
                         f"verdict): {_variance_slopes(cells, bn, xbn, batch, names)}. "
                         + _levels(cells, bn, xbn, batch, names, "var"))
    return lines, verdicts


def _levels(cells, bn, xbn, batch, names, kind="mean"):
    """``kind`` shift averaged over the shared layers (test split): BN's and
    XBN's, each beside its own noise floor (:func:`noise_floor`), means over
    seeds."""
    def level(model, key):  # Estimate.of leaves out the seeds without the measure
        return Estimate.of([matched_average(r, names, key) for r in cells[model, batch].values()]).mean

    def floor(model):
        return HALVES_TO_WHOLE * level(model, f"noise_{kind}_shift")

    label = {"mean": "Mean", "var": "Variance"}[kind]
    key = f"{kind}_shift"
    return (f"{label} shift on these layers: BN {level(bn, key):.3f}, XBN {level(xbn, key):.3f}; "
            f"noise floor BN {floor(bn):.3f}, XBN {floor(xbn):.3f}")


def _variance_slopes(cells, bn, xbn, batch, names):
    """BN's slope of log(variance shift) against depth on the test split,
    and BN's minus XBN's, per seed."""
    grows = Estimate.of([depth_slope(r, names, "var_shift") for r in cells[bn, batch].values()])
    stops = Estimate.of(paired(cells, (bn, batch), (xbn, batch), lambda r: depth_slope(r, names, "var_shift")))
    return f"BN's slope on the test split {grows.text(1.0, '', 2)}; BN's minus XBN's {stops.text(1.0, '', 2)}"


def _fall(cells, model, high, low, key="top1_ema"):
    """``{seed: value at batch high - value at batch low}`` of ``model``."""
    first, second = cells.get((model, high), {}), cells.get((model, low), {})
    return {s: _value(first[s], key) - _value(second[s], key) for s in sorted(set(first) & set(second))
            if _value(first[s], key) is not None and _value(second[s], key) is not None}


def h2_batches(rows, normal_batch):
    """``(high, low)``: the batches H2 compares.  ``low`` is the smallest;
    ``high`` the largest batch trained for as many epochs as ``low``, so
    that the fall is the batch's alone.  Where the normal batch took more
    epochs (``normal_epochs``, to converge) a fall measured from it would
    also hold the extra training, common to every form; it is the normal
    batch only where no larger batch shares ``low``'s epochs."""
    low = min(r["batch_size"] for r in rows)
    epochs = {r["batch_size"]: r.get("epochs") for r in rows}
    same = [b for b in epochs if b > low and epochs[b] == epochs[low]]
    return (max(same) if same else normal_batch), low


def _h2(rows, cells, normal_batch):
    """BN's fall with its interval; GN+WS's flatness by two one-sided tests,
    between the batches of :func:`h2_batches`."""
    high, smallest = h2_batches(rows, normal_batch)
    lines, verdicts = [], []
    for bn in forms(rows, "bn"):
        if (bn, smallest) not in cells or (bn, high) not in cells:
            continue
        bn_fall = _fall(cells, bn, high, smallest)
        drop = Estimate.of(bn_fall.values())
        verdicts.append(drop.verdict(0.0))
        epochs = next(iter(cells[bn, smallest].values())).get("epochs")
        equal = f" (both {epochs} epochs)" if high != normal_batch and epochs else ""
        lines.append(f"- `{bn}`: top-1 at batch {high} minus at batch {smallest}{equal}: {drop.text()}: "
                     f"BN falls with the batch: {drop.verdict(0.0)}")
        for other in (bn + "_xbn", bn + "_brn"):
            fall = _fall(cells, other, high, smallest)
            if fall:
                lines.append(f"- `{other}`: the same difference {Estimate.of(fall.values()).text()}")
        gn = bn + "_gnws"
        fall = _fall(cells, gn, high, smallest)
        if fall:
            equivalence = Estimate.of(fall.values(), confidence=0.90)
            margin = EQUIVALENCE_MARGIN
            if -margin < equivalence.low and equivalence.high < margin:
                verdict = REPLICATES
            elif equivalence.low > margin or equivalence.high < -margin:
                verdict = FAILS
            else:
                verdict = INCONCLUSIVE
            verdicts.append(verdict)
            lines.append(f"- `{gn}`: the same difference {Estimate.of(fall.values()).text()}; its 90% CI "
                         f"{100 * equivalence.low:+.1f} to {100 * equivalence.high:+.1f} points against the "
                         f"equivalence margin of +-{100 * margin:.0f} point (two one-sided tests at 5%, margin "
                         f"fixed in advance): GN+WS is flat: {verdict}")
            beyond = Estimate.of([bn_fall[s] - fall[s] for s in sorted(set(bn_fall) & set(fall))])
            lines.append(f"- `{bn}`'s fall beyond `{gn}`'s (same seed; the part of BN's fall that normalizing "
                         f"without batch statistics does not share, not a test of H2): {beyond.text()}")
        if high != normal_batch and (bn, normal_batch) in cells:
            normal_epochs = next(iter(cells[bn, normal_batch].values())).get("epochs")
            for low in (high, smallest):
                step = {m: Estimate.of(_fall(cells, m, normal_batch, low).values()).text()
                        for m in (bn, bn + "_xbn", bn + "_brn", gn) if _fall(cells, m, normal_batch, low)}
                lines.append(f"- batch {normal_batch} ({normal_epochs} epochs) minus batch {low} ({epochs} epochs), "
                             "not a test of H2 (the batch and the epochs both change): "
                             + "; ".join(f"`{m}` {text}" for m, text in step.items()))
    return lines, verdicts


def _h3(rows, cells, normal_batch):
    """XBN non-inferior to BN at a normal batch (margin relative to BN's
    error); what precise BN recovers of BN's small-batch loss."""
    batches = sorted({r["batch_size"] for r in rows})
    lines, verdicts = [], []
    for bn in forms(rows, "bn"):
        xbn = bn + "_xbn"
        if (bn, normal_batch) not in cells or (xbn, normal_batch) not in cells:
            continue
        for key, what in (("top1_ema", "moving statistics as trained"), ("top1_precise_bn", "after precise BN")):
            diff = Estimate.of(paired(cells, (xbn, normal_batch), (bn, normal_batch), lambda r, k=key: _value(r, k)))
            # XBN's top-1 minus (BN's top-1 less the margin on BN's error),
            # per seed: above 0 when XBN is not worse by more than the margin.
            slack = Estimate.of(paired(
                cells, (xbn, normal_batch), (bn, normal_batch),
                lambda r, k=key: None if _value(r, k) is None else
                _value(r, k) - (RELATIVE_MARGIN * (1 - _value(r, k)) if r["norm"] == "bn" else 0.0)))
            verdict = slack.verdict(0.0)
            if key == "top1_ema":
                verdicts.append(verdict)
            err = Estimate.of([1 - _value(r, key) for r in cells[bn, normal_batch].values() if _value(r, key)])
            lines.append(f"- `{xbn}` minus `{bn}` at batch {normal_batch}, {what}: {diff.text()}; BN's error "
                         f"{100 * err.mean:.1f}%, so the margin ({100 * RELATIVE_MARGIN:.0f}% of BN's error) is "
                         f"{100 * RELATIVE_MARGIN * err.mean:.1f} points: XBN not worse by more: {verdict}")
        for batch in batches:
            if (bn, batch) in cells and batch != normal_batch:
                gain = Estimate.of([r["top1_precise_bn"] - r["top1_ema"]
                                    for r in cells[bn, batch].values() if not r.get("diverged")])
                loss = Estimate.of(paired(cells, (bn, normal_batch), (bn, batch), lambda r: _value(r, "top1_ema")))
                changed = [r.get("precise_bn_changed") for r in cells[bn, batch].values()
                           if r.get("precise_bn_changed") is not None]
                lines.append(f"- `{bn}` at batch {batch}: precise BN changes top-1 by {gain.text()} (it changed "
                             f"{', '.join(map(str, changed)) or '-'} test predictions per seed) against the "
                             f"{100 * loss.mean:+.1f} points batch {normal_batch} has over it")
    return lines, verdicts


def _h4(rows, cells, normal_batch):
    """XBN against BN of the same seed: per-corruption intervals, the mCE
    with and without the global-intensity corruptions, the other domain."""
    from xbn.diagnostics.corruptions import corruption_errors

    lines, verdicts = [], []
    for bn in forms(rows, "bn"):
        base = cells.get((bn, normal_batch), {})
        for other in (bn + "_xbn", bn + "_gnws"):
            runs = cells.get((other, normal_batch), {})
            seeds = sorted(s for s in set(base) & set(runs)
                           if runs[s].get("corruption") and base[s].get("corruption"))
            if seeds:
                names = list(runs[seeds[0]]["corruption"])
                subsets = (("all corruptions", names),
                           ("without " + ", ".join(GLOBAL_INTENSITY), [n for n in names if n not in GLOBAL_INTENSITY]))
                for label, subset in subsets:
                    mce = Estimate.of([corruption_errors(
                        {n: runs[s]["corruption"][n] for n in subset}, runs[s]["top1_ema"],
                        ({n: base[s]["corruption"][n] for n in subset}, base[s]["top1_ema"]))["mce"] for s in seeds])
                    if other.endswith("_xbn"):
                        verdicts.append(mce.verdict(1.0, above=False))
                    lines.append(f"- `{other}` against `{bn}` (same seed, batch {normal_batch}), {label}: mCE "
                                 f"{100 * mce.mean:.1f}% (95% CI {100 * mce.low:.1f} to {100 * mce.high:.1f}, "
                                 f"{mce.n} seeds): below 100%: {mce.verdict(1.0, above=False)}")
                if other.endswith("_xbn"):
                    better = []
                    for n in names:
                        d = Estimate.of([np.mean(list(runs[s]["corruption"][n].values()))
                                         - np.mean(list(base[s]["corruption"][n].values())) for s in seeds])
                        better.append(f"{n} {100 * d.mean:+.1f} ({100 * d.low:+.1f} to {100 * d.high:+.1f})")
                    lines.append(f"- `{other}` minus `{bn}`, top-1 per corruption (points, mean over severities, "
                                 "95% CI): " + "; ".join(better))
            shift = Estimate.of(paired(cells, (other, normal_batch), (bn, normal_batch),
                                       lambda r: _value(r, "shift_top1")))
            if shift.n:
                if other.endswith("_xbn"):
                    verdicts.append(shift.verdict(0.0))
                lines.append(f"- `{other}` minus `{bn}` on the other domain (the plain digits' test scans, "
                             f"batch {normal_batch}): {shift.text()}: more robust: {shift.verdict(0.0)}")
    return lines, verdicts


def _top1_by_epochs(rows, normal_batch):
    """``{model: {epochs: {seed: top1}}}`` of the normal batch's study runs
    and convergence runs, for the forms that have convergence runs."""
    checked = {r["model"] for r in rows if r.get("purpose") == "convergence"}
    out = {}
    for row in (*study_rows(rows), *(r for r in rows if r.get("purpose") == "convergence")):
        if (row["model"] in checked and row["batch_size"] == normal_batch and not row.get("diverged")
                and row.get("top1_ema") is not None):
            out.setdefault(row["model"], {}).setdefault(row["epochs"], {})[row["seed"]] = row["top1_ema"]
    return {model: dict(sorted(levels.items())) for model, levels in out.items() if len(levels) > 1}


def convergence(rows, normal_batch):
    """Per form, per step between consecutive epochs its reference and
    convergence runs trained for: ``{model: {(fewer, more): Estimate}}``,
    test top-1 with the more epochs minus with the fewer, paired by seed
    (``(40, 80)``: doubling the reference; ``(20, 40)``: into it from half;
    ``(80, 160)``: doubling once more)."""
    out = {}
    for model, levels in _top1_by_epochs(rows, normal_batch).items():
        epochs = list(levels)
        for fewer, more in zip(epochs, epochs[1:]):
            seeds = sorted(set(levels[fewer]) & set(levels[more]))
            if seeds:
                out.setdefault(model, {})[fewer, more] = Estimate.of(
                    [levels[more][s] - levels[fewer][s] for s in seeds])
    return out


def convergence_curves(rows, normal_batch):
    """Per form, its test top-1 at each epochs its reference and
    convergence runs trained for, over the seeds trained at all of them:
    ``{model: {epochs: Estimate}}`` (the curves of the convergence figure)."""
    out = {}
    for model, levels in _top1_by_epochs(rows, normal_batch).items():
        seeds = set.intersection(*(set(runs) for runs in levels.values()))
        if seeds:
            out[model] = {e: Estimate.of([runs[s] for s in sorted(seeds)]) for e, runs in levels.items()}
    return out


def _overall(verdicts):
    if not verdicts:
        return INCONCLUSIVE
    if all(v == REPLICATES for v in verdicts):
        return REPLICATES
    if all(v == FAILS for v in verdicts):
        return FAILS
    if any(v == REPLICATES for v in verdicts):
        return "replicates in part"
    return FAILS if FAILS in verdicts and INCONCLUSIVE not in verdicts else INCONCLUSIVE
