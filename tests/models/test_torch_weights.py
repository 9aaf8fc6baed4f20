"""PyTorch checkpoints of the official XBNBlock code load into xbn's models
and answer as PyTorch does (references: tests/models/torch_resnet.py)."""

import numpy as np
import pytest
import torch
from torch_resnet import reference, save_as_the_official_script

from xbn.cli import convert as cli
from xbn.models import get_model, load_torch_weights
from xbn.models.torch_weights import read_torch_state

SIZE = 64


def _inputs(seed=0):
    return np.random.default_rng(seed).normal(0, 1, (2, SIZE, SIZE, 3)).astype("float32")


def _torch_logits(torch_model, x):
    with torch.no_grad():
        return torch_model(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()


def _relative(got, want):
    return float(np.abs(np.asarray(got, np.float64) - want).max() / np.abs(want).max())


@pytest.mark.parametrize(
    "name", ["resnet18", "resnet18_xbn", "resnet50", "resnet50_xbn", "resnet101_xbn", "resnext50_32x4d_xbn"]
)
def test_official_checkpoints_answer_as_pytorch(name, tmp_path):
    torch_model = reference(name, num_classes=10)
    path = tmp_path / "checkpoint.pth"
    save_as_the_official_script(torch_model, path)
    model = get_model(name, input_shape=(SIZE, SIZE, 3), classes=10, classifier_activation=None,
                      layout="torchvision")
    report = load_torch_weights(model, path)
    assert report.complete and len(report.loaded) == len(model.weights)
    x = _inputs()
    assert _relative(model(x, training=False), _torch_logits(torch_model, x)) <= 1e-4


def test_state_dicts_of_arrays_need_no_file():
    torch_model = reference("resnet18_xbn", num_classes=10)
    state = {f"module.{k}": v.numpy() for k, v in torch_model.state_dict().items()}
    assert "bn1.weight" in read_torch_state({"state_dict": state})
    model = get_model("resnet18_xbn", input_shape=(SIZE, SIZE, 3), classes=10, classifier_activation=None)
    assert load_torch_weights(model, {"state_dict": state}).complete


def test_a_checkpoint_of_another_form_or_layout_is_refused_with_its_cause(tmp_path):
    path = tmp_path / "vanilla.pth"
    save_as_the_official_script(reference("resnet50", num_classes=10), path)
    # The XBN model: the GroupNorms have no running statistics to take.
    xbn = get_model("resnet50_xbn", input_shape=(SIZE, SIZE, 3), classes=10, layout="torchvision")
    before = [np.array(w) for w in xbn.weights]
    with pytest.raises(ValueError, match=r"does not fit resnet50_xbn: .*unused \(.*running_mean"):
        load_torch_weights(xbn, path)
    assert all(np.array_equal(a, np.array(w)) for a, w in zip(before, xbn.weights))  # nothing loaded
    # keras.applications' layout: biased convolutions.
    keras_layout = get_model("resnet50", input_shape=(SIZE, SIZE, 3), classes=10)
    with pytest.raises(ValueError, match='layout="torchvision"'):
        load_torch_weights(keras_layout, path)
    # Another number of classes.
    wide = get_model("resnet50", input_shape=(SIZE, SIZE, 3), classes=7, layout="torchvision")
    with pytest.raises(ValueError, match="classes= the checkpoint's"):
        load_torch_weights(wide, path)
    report = load_torch_weights(wide, path, strict=False)
    assert list(report.mismatched) == ["predictions/kernel", "predictions/bias"]


def test_models_of_other_families_and_bad_files_are_refused(tmp_path):
    # Every family of the zoo is mapped; one registered from outside is not.
    import dataclasses

    from xbn.models import model_facts

    other = get_model("mobilenetv2", alpha=0.35, input_shape=(32, 32, 3), classes=10)
    other.xbn_facts = dataclasses.replace(model_facts(other), name="densenet121", family="densenet")
    with pytest.raises(ValueError, match="densenet121 is a densenet model; PyTorch names are mapped"):
        load_torch_weights(other, {})
    with pytest.raises(FileNotFoundError, match="missing.pth: no such file"):
        read_torch_state(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a PyTorch checkpoint"):
        read_torch_state(tmp_path / "junk.pth")


def test_xbn_convert_writes_a_keras_model_and_a_serving_export(tmp_path, capsys):
    torch_model = reference("resnet18_xbn", num_classes=4)
    checkpoint = tmp_path / "r18.pth"
    save_as_the_official_script(torch_model, checkpoint)
    (tmp_path / "classes.txt").write_text("ant\nbee\ncat\ndog\n")
    out = tmp_path / "r18.keras"
    argv = [str(checkpoint), "--model", "resnet18_xbn", "--image-size", str(SIZE), "--out", str(out),
            "--export", str(tmp_path / "export"), "--class-names", str(tmp_path / "classes.txt")]
    assert cli.main(argv) == 0, capsys.readouterr().err
    import keras
    import tensorflow as tf

    x = _inputs(1)
    want = torch.softmax(torch.from_numpy(_torch_logits(torch_model, x)), -1).numpy()
    converted = keras.saving.load_model(out)
    assert _relative(converted(x, training=False), want) <= 1e-4
    served = tf.saved_model.load(str(tmp_path / "export")).signatures["serving_default"]
    assert served(images=tf.zeros([1, SIZE, SIZE, 3]))["top_k_labels"].shape == (1, 4)
    # Again without --overwrite: refused, nothing replaced.
    assert cli.main(argv) == 2
    assert "pass --overwrite" in capsys.readouterr().err


def test_xbn_convert_without_pytorch_names_the_extra(tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch":
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    (tmp_path / "c.pth").write_bytes(b"PK\x03\x04 a checkpoint")
    monkeypatch.setattr(builtins, "__import__", no_torch)
    argv = [str(tmp_path / "c.pth"), "--model", "resnet18", "--out", str(tmp_path / "m.keras")]
    assert cli.main(argv) == 2
    assert "pip install 'xbn[torch]'" in capsys.readouterr().err


def _checkpoint(tmp_path, name="resnet18", classes=10):
    path = tmp_path / f"{name}.pth"
    save_as_the_official_script(reference(name, num_classes=classes), path)
    return path


def test_damaged_files_are_named_in_one_line(tmp_path, capsys):
    """Each case says what is wrong with the file, in one line, without
    terminal colour codes, and without advice that cannot help."""
    good = _checkpoint(tmp_path).read_bytes()
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "truncated.pth").write_bytes(good[: len(good) // 2])
    (tmp_path / "folder.pth").mkdir()
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pth")  # a whole pickled module
    cases = {
        "empty.pth": "is empty (0 bytes)",
        "truncated.pth": "is damaged or truncated: it starts as torch.save's zip archive but its end is missing",
        "folder.pth": "is a folder, not a checkpoint file",
        "module.pth": "holds pickled Python objects, not only tensors",
    }
    for name, message in cases.items():
        argv = [str(tmp_path / name), "--model", "resnet18", "--out", str(tmp_path / "m.keras")]
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert "\x1b[" not in err and "weights_only=False" not in err
    assert not (tmp_path / "m.keras").exists()


def test_another_architecture_is_not_blamed_on_the_classifier(tmp_path):
    path = _checkpoint(tmp_path, "resnet50", classes=10)
    model = get_model("resnet18", input_shape=(SIZE, SIZE, 3), classes=10, layout="torchvision")
    with pytest.raises(ValueError, match="It looks like another model") as info:
        load_torch_weights(model, path)
    assert "classes=" not in str(info.value)


def test_class_names_are_counted_before_anything_is_written(tmp_path, capsys):
    path = _checkpoint(tmp_path, "resnet18", classes=10)
    (tmp_path / "classes.txt").write_text("ant\nbee\ncat\n")
    out = tmp_path / "r18.keras"
    argv = [str(path), "--model", "resnet18", "--image-size", str(SIZE), "--out", str(out),
            "--export", str(tmp_path / "export"), "--class-names", str(tmp_path / "classes.txt")]
    assert cli.main(argv) == 2
    assert "lists 3 class names; the model has 10 classes. Nothing was written." in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "export").exists()


def test_safetensors_checkpoints_convert_too(tmp_path):
    from safetensors.torch import save_file

    torch_model = reference("resnet18_xbn", num_classes=10)
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in torch_model.state_dict().items()}, str(path))
    model = get_model("resnet18_xbn", input_shape=(SIZE, SIZE, 3), classes=10, classifier_activation=None)
    assert load_torch_weights(model, path).complete
    x = _inputs(2)
    assert _relative(model(x, training=False), _torch_logits(torch_model, x)) <= 1e-4
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(ValueError, match="is not a readable safetensors file"):
        read_torch_state(tmp_path / "bad.safetensors")
