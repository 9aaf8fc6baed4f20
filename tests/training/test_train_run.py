"""A tiny xbn-train run, its run folder, and what happens when it is run again."""

import csv
import json

import keras
import numpy as np
import pytest
import tiny
from tiny import tiny_zoo  # noqa: F401  (fixture)

from xbn.data import Augment, Pipeline, load_source
from xbn.training import NonFiniteLossError, TrainConfig, train, weights_digest
from xbn.training import trainer as trainer_module

TINY = dict(model="tiny_xbn", model_args={}, image_size=32, batch_size=32, epochs=2, recalibrate_bn=2,
            export=False, verbose=False)
pytestmark = pytest.mark.usefixtures("tiny_zoo")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    lines = []
    with tiny.registered():
        metrics = train(TrainConfig(out=str(out), **TINY), log=lines.append)
    return out, metrics, lines


def test_run_folder_holds_everything(run):
    out, metrics, lines = run
    info = json.loads((out / "run.json").read_text())
    assert info["class_names"] == [str(d) for d in range(10)]
    assert info["facts"]["preprocessing"] == "tf" and info["image_size"] == 32
    assert info["settings"]["model"] == "tiny_xbn"
    latest = json.loads((out / "checkpoints" / "latest.json").read_text())
    assert latest == {"epoch": 2, "path": "epoch-0002"}
    assert sorted(p.name for p in (out / "checkpoints").glob("epoch-*")) == ["epoch-0001", "epoch-0002"]
    assert list((out / "logs").glob("events.out.tfevents.*"))
    with open(out / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "val_top5", "lr", "images_per_s"} <= set(rows[0])
    assert (out / "curves.png").read_bytes().startswith(b"\x89PNG")
    stored = json.loads((out / "metrics.json").read_text())
    assert stored["test"]["examples"] == 359
    recalibration = stored["recalibration"]
    assert recalibration["converged"] and recalibration["last_change"] < 1e-3
    assert 2 <= recalibration["passes"] <= 2 + recalibration["layers"]
    assert any("Epoch 2/2" in line for line in lines)
    assert any("| test, precise BN statistics | 359 |" in line for line in lines)


def test_saved_model_reproduces_the_reported_test_metrics(run):
    out, metrics, _ = run
    model = keras.saving.load_model(out / "model.keras")
    assert weights_digest(model) == metrics["weights_digest"]
    augment = Augment(crop_scale=(0.6, 1.0), flip=False, eval_crop=1.0)
    pipe = Pipeline(load_source("digits"), 32, "tf", 32, augment=augment)
    correct = total = 0
    for x, y in pipe.evaluation("test"):
        correct += int(np.sum(np.argmax(model(x, training=False), -1) == y.numpy()))
        total += len(y)
    assert correct / total == pytest.approx(metrics["test"]["top1"])


def test_running_a_finished_run_again_reports_it(run):
    out, metrics, _ = run
    lines = []
    again = train(TrainConfig(out=str(out), **TINY), log=lines.append)
    assert again["weights_digest"] == metrics["weights_digest"]
    assert "already complete" in lines[0]


def test_other_settings_on_the_same_folder_are_refused(run):
    out, _, _ = run
    with pytest.raises(ValueError, match=r"other settings \(epochs: 2 -> 3\).*`overwrite`"):
        train(TrainConfig(out=str(out), **{**TINY, "epochs": 3}))


def test_a_folder_that_is_not_a_run_is_not_touched(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an xbn-train run folder"):
        train(TrainConfig(out=str(tmp_path), **TINY))
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    """The fault goes where no kernel can squash it: the classifier's bias.

    (NaN pixels are no test of the loss guard: on some CPUs max pooling
    turns NaN into -3.4e38 and the loss stays finite; the pipeline refuses
    such pixels before the network sees them, see the next test.)
    """
    original = trainer_module._Run._train_epoch

    def poisoned(self, epoch):
        if epoch == 1:
            bias = self.model.get_layer("predictions").bias
            bias.assign(np.full(bias.shape, np.nan, "float32"))
        return original(self, epoch)

    monkeypatch.setattr(trainer_module._Run, "_train_epoch", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match=r"became nan at epoch 2, step 1.*last good checkpoint \(epoch 1\)"):
        train(TrainConfig(out=str(out), **TINY))
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["epoch"] == 1
    assert not (out / "metrics.json").exists()
    # The kept checkpoint is the good one: finite weights from epoch 1.
    state = json.loads((out / "checkpoints" / "epoch-0001" / "state.json").read_text())
    assert np.isfinite(state["history"][0]["loss"])


def test_nan_pixels_in_float_data_stop_training_with_the_example_named(tmp_path, monkeypatch):
    """Float sources (TFDS tensors, .npz arrays) can hold NaN: refused where they enter."""
    import tensorflow as tf

    from xbn.data import DataSource, Split
    from xbn.data.images import NonFiniteImageError

    pixels = np.full((40, 8, 8, 3), 128.0, np.float32)
    pixels[29, 3, 4, 0] = np.nan
    labels = (np.arange(40) % 2).astype(np.int32)

    def fake_source(spec, **kwargs):
        make = lambda: tf.data.Dataset.from_tensor_slices((pixels, labels))  # noqa: E731
        splits = {name: Split(name, 40, make, origin=f"--data {spec}") for name in ("train", "val")}
        return DataSource(spec, "fake", ["a", "b"], splits)

    monkeypatch.setattr("xbn.data.load_source", fake_source)
    out = tmp_path / "nan-pixels"
    with pytest.raises(NonFiniteImageError, match=(
        r"^example 29 of the 'train' split of --data digits has non-finite pixel values \(NaN or inf\)"
    )):
        train(TrainConfig(out=str(out), **{**TINY, "batch_size": 8}))
    assert not (out / "checkpoints").exists()


def test_cli_reports_a_nan_loss_without_a_traceback(tmp_path, monkeypatch, capsys):
    from xbn.cli import train as cli

    def explode(config, log=print):
        raise NonFiniteLossError("the training loss became nan at epoch 1, step 3; stopped.")

    monkeypatch.setattr(trainer_module, "train", explode)
    monkeypatch.setattr("xbn.training.train", explode)
    assert cli.main(["--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("xbn-train: error: the training loss became nan") and "Traceback" not in err
