"""kill -9 in the middle of an epoch, run the same command: training resumes
from the last finished epoch, optimizer state included, and ends where an
uninterrupted run ends."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
from tiny import TINY_TRAIN

BATCH = 8  # 157 steps an epoch: the kill below lands well inside epoch 2
COMMAND = [
    "--model", "tiny_xbn", "--epochs", "3", "--image-size", "32", "--batch-size", str(BATCH), "--warmup-epochs", "0.5",
    "--recalibrate-bn", "2", "--no-export",
]


def _start(out):
    return subprocess.Popen(
        [sys.executable, TINY_TRAIN, "--out", str(out), *COMMAND],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"},
    )


def _finish(process, timeout=600):
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-3000:]
    return output


def _iterations(out):
    latest = json.loads((out / "checkpoints" / "latest.json").read_text())
    with np.load(out / "checkpoints" / latest["path"] / "optimizer.npz") as arrays:
        return int(arrays["v00000"])  # the optimizer's step counter comes first


def test_kill_9_mid_epoch_then_resume(tmp_path):
    resumed = tmp_path / "resumed"
    process = _start(resumed)
    # Wait until epoch 2 is under way (epoch 1's checkpoint is complete).
    output = ""
    deadline = time.time() + 600
    while "Epoch 2/3" not in output:
        line = process.stdout.readline()
        assert line or process.poll() is None, output
        output += line
        assert time.time() < deadline
    time.sleep(0.3)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    checkpointed = json.loads((resumed / "checkpoints" / "latest.json").read_text())["epoch"]
    assert checkpointed == 1, "the kill should land in epoch 2"
    assert not (resumed / "metrics.json").exists()

    output = _finish(_start(resumed))
    assert "resuming" in output and "after epoch 1 of 3" in output
    assert "Epoch 1/3" not in output and "Epoch 3/3" in output
    metrics = json.loads((resumed / "metrics.json").read_text())
    history = (resumed / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["1", "2", "3"]
    steps = 1258 // BATCH
    assert _iterations(resumed) == 3 * steps  # the optimizer state came back

    # The same command never interrupted ends with the same weights.
    straight = tmp_path / "straight"
    _finish(_start(straight))
    reference = json.loads((straight / "metrics.json").read_text())
    assert metrics["weights_digest"] == reference["weights_digest"]
    assert metrics["test"] == reference["test"]
