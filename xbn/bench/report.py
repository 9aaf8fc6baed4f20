"""Writing ``xbn-bench`` results: a JSON document, a Markdown table, and the
published figures over every machine measured.

Speed depends on the machine (the same ResNet-50 step ran 2.4x faster on one
2-core CPU than on another), so a published speed-up is never one number:
each machine's run is kept as its own record (``models/bench/<machine>.json``,
the newest run per machine), and the README section generated from them
quotes every speed-up as the range over the machines measured, with each
machine's full table below.
"""

import json
import re
from pathlib import Path

from xbn import _files

RECORDS = "bench"  # the records' folder, beside the README they are published in


def goal_met(row):
    """True/False against the row's goal, None where it has none."""
    if row.get("goal") is None or row.get("speedup") is None:
        return None
    return row["speedup"] >= row["goal"]


def _number(value):
    if value is None:
        return "-"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"


def backend_of(result):
    """The keras backend a result was measured on (records from before
    ``--backend`` are TensorFlow's)."""
    return result["machine"].get("backend", "tensorflow")


BACKEND_NAMES = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}


def machine_label(result):
    """The device and CPU a result was measured on, in words."""
    m = result["machine"]
    cpu = m.get("cpu_label") or f"{m['cpu']} (vector extensions not recorded), {m['cpu_count']} cores"
    return cpu if m["device"] == "CPU" else f"{m['device']} with {cpu}"


def software(result):
    """``"TensorFlow 2.21.0, Keras 3.15.1"``: the backend's framework and keras."""
    m = result["machine"]
    backend = backend_of(result)
    version = m.get(backend) or m.get("tensorflow")
    return f"{BACKEND_NAMES[backend]} {version}, Keras {m['keras']}"


def machine_slug(result):
    """A file name for a machine's record: ``amd-epyc-f26-m2-avx512-bf16-2c``
    (TensorFlow), ``jax-nvidia-h200-...`` (other backends)."""
    m = result["machine"]
    info = m.get("cpu_info") or {}
    backend = backend_of(result)
    parts = [backend if backend != "tensorflow" else "", m["device"] if m["device"] != "CPU" else "", m["cpu"]]
    if info.get("family"):
        parts.append(f"f{info['family']}-m{info.get('model_number', '')}")
    extensions = info.get("extensions")
    if extensions:
        wide = [e for e in extensions if e.startswith(("AVX-512", "AMX"))] or extensions[-1:]
        parts.append("-".join(e.replace("AVX-512-", "").replace("AVX-512", "avx512") for e in wide))
    parts.append(f"{m['cpu_count']}c")
    slug = re.sub(r"[^a-z0-9]+", "-", "-".join(p for p in parts if p).lower()).strip("-")
    return slug


def to_markdown(result):
    """The rows as a Markdown table, headed by the machine and the command."""
    m = result["machine"]
    commit = f", xbn {m['xbn']} at {m['commit']}" if m.get("commit") else ""
    lines = [
        f"Measured {result['date']} on {machine_label(result)}, {software(result)}"
        f"{commit}; median of {result['repeats']} repeats after warm-up.",
        "",
        f"Command: `{result['command']}`",
    ]
    if result.get("note"):
        lines += ["", result["note"]]
    lines += [
        "",
        "| suite | case | unit | xbn | baseline | speed-up | goal | peak MB (xbn / baseline) |",
        "| --- | --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for row in result["rows"]:
        met = goal_met(row)
        goal = "-" if met is None else f"{row['goal']:.2f}x {'met' if met else '**missed**'}"
        peak = row.get("peak_mb") or {}
        peaks = " / ".join(_number(v) for v in peak.values()) if peak else "-"
        baseline = f"{_number(row['baseline'])} ({row['baseline_name']})"
        lines.append(
            f"| {row['suite']} | {row['case']} | {row['unit']} | {_number(row['xbn'])} | "
            f"{baseline} | {_number(row['speedup'])}x | {goal} | {peaks} |"
        )
    return "\n".join(lines) + "\n"


def load_records(folder):
    """Every machine's record in ``folder``, oldest first."""
    records = [json.loads(path.read_text()) for path in sorted(Path(folder).glob("*.json"))]
    return sorted(records, key=lambda r: r["date"])


def _group(record):
    """The heading a record is published under: its backend and device."""
    device = record["machine"]["device"]
    return f"{BACKEND_NAMES[backend_of(record)]} on {'a CPU' if device == 'CPU' else device}"


def summary(records):
    """Per backend and device: one row per case, the speed-up's range over
    the machines that measured it, then each machine's table."""
    groups = {}
    for record in records:
        groups.setdefault(_group(record), []).append(record)
    lines = [
        f"Speed-ups over the {len(records)} record(s) measured, by keras backend and device (each "
        "machine's table below its group); a goal is met on a machine when its speed-up reaches it.",
    ]
    for heading, members in groups.items():
        lines += ["", f"### {heading}", "", *_range_table(members)]
        for record in members:
            lines += ["", f"#### {machine_label(record)}", "", to_markdown(record).rstrip()]
    return "\n".join(lines) + "\n"


def _range_table(records):
    cases = {}
    for record in records:
        for row in record["rows"]:
            cases.setdefault(row["case"], []).append((record, row))
    lines = [
        "| suite | case | speed-up (min - max) | machines | goal | goal met on |",
        "| --- | --- | ---: | ---: | --- | --- |",
    ]
    for case, measured in cases.items():
        speedups = [row["speedup"] for _, row in measured]
        low, high = min(speedups), max(speedups)
        spread = f"{_number(low)}x" if len(speedups) == 1 else f"{_number(low)}x - {_number(high)}x"
        goal = measured[-1][1].get("goal")
        verdicts = [goal_met({**row, "goal": goal}) for _, row in measured]
        met = "-" if goal is None else f"{sum(bool(v) for v in verdicts)} of {len(verdicts)}"
        goal_text = "-" if goal is None else f"{goal:.2f}x"
        lines.append(f"| {measured[-1][1]['suite']} | {case} | {spread} | {len(measured)} | {goal_text} | {met} |")
    return lines


def write(result, json_path=None, markdown_path=None, readme=None, section="bench"):
    """Write the JSON and/or Markdown files, and/or publish into a README.

    With ``readme``, the result becomes this machine's record in
    ``<readme folder>/bench/<machine>.json`` (in the README's own folder
    where that is a ``bench`` folder: ``models/bench/README.md``), replacing
    that machine's previous one, and the README's generated section is
    rebuilt from every record there.  Returns this run's Markdown table.
    """
    if json_path:
        _files.atomic_write_text(json_path, json.dumps(result, indent=2) + "\n")
    table = to_markdown(result)
    if markdown_path:
        _files.atomic_write_text(markdown_path, table)
    if readme:
        folder = Path(readme).parent
        folder = folder if folder.name == RECORDS else folder / RECORDS
        _files.atomic_write_text(folder / f"{machine_slug(result)}.json", json.dumps(result, indent=2) + "\n")
        _files.replace_section(readme, section, summary(load_records(folder)))
    return table
