"""xbn-train's execution options each train the tiny network to where it has learnt."""

import json

import datasets
import keras
import numpy as np
import pytest
from conftest import LOGICAL_CPUS
from tiny import tiny_zoo  # noqa: F401  (fixture)

from xbn.data import Augment, Pipeline, load_source
from xbn.training import TrainConfig, train

pytestmark = pytest.mark.usefixtures("tiny_zoo")

# Two epochs at a brisk rate: the tiny network reaches 40-50% test top-1 on
# the digits (chance, and always answering the largest class: 10%).
TRAINED = dict(
    model="tiny_xbn", model_args={}, image_size=32, batch_size=32, epochs=2, lr=0.3,
    warmup_epochs=0.0, recalibrate_bn=1, export=False, verbose=False,
)


def _check_learnt(metrics, chance=0.1):
    for split in ("val", "test"):
        assert np.isfinite(metrics[split]["loss"])
        assert metrics[split]["top1"] >= 3 * chance, (split, metrics[split])
        assert metrics[split]["loss"] < 0.9 * np.log(1 / chance), (split, metrics[split])


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_mixed_precision(tmp_path, precision):
    metrics = train(TrainConfig(out=str(tmp_path / precision), mixed_precision=precision, **TRAINED))
    _check_learnt(metrics)
    assert keras.config.dtype_policy().name == "float32"  # restored afterwards
    model = keras.saving.load_model(tmp_path / precision / "model.keras")
    assert model.get_layer("stem").dtype_policy.name == f"mixed_{precision}"


def test_jit_compile(tmp_path):
    _check_learnt(train(TrainConfig(out=str(tmp_path / "xla"), jit_compile=True, **TRAINED)))


def test_two_replicas(tmp_path):
    metrics = train(TrainConfig(out=str(tmp_path / "m"), strategy="mirrored", **TRAINED))
    assert metrics["replicas"] == 2
    _check_learnt(metrics)


@pytest.mark.parametrize("sync_bn", [True, False], ids=["synchronized", "per-replica"])
def test_sync_bn_reduces_the_statistics_over_both_replicas(tmp_path, sync_bn):
    """One step on two replicas with BN momentum 0: stem_bn's moving
    variance is the variance of its input over the global batch with
    --sync-bn, and the average of the two halves' variances without
    (they differ by the spread between the halves' means)."""
    assert len(LOGICAL_CPUS) == 2
    batch = 8  # 4 images a replica: the halves' statistics differ clearly
    config = TrainConfig(
        out=str(tmp_path / "run"), strategy="mirrored", sync_bn=sync_bn, bn_momentum=0.0,
        steps_per_epoch=1, **{**TRAINED, "epochs": 1, "recalibrate_bn": 0, "batch_size": batch},
    )
    train(config)
    trained = keras.saving.load_model(tmp_path / "run" / "model.keras")
    # The global batch of that step, and the stem as it was before the step.
    pipeline = Pipeline(
        load_source("digits"), 32, "tf", batch, seed=0, cache=True,
        augment=Augment(crop_scale=config.crop_scale, flip=config.flip, eval_crop=config.eval_crop),
    )
    images, _ = next(iter(pipeline.train(0)))
    keras.utils.set_random_seed(config.seed)
    from xbn.models import get_model

    initial = get_model("tiny_xbn", input_shape=(32, 32, 3), classes=10, classifier_activation=None)
    stem = np.asarray(initial.get_layer("stem")(images), np.float64).reshape(batch, -1, 16)
    whole = stem.reshape(-1, 16).var(axis=0)
    half = batch // 2
    halves = (stem[:half].reshape(-1, 16).var(axis=0) + stem[half:].reshape(-1, 16).var(axis=0)) / 2
    rtol = 1e-4
    # The two can be told apart: they differ by 20x the tolerance or more.
    assert np.abs(whole - halves).max() > 20 * rtol * whole.max()
    stored = trained.get_layer("stem_bn").moving_variance.numpy()
    np.testing.assert_allclose(stored, whole if sync_bn else halves, rtol=rtol)


def test_jit_compile_with_several_replicas_is_refused(tmp_path):
    with pytest.raises(ValueError, match="`jit_compile` runs one replica per worker; this strategy has 2"):
        train(TrainConfig(out=str(tmp_path / "x"), jit_compile=True, strategy="mirrored", **TRAINED))
    assert not (tmp_path / "x" / "checkpoints").exists()


def test_adamw_on_a_folder_of_real_images_with_bad_files_skipped(tmp_path):
    root = tmp_path / "data"
    datasets.write_folder(root, per_class=20, classes=(0, 1, 2), size=40)
    (root / "digit_0" / "broken.jpg").write_bytes(b"not a jpeg")
    config = TrainConfig(
        out=str(tmp_path / "run"), data=f"folder:{root}", val_split=0.2, skip_bad_images=True,
        optimizer="adamw", crop_scale=(0.6, 1.0), flip=False, eval_crop=1.0,  # digit scans, not photos
        **{**TRAINED, "batch_size": 8, "epochs": 6, "lr": 3e-2},
    )
    lines = []
    metrics = train(config, log=lines.append)
    assert metrics["final_split"] == "val" and metrics["val"]["examples"] == 12
    # Learnt: chance is 1/3 and a loss of ln 3.
    assert metrics["val"]["top1"] >= 0.5 and metrics["val"]["loss"] < 0.9 * np.log(3), metrics["val"]
    assert any("skipped 1 unreadable image" in line for line in lines)
    assert any("broken.jpg" in line for line in lines)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["class_names"] == ["digit_0", "digit_1", "digit_2"]
