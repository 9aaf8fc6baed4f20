"""xbn-export on a run folder, then xbn-evaluate and xbn-predict on the export."""

import json

import datasets
import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny

from xbn.cli import evaluate as evaluate_cli
from xbn.cli import export as export_cli
from xbn.cli import predict as predict_cli
from xbn.data import load_source
from xbn.data.pipeline import eval_image
from xbn.export import INFO_FILE
from xbn.models import get_model
from xbn.models.preprocessing import preprocess_images
from xbn.training import TrainConfig, train

SIZE = 32
CLASSES = ["digit_0", "digit_1", "digit_2"]


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """A run folder written by xbn-train itself (the tiny test network, one epoch)."""
    root = tmp_path_factory.mktemp("use")
    data = root / "data"
    written = datasets.write_folder(data, per_class=10, size=40)
    run = root / "run"
    with tiny.registered():
        train(TrainConfig(
            model="tiny_xbn", model_args={}, data=f"folder:{data}", val_split=0.2, out=str(run),
            image_size=SIZE, batch_size=8, epochs=1, warmup_epochs=0.0, recalibrate_bn=1,
            eval_crop=0.875, export=False, verbose=False,
        ), log=lambda message: None)
    return root, data, written, keras.saving.load_model(run / "model.keras")


@pytest.fixture(scope="module")
def export_dir(setting):
    root, _, _, _ = setting
    out = root / "export"
    assert export_cli.main([str(root / "run"), "--out", str(out)]) == 0
    return out


def _direct_predictions(model, images):
    batch = tf.stack([eval_image(tf.constant(img), SIZE, 0.875) for img in images])
    return np.argmax(model(preprocess_images(batch, "tf"), training=False), axis=-1)


def test_export_of_a_run_folder_uses_its_facts(export_dir):
    info = json.loads((export_dir / INFO_FILE).read_text())
    assert info["class_names"] == CLASSES and info["eval_crop"] == 0.875
    assert info["model"] == "tiny_xbn" and info["folded"] is True


def test_evaluate_reports_the_models_accuracy(setting, export_dir, tmp_path, capsys):
    _, data, written, model = setting
    report = tmp_path / "eval.json"
    # All of it (--val-split 0), not only the hold-out the run kept back (the default).
    argv = [str(export_dir), "--data", f"folder:{data}", "--val-split", "0", "--json", str(report)]
    assert evaluate_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "| top-1 | top-3 |" in out
    result = json.loads(report.read_text())
    source = load_source(f"folder:{data}", val_split=0.0)
    images, labels = zip(*[(img.numpy(), int(label)) for img, label in source.split("train").make()])
    expected = np.mean(_direct_predictions(model, images) == np.asarray(labels))
    assert result["examples"] == 30
    assert result["top1"] == pytest.approx(expected)
    assert result["topk"] == 1.0  # top-3 of 3 classes


def test_evaluate_refuses_data_of_other_classes(export_dir, capsys):
    assert evaluate_cli.main([str(export_dir), "--data", "digits"]) == 2
    assert "are not the export's" in capsys.readouterr().err


def test_predict_prints_labels_and_names_bad_files(setting, export_dir, tmp_path, capsys):
    _, _, written, model = setting
    paths = sorted(written)[:3]
    bad = tmp_path / "bad.jpg"
    bad.write_text("no image here")
    code = predict_cli.main([str(export_dir), *map(str, paths), str(bad), "--top-k", "2"])
    out, err = capsys.readouterr()
    assert code == 1
    assert f"{bad}: error: not a JPEG, PNG, BMP or GIF file" in err
    expected = _direct_predictions(model, [written[p][1] for p in paths])
    for path, index in zip(paths, expected):
        line = next(text for text in out.splitlines() if text.startswith(str(path)))
        assert line.split(": ", 1)[1].startswith(CLASSES[index] + " (")
        assert line.count("%)") == 2
    assert predict_cli.main([str(export_dir), str(paths[0])]) == 0


