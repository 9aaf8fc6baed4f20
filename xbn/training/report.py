"""The end-of-run result table of ``xbn-train``, also printed by a rerun."""


def summary_table(metrics, root):
    """The final metrics as a small Markdown table, with where the outputs are.

    One row per distinct evaluation: the final split (test where the data
    has one, else val) with the moving-average BatchNorm statistics as
    trained, then, with precise BN, val and the final split after it.
    """
    split = metrics["final_split"]
    k = next(key for key in metrics[split] if key.startswith("top") and key != "top1")
    lines = [
        f"\nxbn-train: {metrics['model']} on {metrics['data']}, {metrics['epochs']} epochs, "
        f"{metrics['train_seconds']:.0f} s of training",
        "",
        f"| evaluation (inference mode) | examples | top-1 | {k.replace('top', 'top-')} | loss |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    moving = "moving-average BN statistics"
    rows = [(f"{split}, {moving}", metrics["moving_statistics"][split])]
    if "recalibration" in metrics:
        if split != "val":
            rows.append(("val, precise BN statistics", metrics["val"]))
        rows.append((f"{split}, precise BN statistics", metrics[split]))
    elif split != "val":
        rows.append((f"val, {moving}", metrics["val"]))
    for label, m in rows:
        lines.append(
            f"| {label} | {m['examples']} | {m['top1']:.2%} | {m[k]:.2%} | {m['loss']:.4f} |"
        )
    recalibration = metrics.get("recalibration")
    if recalibration and recalibration.get("unsettled"):
        lines.append("")
        lines.append(
            f"precise BN: {len(recalibration['unsettled'])} layer(s) not settled after "
            f"{recalibration['passes']} passes ({', '.join(recalibration['unsettled'][:4])}"
            f"{'...' if len(recalibration['unsettled']) > 4 else ''}); their statistics are the "
            "last measured."
        )
    lines.append("")
    lines.append(f"run folder: {root}  (model.keras: logits; metrics.json, history.csv, curves.png)")
    if metrics.get("export"):
        lines.append(f"SavedModel: {metrics['export']}  (probabilities, top-k labels and logits)")
    if metrics.get("export_error"):
        lines.append(f"export failed: {metrics['export_error']}")
    return "\n".join(lines)
