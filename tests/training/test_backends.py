"""Every command on every keras backend (issue 40): each console script's
--help, then xbn-train for one tiny epoch killed and resumed, xbn-evaluate
and the SavedModel export, with KERAS_BACKEND=jax and torch (TensorFlow runs
all of it in the rest of the suite); JAX's DataParallel over two host
devices; and what a backend cannot do, refused in one line."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny import TINY_TRAIN

SCRIPTS = ("train", "evaluate", "predict", "export", "shift", "study", "bench", "plot", "convert")
ROOT = Path(__file__).resolve().parents[2]


def _env(backend, **extra):
    return {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONUNBUFFERED": "1", **extra}


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_every_script_prints_its_help(backend):
    """keras' PyTorch backend loads triton (in torch's CUDA builds), which
    crashed the process when TensorFlow was loaded first: every command but
    one died with a segmentation fault before its help.  Each script's
    ``main`` runs here in one process per backend, TensorFlow loaded as the
    scripts load it, and keras' backend module is imported before it."""
    program = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module('xbn.cli.' + name).main(['--help'])\n"
        "    except SystemExit as done:\n"
        "        assert done.code == 0, (name, done.code)\n"
        "    print('help ok', name)\n"
        "order = list(sys.modules)\n"
        "if 'keras.src.backend.torch' in order:\n"
        "    assert order.index('keras.src.backend.torch') < order.index('tensorflow'), 'TensorFlow came first'\n"
        "print('order ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", program, *SCRIPTS], env=_env(backend), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("help ok") == len(SCRIPTS) and "order ok" in result.stdout


def _train(backend, out, *extra):
    command = [sys.executable, TINY_TRAIN, "--model", "tiny_xbn", "--epochs", "2", "--image-size", "32",
               "--batch-size", "8", "--steps-per-epoch", "80", "--recalibrate-bn", "2", "--out", str(out), *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_env(backend))


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_train_kill_resume_evaluate_and_export(backend, tmp_path):
    out = tmp_path / "run"
    process = _train(backend, out)
    output, deadline = "", time.time() + 600
    while "Epoch 2/2" not in output:
        line = process.stdout.readline()
        assert line or process.poll() is None, output[-3000:]
        output += line
        assert time.time() < deadline
    time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["epoch"] == 1
    resumed = _train(backend, out)
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output[-3000:]
    assert "resuming" in output and "after epoch 1 of 2" in output
    assert f"({backend}):" not in output  # resumed, not started
    run = json.loads((out / "run.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert run["backend"] == metrics["backend"] == backend and run["outputs"] == "logits"
    # The SavedModel, made by TensorFlow from the run's model.keras, checked against this backend's outputs.
    assert "against the tiny_xbn of this backend" in output and (out / "export" / "saved_model.pb").is_file()
    evaluated = subprocess.run(
        [sys.executable, "-m", "xbn.cli.evaluate", str(out), "--json", str(tmp_path / "scores.json")],
        env=_env(backend), capture_output=True, text=True, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["examples"] == metrics["test"]["examples"]
    assert abs(scores["top1"] - metrics["test"]["top1"]) < 1e-6  # the same model, the same test split


def test_jax_trains_data_parallel_over_two_devices(tmp_path):
    out = tmp_path / "run"
    env = _env("jax", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    result = subprocess.run(
        [sys.executable, TINY_TRAIN, "--model", "tiny_xbn", "--epochs", "1", "--image-size", "32", "--batch-size",
         "16", "--steps-per-epoch", "20", "--strategy", "mirrored", "--no-export", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 replica(s)" in result.stdout and json.loads((out / "metrics.json").read_text())["replicas"] == 2


@pytest.mark.parametrize("backend, argv, message", [
    ("torch", ["--strategy", "mirrored"], "--strategy mirrored needs several devices in one process"),
    ("jax", ["--strategy", "multiworker"], "--strategy multiworker is TensorFlow's MultiWorkerMirroredStrategy"),
    ("torch", ["--sync-bn"], "--sync-bn synchronizes BatchNorm across replicas; keras' PyTorch backend trains on"),
])
def test_what_a_backend_cannot_do_is_refused_before_any_work(backend, argv, message, tmp_path):
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, TINY_TRAIN, "--model", "tiny_xbn", "--out", str(out), *argv],
                            env=_env(backend), capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().count("\n") == 0 and not out.exists()
