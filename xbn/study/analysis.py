"""The hypotheses H1-H4, tested on the study's rows with confidence intervals.

Every comparison is **paired by seed**: two forms trained with the same seed
share their initialization draw, data order and augmentation, so their
difference is free of that variation.  A 95% confidence interval of a mean
over ``n`` seeds is ``mean +- t(0.975, n - 1) * sd / sqrt(n)`` (Student's
t; with 3 seeds t is 4.30, so intervals are wide and say so).

Verdicts, decided by the interval and nothing else:

- **replicates**: the interval lies on the claim's side of its threshold;
- **does not replicate**: it lies entirely on the other side;
- **inconclusive**: it straddles the threshold.
"""

import dataclasses
import math

import numpy as np

REPLICATES, FAILS, INCONCLUSIVE = "replicates", "does not replicate", "inconclusive"
# H3's non-inferiority margin: XBN counts as "at least as accurate" as BN if
# it is not worse by more than this (1 point: about 4 of the 359 test digits).
NON_INFERIORITY = 0.01


@dataclasses.dataclass
class Estimate:
    """A mean over seeds with its spread and 95% confidence interval."""

    mean: float
    sd: float
    n: int
    low: float
    high: float

    @classmethod
    def of(cls, values):
        values = np.asarray([v for v in values if v is not None and not math.isnan(v)], np.float64)
        n = len(values)
        if n == 0:
            return cls(math.nan, math.nan, 0, math.nan, math.nan)
        mean = float(values.mean())
        if n == 1:
            return cls(mean, math.nan, 1, math.nan, math.nan)
        from scipy import stats

        sd = float(values.std(ddof=1))
        half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
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


def accumulation_factor(row, key="mean_shift"):
    """``key`` (mean or variance shift) of the last third of a run's BN layers
    (in depth order) averaged, over the same of the first third."""
    shifts = [layer[key] for layer in sorted(row["layer_shifts"], key=lambda la: la["depth"])]
    if len(shifts) < 3:
        return None
    third = len(shifts) // 3
    first = float(np.mean(shifts[:third]))
    return float(np.mean(shifts[-third:])) / first if first > 0 else None


def _log_factor(row, key="mean_shift"):
    factor = accumulation_factor(row, key)
    return math.log(factor) if factor else None


def _value(row, key):
    return None if row.get("diverged") else row.get(key)


def hypotheses(rows, normal_batch):
    """H1-H4: a list of dicts ``{"id", "claim", "verdict", "lines"}`` (Markdown lines)."""
    cells = by_cell(rows)
    tests = ((_h1, "H1", "estimation shift accumulates with depth in a BN network; XBN blocks it"),
             (_h2, "H2", "BN's accuracy falls as the batch shrinks; GN+WS stays flat"),
             (_h3, "H3", "at a normal batch XBN is at least as accurate as BN"),
             (_h4, "H4", "XBN is more robust to distribution shift, here common corruptions"))
    results = []
    for test, name, claim in tests:
        lines, verdicts = test(rows, cells, normal_batch)
        results.append({"id": name, "claim": claim, "verdict": _overall(verdicts), "lines": lines})
    return results


def _h1(rows, cells, normal_batch):
    """Accumulation with depth in BN networks; XBN blocks it."""
    lines, verdicts = [], []
    for bn in forms(rows, "bn"):
        xbn = bn + "_xbn" if any(r["model"] == bn + "_xbn" for r in rows) else None
        for batch in sorted({b for (m, b) in cells if m == bn}):
            factor = Estimate.of([accumulation_factor(r) for r in cells[bn, batch].values()])
            grows = Estimate.of([_log_factor(r) for r in cells[bn, batch].values()])
            var_factor = Estimate.of([accumulation_factor(r, "var_shift") for r in cells[bn, batch].values()])
            var_grows = Estimate.of([_log_factor(r, "var_shift") for r in cells[bn, batch].values()])
            verdicts += [grows.verdict(0.0), var_grows.verdict(0.0)]
            line = (f"- `{bn}` at batch {batch}: accumulation factor of the mean shift {factor.mean:.2f} "
                    f"(sd {factor.sd:.2f}, {factor.n} seeds; log-factor 95% CI {grows.low:+.2f} to "
                    f"{grows.high:+.2f}): it grows with depth: {grows.verdict(0.0)}; of the variance shift "
                    f"{var_factor.mean:.2f} (sd {var_factor.sd:.2f}; log-factor 95% CI {var_grows.low:+.2f} to "
                    f"{var_grows.high:+.2f}): {var_grows.verdict(0.0)}")
            if xbn and (xbn, batch) in cells:
                other = Estimate.of([accumulation_factor(r) for r in cells[xbn, batch].values()])
                blocked = Estimate.of(paired(cells, (bn, batch), (xbn, batch), _log_factor))
                lower = Estimate.of(paired(cells, (bn, batch), (xbn, batch), lambda r: _value(r, "mean_shift")))
                verdicts.append(blocked.verdict(0.0))
                line += (f"; `{xbn}`: factor {other.mean:.2f} (sd {other.sd:.2f}); BN's log-factor minus XBN's "
                         f"{blocked.text(1.0, '', 2)}: XBN accumulates less: {blocked.verdict(0.0)}; BN's average "
                         f"mean shift minus XBN's {lower.text(1.0, '', 3)}")
            lines.append(line)
    return lines, verdicts


