"""xbn-train from trained weights (issue 39): --weights, --freeze,
--freeze-epochs and --calibrate, checked on the tiny family against the
weights they start from."""

import json

import datasets
import keras
import numpy as np
import pytest
from tiny import tiny_zoo  # noqa: F401  (fixture)

from xbn.models.weights import read_weights
from xbn.training import TrainConfig, train

pytestmark = pytest.mark.usefixtures("tiny_zoo")

BASE = dict(model_args={}, image_size=32, batch_size=32, lr=0.3, warmup_epochs=0.0, recalibrate_bn=0,
            export=False, verbose=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny network trained on the digits (10 classes), and its run folder."""
    from tiny import registered

    out = tmp_path_factory.mktemp("source") / "run"
    with registered():
        train(TrainConfig(model="tiny", data="digits", epochs=2, out=str(out), **BASE))
    return out


@pytest.fixture
def three_classes(tmp_path):
    """Digit scans of three classes (another head than the digits' ten)."""
    images, labels = datasets.digits(per_class=40, classes=(3, 5, 8))
    path = tmp_path / "three.npz"
    np.savez(path, images=np.stack(images), labels=np.searchsorted([3, 5, 8], labels))
    return f"numpy:{path}"


def _weights(path):
    return read_weights(path)


def test_the_head_is_replaced_and_the_log_says_what_was_loaded(trained, three_classes, tmp_path):
    lines = []
    out = tmp_path / "tuned"
    train(TrainConfig(model="tiny", data=three_classes, epochs=1, weights=str(trained), out=str(out), **BASE),
          log=lines.append)
    run = json.loads((out / "run.json").read_text())
    start = run["weights"]
    assert start["kind"] == "run" and start["file"] == str(trained / "model.keras")
    import hashlib

    assert start["sha256"] == hashlib.sha256((trained / "model.keras").read_bytes()).hexdigest()
    assert start["new"] == {"predictions": "the head, for this data's classes"}
    assert set(start["loaded"]) == {"stem", "stem_bn", "dw", "dw_bn", "project", "project_bn"}
    assert any("7 layers" not in line and "6 layers loaded; 1 new: predictions" in line for line in lines)
    model = keras.saving.load_model(out / "model.keras")
    assert model.output_shape == (None, 3)


def test_a_frozen_backbone_keeps_every_weight_but_the_heads(trained, three_classes, tmp_path):
    """--freeze backbone: only the head trains, the BatchNorms in inference
    mode (their moving statistics untouched by the training steps)."""
    out = tmp_path / "frozen"
    metrics = train(TrainConfig(model="tiny", data=three_classes, epochs=2, weights=str(trained),
                                freeze="backbone", out=str(out), **BASE))
    before, after = _weights(trained / "model.keras"), _weights(out / "model.keras")
    for layer in ("stem", "stem_bn", "dw", "dw_bn", "project", "project_bn"):
        for a, b in zip(before[layer], after[layer]):
            np.testing.assert_array_equal(a, b, err_msg=layer)
    assert after["predictions"][0].shape == (32, 3) and np.isfinite(metrics["val"]["loss"])


def test_unfreezing_resets_the_optimizer_at_its_own_learning_rate(trained, three_classes, tmp_path):
    out = tmp_path / "unfrozen"
    lines = []
    train(TrainConfig(model="tiny", data=three_classes, epochs=3, weights=str(trained), freeze="backbone",
                      freeze_epochs=1, unfreeze_lr=0.02, out=str(out), **BASE), log=lines.append)
    assert any("unfrozen after 1 epochs" in line and "peak lr 0.02" in line for line in lines)
    history = (out / "history.csv").read_text().splitlines()
    header = history[0].split(",")
    lrs = [float(row.split(",")[header.index("lr")]) for row in history[1:]]
    # Each phase's cosine ends at zero; the second starts again from 0.02.
    assert lrs[0] == pytest.approx(0.0, abs=1e-6) and 0.0 < lrs[1] <= 0.02 and lrs[2] == pytest.approx(0, abs=1e-6)
    before, after = _weights(trained / "model.keras"), _weights(out / "model.keras")
    assert not np.array_equal(before["dw"][0], after["dw"][0])  # the backbone trained after unfreezing
    with np.load(out / "checkpoints" / json.loads((out / "checkpoints" / "latest.json").read_text())["path"]
                 / "optimizer.npz") as arrays:
        iterations = int(arrays["v00000"])  # the optimizer's step counter comes first
    train_size = json.loads((out / "run.json").read_text())["splits"]["train"]
    assert iterations == 2 * (train_size // 32)  # the second optimizer counted only its own two epochs


def test_calibrate_initializes_the_new_groupnorms_from_the_batchnorm_network(trained, tmp_path):
    """The XBN network made from the trained BatchNorm network scores, before
    any training, better calibrated than with GroupNorms at scale 1, offset 0."""
    scores = {}
    for images in (0, 128):
        lines = []
        out = tmp_path / f"calibrated-{images}"
        train(TrainConfig(model="tiny_xbn", data="digits", epochs=1, weights=str(trained), calibrate=images,
                          out=str(out), **{**BASE, "lr": 1e-9}), log=lines.append)
        run = json.loads((out / "run.json").read_text())
        scores[images] = json.loads((out / "metrics.json").read_text())["before_training"]["test"]["top1"]
    assert run["weights"]["calibration"]["layers"] == {"dw_gn": "dw_bn"}
    assert run["weights"]["new"] == {"dw_gn": "a GroupNorm in a BatchNorm's place, calibrated"}
    assert any("calibrated dw_gn (1/1) to dw_bn on 128 images" in line for line in lines)
    assert scores[128] > scores[0] + 0.05, scores


@pytest.mark.parametrize("settings, message", [
    ({"freeze": "backbone"}, "`freeze` backbone keeps trained layers as they are; give the `weights`"),
    ({"weights": "x", "freeze_epochs": 1}, "`freeze_epochs` says when to unfreeze; add `freeze` backbone"),
    ({"weights": "x", "freeze": "backbone", "freeze_epochs": 3}, "argument `freeze_epochs` must be an integer in"),
    ({"weights": "x", "unfreeze_lr": 0.1}, "`unfreeze_lr` is the learning rate once unfrozen"),
    ({"weights": "x", "calibrate": 10}, "`calibrate` sets the GroupNorms an XBN model adds"),
])
def test_bad_start_settings_are_refused_before_any_work(settings, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        TrainConfig(model="tiny", model_args={}, epochs=3, out=str(tmp_path / "x"), **settings).validate()
    assert not (tmp_path / "x").exists()


def test_weights_that_name_nothing_are_refused_before_any_work(tmp_path):
    with pytest.raises(FileNotFoundError, match="`weights` nowhere is neither a file, a run folder nor a weights "
                                                "name of tiny"):
        train(TrainConfig(model="tiny", epochs=1, weights="nowhere", out=str(tmp_path / "x"), **BASE))
    assert not (tmp_path / "x").exists()


def _crash_at_epoch(monkeypatch, epoch):
    """Training stops dead when ``epoch`` (1-based) begins, leaving the run
    folder as a crash (kill -9) there leaves it; ``test_resume.py`` kills a
    real process mid-epoch, which this in-process stop stands in for."""
    from xbn.training import trainer

    original = trainer._Run._train_epoch

    def train_epoch(self, index):
        if index == epoch - 1:
            raise KeyboardInterrupt
        return original(self, index)

    monkeypatch.setattr(trainer._Run, "_train_epoch", train_epoch)


def test_a_crash_in_either_phase_resumes(trained, tmp_path, monkeypatch):
    """Stopped while frozen (in epoch 2) or after unfreezing (in epoch 3), the
    same run resumes in the phase it was in and ends with the weights of a
    run never interrupted: at the phase boundary the unfrozen phase starts
    with a fresh optimizer, as it does uninterrupted."""
    settings = dict(model="tiny", data="digits", epochs=3, weights=str(trained), freeze="backbone", freeze_epochs=2,
                    steps_per_epoch=20, **{**BASE, "batch_size": 8})
    reference = train(TrainConfig(out=str(tmp_path / "straight"), **settings))["weights_digest"]
    for epoch in (2, 3):
        out = tmp_path / f"crashed-in-{epoch}"
        with monkeypatch.context() as patch:
            _crash_at_epoch(patch, epoch)
            with pytest.raises(KeyboardInterrupt):
                train(TrainConfig(out=str(out), **settings))
        assert json.loads((out / "checkpoints" / "latest.json").read_text())["epoch"] == epoch - 1
        lines = []
        metrics = train(TrainConfig(out=str(out), **settings), log=lines.append)
        assert any(f"after epoch {epoch - 1} of 3" in line for line in lines)
        assert not any("started from" in line for line in lines)
        assert metrics["weights_digest"] == reference
        assert json.loads((out / "run.json").read_text())["weights"]["kind"] == "run"  # the first start, kept
