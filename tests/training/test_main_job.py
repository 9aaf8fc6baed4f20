"""The main job: `xbn-train` with no arguments on a fresh machine."""

import json
import os
import subprocess
import sys
from pathlib import Path


def test_xbn_train_with_no_arguments_reaches_95_percent_in_inference_mode(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "xbn.cli.train", "--quiet"], cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True, text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run = tmp_path / "runs" / "mobilenetv2_xbn-digits"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["final_split"] == "test" and metrics["test"]["examples"] == 359
    assert metrics["test"]["top1"] >= 0.95
    # The printed summary is the result table.
    assert "| test, precise BN statistics | 359 |" in result.stdout
    # It ends with a folded SavedModel that scores what the model scored.
    from xbn.export.use import evaluate_export

    exported = evaluate_export(run / "export", "digits")
    assert abs(exported["top1"] - metrics["test"]["top1"]) * 359 <= 1
    assert metrics["export"] == str(Path("runs") / "mobilenetv2_xbn-digits" / "export")
