"""Writing ``xbn-bench`` results: a JSON document and a Markdown table."""

import json

from xbn import _files


def goal_met(row):
    """True/False against the row's goal, None where it has none."""
    if row.get("goal") is None or row.get("speedup") is None:
        return None
    return row["speedup"] >= row["goal"]


def _number(value):
    if value is None:
        return "-"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"


def to_markdown(result):
    """The rows as a Markdown table, headed by the machine and the command."""
    m = result["machine"]
    lines = [
        f"Measured {result['date']} on {m['device']} ({m['cpu']}, {m['cpu_count']} cores), "
        f"TensorFlow {m['tensorflow']}, Keras {m['keras']}; median of {result['repeats']} "
        "repeats after warm-up.",
        "",
        f"Command: `{result['command']}`",
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


def write(result, json_path=None, markdown_path=None, readme=None, section="bench"):
    """Write the JSON and/or Markdown files, and/or a README section."""
    if json_path:
        _files.atomic_write_text(json_path, json.dumps(result, indent=2) + "\n")
    table = to_markdown(result)
    if markdown_path:
        _files.atomic_write_text(markdown_path, table)
    if readme:
        _files.replace_section(readme, section, table)
    return table
