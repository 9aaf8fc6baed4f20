"""xbn-train as a new user meets it: photos, short runs, shared folders, full
disks, failed exports (the tiny test network; the mechanics are the same for
every model)."""

import json
import os
import re

import datasets
import pytest
import tiny
from tiny import tiny_zoo  # noqa: F401  (fixture)

from xbn import _files
from xbn.cli import train as cli
from xbn.training import ExportFailedError, TrainConfig, train

pytestmark = pytest.mark.usefixtures("tiny_zoo")
QUICK = dict(model="tiny_xbn", model_args={}, image_size=32, batch_size=32, epochs=2, recalibrate_bn=2,
             export=False, verbose=False)


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory):
    """A folder of 108 images (36 a class), trained at the default batch 64,
    exported, with umask 022: what the rough edges of issue 11 were about."""
    root = tmp_path_factory.mktemp("photos")
    datasets.write_folder(root / "data", per_class=36, size=40)
    out = root / "run"
    lines = []
    previous = os.umask(0o022)
    try:
        with tiny.registered():
            metrics = train(TrainConfig(model="tiny_xbn", model_args={}, data=f"folder:{root / 'data'}",
                                        out=str(out), image_size=32, epochs=1, verbose=False),
                            log=lines.append)
    finally:
        os.umask(previous)
    return out, metrics, lines


def test_a_batch_that_leaves_data_out_of_every_epoch_is_named(photo_run):
    _, _, lines = photo_run
    (note,) = [line for line in lines if "left out of every epoch" in line]
    assert note == (
        "xbn-train: note: batch 64 over 96 training images: 1 step(s) an epoch, and 32 images (33%) "
        "left out of every epoch (other ones each epoch); `batch_size` 48 would use them all."
    )


def test_photos_get_the_augmentation_photos_need_and_run_json_records_it(photo_run):
    out, _, lines = photo_run
    info = json.loads((out / "run.json").read_text())
    assert info["resolved"] == {"crop_scale": [0.08, 1.0], "flip": True, "eval_crop": 0.875, "cache": True}
    # The settings as given stay unset: a rerun with the same command matches them.
    assert all(info["settings"][key] is None for key in info["resolved"])
    assert any("for folder images: crop_scale (0.08, 1.0), flip True, eval_crop 0.875, cache True" in line
               for line in lines)


def test_a_short_run_shortens_its_warm_up_and_says_so(photo_run):
    out, metrics, lines = photo_run
    assert "xbn-train: note: warm-up shortened from 1 to 0.2 epochs for a run of 1 epoch(s)" in lines[0]
    assert json.loads((out / "run.json").read_text())["settings"]["warmup_epochs"] == 0.2
    assert metrics["epochs"] == 1


def test_precise_bn_says_how_many_batches_it_used(photo_run):
    _, metrics, lines = photo_run
    assert metrics["recalibration"]["batches"] == 2  # 96 images at batch 64, not the 20 asked
    assert "precise BN: pass 1 (training mode, 2 batches of 96 images)" in lines
    assert len([line for line in lines if line.startswith("precise BN:")]) <= 1 + 8 + 1


def test_the_result_table_lists_each_evaluation_once(photo_run):
    _, _, lines = photo_run
    (table,) = [line for line in lines if "| evaluation (inference mode) |" in line]
    rows = [row for row in table.splitlines() if row.startswith("| val")]
    assert [row.split(" |")[0] for row in rows] == [
        "| val, moving-average BN statistics", "| val, precise BN statistics"
    ]


def test_outputs_are_readable_by_others(photo_run):
    out, _, _ = photo_run
    for name in ("run.json", "metrics.json", "model.keras", "history.csv", "curves.png"):
        assert os.stat(out / name).st_mode & 0o777 == 0o644, name
    for folder in ("checkpoints", "checkpoints/epoch-0001", "export"):
        assert os.stat(out / folder).st_mode & 0o777 == 0o755, folder
    assert os.stat(out / "export" / "saved_model.pb").st_mode & 0o777 == 0o644


