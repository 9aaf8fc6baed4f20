"""xbn-train's execution options each train a small model to finite results."""

import json

import numpy as np
import pytest

import datasets
from conftest import LOGICAL_CPUS
from tiny import tiny_zoo  # noqa: F401  (fixture)
from xbn.layers import BatchNorm
from xbn.training import TrainConfig, train

pytestmark = pytest.mark.usefixtures("tiny_zoo")

ONE_EPOCH = dict(
    image_size=32, batch_size=32, epochs=1, warmup_epochs=0.0, recalibrate_bn=1,
    export=False, verbose=False,
)


def _check(metrics):
    for split in ("val", "test"):
        assert np.isfinite(metrics[split]["loss"])
        assert metrics[split]["top1"] > 0.1  # better than chance after one epoch


def test_two_replicas_with_synchronized_bn(tmp_path, monkeypatch):
    assert len(LOGICAL_CPUS) == 2
    built = []
    original = BatchNorm.build

    def spy(self, shape):
        built.append(self)
        return original(self, shape)

    monkeypatch.setattr(BatchNorm, "build", spy)
    metrics = train(TrainConfig(out=str(tmp_path / "m"), strategy="mirrored", sync_bn=True, **ONE_EPOCH))
    assert metrics["replicas"] == 2
    assert built and all(layer.synchronized for layer in built)
    _check(metrics)


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_mixed_precision(tmp_path, precision):
    import keras

    metrics = train(TrainConfig(out=str(tmp_path / precision), mixed_precision=precision, **ONE_EPOCH))
    _check(metrics)
    assert keras.config.dtype_policy().name == "float32"  # restored afterwards
    model = keras.saving.load_model(tmp_path / precision / "model.keras")
    assert model.get_layer("stem").dtype_policy.name == f"mixed_{precision}"


def test_jit_compile(tmp_path):
    _check(train(TrainConfig(out=str(tmp_path / "xla"), jit_compile=True, **ONE_EPOCH)))


def test_jit_compile_with_several_replicas_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--jit-compile runs one replica per worker; this strategy has 2"):
        train(TrainConfig(out=str(tmp_path / "x"), jit_compile=True, strategy="mirrored", **ONE_EPOCH))
    assert not (tmp_path / "x" / "checkpoints").exists()


def test_adamw_on_a_folder_of_real_images_with_bad_files_skipped(tmp_path):
    root = tmp_path / "data"
    datasets.write_folder(root, per_class=20, classes=(0, 1, 2), size=40)
    (root / "digit_0" / "broken.jpg").write_bytes(b"not a jpeg")
    config = TrainConfig(
        out=str(tmp_path / "run"), data=f"folder:{root}", val_split=0.2, skip_bad_images=True,
        optimizer="adamw", batch_size=16, **{k: v for k, v in ONE_EPOCH.items() if k != "batch_size"},
    )
    lines = []
    metrics = train(config, log=lines.append)
    assert metrics["final_split"] == "val" and metrics["val"]["examples"] == 12
    assert any("skipped 1 unreadable image" in line for line in lines)
    assert any("broken.jpg" in line for line in lines)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["class_names"] == ["digit_0", "digit_1", "digit_2"]