def test_cli_errors(setting, tmp_path, capsys):
    root, data, _, _ = setting
    assert evaluate_cli.main([str(tmp_path), "--data", f"folder:{data}"]) == 2
    assert "is not an xbn export" in capsys.readouterr().err
    assert export_cli.main([str(root / "run"), "--out", str(root / "export")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert export_cli.main([str(root / "run"), "--out", str(tmp_path / "x"), "--weights", "w.h5"]) == 2
    assert "a run folder brings its own weights" in capsys.readouterr().err


def test_predict_says_why_a_damaged_image_cannot_be_served(setting, export_dir, tmp_path, capsys):
    photo = datasets.photos()["coffee"]
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(datasets.encode(photo, "jpg")[:3000])
    assert predict_cli.main([str(export_dir), str(truncated)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{truncated}: error: damaged or truncated JPEG data (")
    assert "Graph execution error" not in err and "{{" not in err


def test_an_empty_image_is_said_to_be_empty(export_dir, tmp_path, capsys):
    """A zero-byte file was reported as "not a JPEG, PNG, BMP or GIF file"."""
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert predict_cli.main([str(export_dir), str(empty)]) == 1
    assert capsys.readouterr().err.strip() == f"{empty}: error: the file is empty (0 bytes)"
    served = tf.saved_model.load(str(export_dir)).signatures["serve_bytes"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"of image_bytes is empty \(0 bytes\)"):
        served(image_bytes=tf.constant([b""]))


def test_missing_and_foreign_folders_are_told_apart(tmp_path, capsys):
    assert predict_cli.main([str(tmp_path / "nowhere"), "x.png"]) == 2
    assert f"MODEL {tmp_path / 'nowhere'} does not exist; give an export folder" in capsys.readouterr().err
    assert evaluate_cli.main([str(tmp_path), "--data", "digits"]) == 2
    assert "is not an xbn export" in capsys.readouterr().err


def test_evaluate_scores_other_data_whole_and_says_so(setting, export_dir, tmp_path, capsys):
    _, data, _, _ = setting
    other = tmp_path / "other"
    datasets.write_folder(other, per_class=2, size=40)
    assert evaluate_cli.main([str(export_dir), "--data", f"folder:{other}"]) == 0
    row = capsys.readouterr().out.splitlines()[-1]
    assert f"| folder:{other} | all | 6 |" in row


def test_corruption_benchmark_on_an_export_against_its_run_folder(setting, export_dir, tmp_path, capsys):
    from xbn.data import corruptions

    root, data, _, model = setting
    report = tmp_path / "c.json"
    argv = ["--data", f"folder:{data}", "--val-split", "0", "--corruption", "contrast:3",
            "--corruption", "gaussian_noise", "--json", str(report)]
    with tiny.registered():
        assert evaluate_cli.main([str(export_dir), *argv, "--baseline", str(root / "run")]) == 0
    out = capsys.readouterr().out
    result = json.loads(report.read_text())["corruption"]
    assert list(result["top1"]) == ["contrast", "gaussian_noise"]
    assert sorted(result["top1"]["gaussian_noise"]) == ["1", "2", "3", "4", "5"]
    # The images are corrupted by their index at the model's input size: by hand.
    source = load_source(f"folder:{data}", val_split=0.0)
    images, labels = zip(*[(img.numpy(), int(label)) for img, label in source.split("train").make()])
    corrupted = np.stack([corruptions.corrupt(eval_image(tf.constant(img), SIZE, 0.875).numpy(), "contrast", 3, seed=i)
                          for i, img in enumerate(images)])
    predicted = np.argmax(model(preprocess_images(corrupted, "tf"), training=False), axis=-1)
    assert result["top1"]["contrast"]["3"] == pytest.approx(np.mean(predicted == np.asarray(labels)))
    assert result["suite"] == "cifar-c"
    # --corruption-suite: severity 3 at the 16px suite's level, by hand too.
    small = tmp_path / "small.json"
    with tiny.registered():
        assert evaluate_cli.main([str(export_dir), "--data", f"folder:{data}", "--val-split", "0", "--corruption",
                                  "contrast:3", "--corruption-suite", "16px", "--json", str(small)]) == 0
    scored = json.loads(small.read_text())["corruption"]
    corrupted = np.stack([corruptions.corrupt(eval_image(tf.constant(img), SIZE, 0.875).numpy(), "contrast", 3, seed=i,
                                              suite="16px") for i, img in enumerate(images)])
    predicted = np.argmax(model(preprocess_images(corrupted, "tf"), training=False), axis=-1)
    assert scored["suite"] == "16px" and corruptions.level_of("contrast", 3, "16px") != 3
    assert scored["top1"]["contrast"]["3"] == pytest.approx(np.mean(predicted == np.asarray(labels)))
    # The folded export and its run folder answer alike on the same corrupted images: CE 100%.
    for name, scores in result["top1"].items():
        assert result["baseline"]["top1"][name] == pytest.approx(scores, abs=1 / 30 + 1e-9)
    assert "| corruption | s1 | s2 | s3 | s4 | s5 | mean error | CE | relative CE |" in out
    assert "mCE" in out and "relative mCE" in out


def test_a_baseline_of_other_classes_is_refused_before_any_image_is_scored(setting, export_dir, tmp_path, capsys):
    """A 2-class baseline against a 3-class model gave an mCE of noise before."""
    root, data, _, _ = setting
    with tiny.registered():
        other = get_model("tiny", input_shape=(SIZE, SIZE, 3), classes=2)
    other.save(tmp_path / "two.keras")
    argv = [str(export_dir), "--data", f"folder:{data}", "--corruption", "contrast:1",
            "--baseline", str(tmp_path / "two.keras")]
    with tiny.registered():
        assert evaluate_cli.main(argv) == 2
    err = capsys.readouterr()
    assert f"--baseline {tmp_path / 'two.keras'}: it has 2 classes where {export_dir} has 3" in err.err
    assert "| corruption |" not in err.out  # nothing was scored


def test_corruption_arguments_are_checked_before_any_model_loads(tmp_path, capsys):
    assert evaluate_cli.main([str(tmp_path / "nowhere"), "--corruption", "frost:2"]) == 2
    assert "'frost' is not provided: it blends photographs of frost" in capsys.readouterr().err
    assert evaluate_cli.main([str(tmp_path / "nowhere"), "--baseline", str(tmp_path)]) == 2
    assert "--baseline is the reference of the corruption benchmark; add --corruption" in capsys.readouterr().err


def test_predict_takes_a_folder_of_images_and_a_run_folder(setting, export_dir, capsys):
    """Issue 40: ``xbn-predict DIR`` said "Is a directory"; a folder's images
    are predicted now, and a run folder answers as its export does."""
    root, data, written, _ = setting
    assert predict_cli.main([str(export_dir), str(data)]) == 0
    by_export = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert sorted(by_export) == sorted(str(p) for p in written)
    assert predict_cli.main([str(root / "run"), str(data), "--top-k", "3"]) == 0
    by_model = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    top1 = {path: labels.split(" (")[0] for path, labels in by_export.items()}
    assert {path: labels.split(" (")[0] for path, labels in by_model.items()} == top1
    assert all(labels.count("%") == 3 for labels in by_model.values())


def test_predict_refuses_more_labels_than_the_export_holds(export_dir, setting, capsys):
    _, data, written, _ = setting
    image = str(next(iter(written)))
    assert predict_cli.main([str(export_dir), image, "--top-k", "9"]) == 2
    err = capsys.readouterr().err
    assert "--top-k 9: the export" in err and "returns its top 3 labels" in err and "xbn-export --top-k 9" in err
    empty = data.parent / "empty-folder"
    empty.mkdir()
    assert predict_cli.main([str(export_dir), str(empty)]) == 2
    assert "is a folder without image files" in capsys.readouterr().err


def test_an_export_is_a_folder_whatever_its_out_is_called(setting, capsys):
    root, _, _, _ = setting
    assert export_cli.main([str(root / "run"), "--out", str(root / "flowers.litert"), "--format", "litert"]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "names a file, but an export is a folder" in err and "flowers-litert" in err
    assert not (root / "flowers.litert").exists()