def _fall(cells, model, high, low):
    """``{seed: top-1 at batch high - top-1 at batch low}`` of ``model``."""
    first, second = cells.get((model, high), {}), cells.get((model, low), {})
    return {s: _value(first[s], "top1_ema") - _value(second[s], "top1_ema") for s in sorted(set(first) & set(second))
            if _value(first[s], "top1_ema") is not None and _value(second[s], "top1_ema") is not None}


def _h2(rows, cells, normal_batch):
    """BN's accuracy falls as the batch shrinks; GN+WS stays flat."""
    smallest = min(r["batch_size"] for r in rows)
    lines, verdicts = [], []
    for bn in forms(rows, "bn"):
        gn = bn + "_gnws"
        if (bn, smallest) not in cells or (bn, normal_batch) not in cells:
            continue
        bn_fall = _fall(cells, bn, normal_batch, smallest)
        drop = Estimate.of(bn_fall.values())
        verdicts.append(drop.verdict(0.0))
        lines.append(f"- `{bn}`: top-1 at batch {normal_batch} minus at batch {smallest}: {drop.text()}: "
                     f"BN falls with the batch: {drop.verdict(0.0)}")
        gn_fall = _fall(cells, gn, normal_batch, smallest)
        if gn_fall:
            lines.append(f"- `{gn}`: the same difference {Estimate.of(gn_fall.values()).text()}")
            extra = Estimate.of([bn_fall[s] - gn_fall[s] for s in sorted(set(bn_fall) & set(gn_fall))])
            verdicts.append(extra.verdict(0.0))
            lines.append(f"- BN's fall minus GN+WS's: {extra.text()}: GN+WS flatter than BN: {extra.verdict(0.0)}")
    return lines, verdicts


def _h3(rows, cells, normal_batch):
    """XBN at least as accurate as BN at a normal batch; precise BN's share of BN's small-batch loss."""
    batches = sorted({r["batch_size"] for r in rows})
    lines, verdicts = [], []
    for bn in forms(rows, "bn"):
        xbn = bn + "_xbn"
        if (bn, normal_batch) not in cells or (xbn, normal_batch) not in cells:
            continue
        for key, what in (("top1_ema", "moving statistics as trained"), ("top1_precise_bn", "after precise BN")):
            diff = Estimate.of(paired(cells, (xbn, normal_batch), (bn, normal_batch), lambda r: _value(r, key)))
            verdict = diff.verdict(-NON_INFERIORITY)
            if key == "top1_ema":
                verdicts.append(verdict)
            lines.append(f"- `{xbn}` minus `{bn}` at batch {normal_batch}, {what}: {diff.text()}: "
                         f"not worse by more than {100 * NON_INFERIORITY:.0f} point: {verdict}")
        for batch in batches:
            if (bn, batch) in cells:
                gain = Estimate.of([r["top1_precise_bn"] - r["top1_ema"]
                                    for r in cells[bn, batch].values() if not r.get("diverged")])
                loss = Estimate.of(paired(cells, (bn, normal_batch), (bn, batch), lambda r: _value(r, "top1_ema")))
                if batch != normal_batch:
                    lines.append(f"- `{bn}` at batch {batch}: precise BN recovers {gain.text()} of the "
                                 f"{100 * loss.mean:.1f} points lost against batch {normal_batch}")
                else:
                    lines.append(f"- `{bn}` at batch {batch}: precise BN changes top-1 by {gain.text()}")
    return lines, verdicts


def _h4(rows, cells, normal_batch):
    """XBN more robust to corruptions (mCE against the vanilla network of the same seed)."""
    from xbn.diagnostics.corruptions import corruption_errors

    lines, verdicts = [], []
    for bn in forms(rows, "bn"):
        base = cells.get((bn, normal_batch), {})
        if not any(r.get("corruption") for r in base.values()):
            continue
        for other in (bn + "_xbn", bn + "_gnws"):
            runs = cells.get((other, normal_batch), {})
            mce, rel, err = [], [], []
            for seed, row in runs.items():
                if seed in base and row.get("corruption") and base[seed].get("corruption"):
                    figures = corruption_errors(row["corruption"], row["top1_ema"],
                                                (base[seed]["corruption"], base[seed]["top1_ema"]))
                    mce.append(figures["mce"])
                    rel.append(figures["relative_mce"])
                    err.append(figures["mean_error"])
            if not mce:
                continue
            ce = Estimate.of(mce)
            relative = Estimate.of(rel)
            if other.endswith("_xbn"):
                verdicts.append(ce.verdict(1.0, above=False))
            lines.append(
                f"- `{other}` against `{bn}` (same seed, batch {normal_batch}): mCE {100 * ce.mean:.1f}% "
                f"(sd {100 * ce.sd:.1f}, 95% CI {100 * ce.low:.1f} to {100 * ce.high:.1f}), relative mCE "
                f"{100 * relative.mean:.1f}% (95% CI {100 * relative.low:.1f} to {100 * relative.high:.1f}); "
                f"mCE below 100%: {ce.verdict(1.0, above=False)}")
    return lines, verdicts


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