def test_evaluate_scores_the_held_out_split_of_the_runs_own_data(photo_run, capsys):
    from xbn.cli import evaluate as evaluate_cli

    out, metrics, _ = photo_run
    assert evaluate_cli.main([str(out / "export")]) == 0
    printed = capsys.readouterr().out
    row = next(line for line in printed.splitlines() if line.startswith(f"| {out / 'export'} |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[2:4] == ["val", "12"]  # the 12 images the run never trained on
    assert cells[4] == f"{metrics['val']['top1']:.2%}"  # what the run itself measured


def test_a_finished_run_run_again_prints_its_results(photo_run):
    out, metrics, _ = photo_run
    lines = []
    with tiny.registered():
        again = train(TrainConfig(model="tiny_xbn", model_args={}, data=metrics["data"], out=str(out),
                                  image_size=32, epochs=1, verbose=False), log=lines.append)
    assert again == metrics
    assert any(line.endswith("is already complete (use `overwrite` to train again).") for line in lines)
    assert "| val, precise BN statistics | 12 |" in lines[-1]


# -- refusals before anything is created ---------------------------------------------------
def test_a_misspelt_builder_argument_is_named_and_nothing_is_created(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["--model-arg", "alphaa=0.5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xbn-train: error: --model-arg alphaa: mobilenetv2_xbn takes no argument 'alphaa' "
                          "(did you mean 'alpha'?). Its arguments:")
    assert "xbn_groups" in err and not out.exists()


def test_errors_carry_one_prefix(tmp_path, capsys):
    assert cli.main(["--epochs", "0", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err == "xbn-train: error: argument --epochs must be an integer >= 1. Received: epochs=0\n"
    assert cli.main(["--epochs", "2", "--warmup-epochs", "3", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err == "xbn-train: error: --warmup-epochs 3.0 must be less than --epochs 2.\n"


def test_a_folder_in_use_is_refused_at_once_with_the_holder_named(tmp_path, capsys):
    out = tmp_path / "run"
    with _files.FolderLock(out, "xbn-train --epochs 3 --out run"):
        assert cli.main(["--model", "tiny_xbn", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"xbn-train: error: {out} is in use by process {os.getpid()} on ")
    assert "(xbn-train --epochs 3 --out run, since " in err and err.count("\n") == 1


# -- full disks and failed exports ------------------------------------------------------------
def test_a_full_disk_is_one_line_naming_the_space_and_the_last_good_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = _files.shutil.disk_usage

    def usage(path):  # 1 MB once the checkpoints folder exists: at epoch 2
        free = 2**20 if str(path).endswith("checkpoints") else real(path).free
        return type("Usage", (), {"free": free})

    monkeypatch.setattr(_files.shutil, "disk_usage", usage)
    with pytest.raises(_files.DiskFullError) as info:
        train(TrainConfig(out=str(out), **QUICK))
    message = str(info.value)
    assert re.search(rf"not enough space in {re.escape(str(out / 'checkpoints'))} for the checkpoint of "
                     r"epoch 2: it needs about [\d.]+ MB and 1\.0 MB are free\.", message)
    assert message.endswith(f"The last good checkpoint is {out / 'checkpoints' / 'epoch-0001'}; free some "
                            "space and run the same command to resume from it.")
    monkeypatch.undo()
    lines = []
    metrics = train(TrainConfig(out=str(out), **QUICK), log=lines.append)
    assert any("resuming" in line and "after epoch 1 of 2" in line for line in lines)
    assert metrics["epochs"] == 2


def test_a_disk_that_fills_up_during_a_write_is_reported_the_same_way(tmp_path, monkeypatch):
    from xbn.training import checkpoint

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "save", full)
    with pytest.raises(_files.DiskFullError, match=r"filled up while writing the checkpoint of epoch 1; it "
                                                    r"needs about .* No checkpoint was written yet"):
        train(TrainConfig(out=str(tmp_path / "run"), **QUICK))


def test_a_failed_export_loses_nothing_and_a_rerun_makes_it(tmp_path, monkeypatch):
    from xbn.export import ExportError

    def broken(*args, **kwargs):
        raise ExportError("export: the reloaded SavedModel logits differs from the source model.")

    out = tmp_path / "run"
    monkeypatch.setattr("xbn.training.trained.export_run", broken)
    with pytest.raises(ExportFailedError, match=r"the training finished and its results are saved in"):
        train(TrainConfig(out=str(out), **{**QUICK, "export": True}))
    stored = json.loads((out / "metrics.json").read_text())
    assert stored["test"]["examples"] == 359 and (out / "model.keras").is_file()
    assert "differs from the source model" in stored["export_error"]
    monkeypatch.undo()
    lines = []
    metrics = train(TrainConfig(out=str(out), **{**QUICK, "export": True}), log=lines.append)
    assert "xbn-train: its export is missing; exporting it now." in lines
    assert metrics["export"] == str(out / "export") and "export_error" not in metrics
    assert (out / "export" / "saved_model.pb").is_file()


def test_the_cli_exit_status_says_what_failed(tmp_path, monkeypatch, capsys):
    def export_failed(config, log=print):
        raise ExportFailedError("the training finished and its results are saved in run, but ...")

    monkeypatch.setattr("xbn.training.train", export_failed)
    assert cli.main(["--out", str(tmp_path / "x")]) == 3
    assert capsys.readouterr().err.startswith("xbn-train: error: the training finished and its results are saved")


def test_the_log_is_plain_lines_without_a_terminal(tmp_path, capfd):
    train(TrainConfig(out=str(tmp_path / "run"), **{**QUICK, "verbose": True}), log=print)
    out = capfd.readouterr().out
    assert "\r" not in out and "\x1b" not in out
    lines = out.splitlines()
    assert max(len(line) for line in lines) < 200
    epoch = [line for line in lines if line.startswith("epoch 1/2  ")]
    assert 2 <= len(epoch) <= 11 and epoch[-1].startswith("epoch 1/2  39/39 [")


def test_the_curves_say_the_training_loss_is_smoothed_and_count_whole_epochs(tmp_path, monkeypatch):
    from xbn import _plotting
    from xbn.training import history

    figures = []
    monkeypatch.setattr(_plotting, "save_png", lambda fig, path, dpi=100: figures.append(fig))
    rows = [{"epoch": e, "loss": 1.0 / e, "val_loss": 1.1 / e, "accuracy": 0.5, "val_accuracy": 0.4}
            for e in (1, 2, 3)]
    history.plot_curves(tmp_path / "c.png", rows, "t", label_smoothing=0.1)
    loss_axes = figures[0].axes[0]
    labels = [text.get_text() for text in loss_axes.get_legend().get_texts()]
    assert labels == ["training (label smoothing 0.1)", "validation"]
    ticks = [t for t in loss_axes.get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)
