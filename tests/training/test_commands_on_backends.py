"""Every command on every keras backend (issue 40): each console script's
--help, then xbn-train for one tiny epoch stopped and resumed, xbn-evaluate
and the SavedModel export, with KERAS_BACKEND=jax and torch (TensorFlow runs
all of it in the rest of the suite, kill -9 included); JAX's DataParallel
over two host devices; and what a backend cannot do, refused in one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = ("train", "evaluate", "predict", "export", "shift", "study", "bench", "plot", "convert")


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


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_train_resume_evaluate_and_export(backend, tmp_path):
    """xbn-train stopped dead in epoch 2 (as kill -9 leaves a run: the
    checkpoint of epoch 1, no results), resumed by the same call, scored by
    xbn-evaluate, and exported: by TensorFlow from model.keras, checked
    against this backend's own outputs (``backend_run.py``, one process).
    On JAX over two host devices with keras' DataParallel (``--strategy
    mirrored``), whose evaluation pads a last batch the devices do not divide."""
    out = tmp_path / "run"
    env = _env(backend, XLA_FLAGS="--xla_force_host_platform_device_count=2") if backend == "jax" else _env(backend)
    extra = {"strategy": "mirrored"} if backend == "jax" else {}
    result = subprocess.run([sys.executable, str(Path(__file__).with_name("backend_run.py")), str(out),
                             json.dumps(extra)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    said = json.loads(result.stdout.strip().splitlines()[-1])
    assert said["checkpointed"] == 1
    log = "\n".join(said["lines"])
    assert "resuming" in log and "after epoch 1 of 2" in log and f"({backend}):" not in log  # resumed, not started
    run, metrics = json.loads((out / "run.json").read_text()), said["metrics"]
    assert run["backend"] == metrics["backend"] == backend and run["outputs"] == "logits"
    assert "against the tiny_xbn of this backend" in log and (out / "export" / "saved_model.pb").is_file()
    assert said["evaluate"] == 0 and said["scores"]["examples"] == metrics["test"]["examples"]
    assert abs(said["scores"]["top1"] - metrics["test"]["top1"]) < 1e-6  # the same model, the same test split
    assert metrics["replicas"] == (2 if backend == "jax" else 1)


REFUSED = {
    "torch": [(["--strategy", "mirrored"], "--strategy mirrored needs several devices in one process"),
              (["--sync-bn"], "--sync-bn synchronizes BatchNorm across replicas; keras' PyTorch backend trains on")],
    "jax": [(["--strategy", "multiworker"], "--strategy multiworker is TensorFlow's MultiWorkerMirroredStrategy")],
}


@pytest.mark.parametrize("backend", sorted(REFUSED))
def test_what_a_backend_cannot_do_is_refused_before_any_work(backend, tmp_path):
    program = (
        "import contextlib, io, json, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "import tiny\n"
        "tiny.register()\n"
        "from xbn.cli import train\n"
        "said = []\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err):\n"
        "        code = train.main(['--model', 'tiny_xbn', *argv])\n"
        "    said.append([code, err.getvalue()])\n"
        "print(json.dumps(said))\n"
    )
    cases = REFUSED[backend]
    argvs = [[*argv, "--out", str(tmp_path / f"run{i}")] for i, (argv, _) in enumerate(cases)]
    result = subprocess.run([sys.executable, "-c", program, json.dumps(argvs)], env=_env(backend),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for (code, err), (_, message), argv in zip(json.loads(result.stdout.strip().splitlines()[-1]), cases, argvs):
        assert code == 2 and message in err and err.count("\n") == 1, err
        assert not Path(argv[-1]).exists()
