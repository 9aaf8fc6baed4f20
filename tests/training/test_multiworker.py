"""Multi-worker training (Keras 3.15's model.fit fails under
MultiWorkerMirroredStrategy, keras issue 20585; xbn's own loop does not):
two worker processes on 127.0.0.1 train a few steps and end with identical
weights."""

import json
import os
import socket
import subprocess
import sys

from tiny import TINY_TRAIN


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_end_with_identical_weights(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    out = tmp_path / "run"
    command = [
        sys.executable, TINY_TRAIN, "--model", "tiny_xbn", "--strategy", "multiworker", "--out", str(out),
        "--epochs", "2", "--steps-per-epoch", "4", "--image-size", "32", "--batch-size", "32",
        "--warmup-epochs", "0.5", "--no-export", "--quiet",  # precise BN at its default: 20 batches
    ]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(config), "TF_CPP_MIN_LOG_LEVEL": "3"}
        processes.append(subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ))
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    for p, output in zip(processes, outputs):
        assert p.returncode == 0, output[-3000:]
    chief = json.loads((out / "metrics.json").read_text())
    other = json.loads((out / ".worker-1" / "metrics.json").read_text())
    assert chief["replicas"] == other["replicas"] == 2
    assert chief["weights_digest"] == other["weights_digest"]
    assert chief["test"] == other["test"]
    # Precise BN pooled both workers' statistics, once a pass, to the same numbers.
    assert chief["recalibration"] == other["recalibration"]
    assert chief["recalibration"]["batches"] == 20 and chief["recalibration"]["examples"] == 20 * 32
    # Only the chief writes the run folder.
    assert (out / "model.keras").exists() and not (out / ".worker-1" / "model.keras").exists()
    assert "xbn-train: tiny_xbn on digits" in outputs[0]
    assert "xbn-train:" not in outputs[1]
