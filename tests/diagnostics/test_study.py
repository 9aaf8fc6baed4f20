"""The batch-size study's mechanics, on the tiny test family (vanilla, XBN, GN+WS)."""

import json

import keras
import numpy as np
import pytest

from tiny import tiny_zoo  # noqa: F401  (fixture)
from xbn.cli import study as study_cli
from xbn.data import Augment, Pipeline, load_source
from xbn.diagnostics import estimation_shift

FORMS = ("tiny", "tiny_xbn", "tiny_gnws")


def test_study_trains_every_form_at_every_batch_size_and_reuses_runs(tiny_zoo, tmp_path, capsys):  # noqa: F811
    readme = tmp_path / "README.md"
    readme.write_text("# Zoo\n\n<!-- begin:study -->\n<!-- end:study -->\n\n## After\n")
    argv = ["--family", "tiny", "--batch-sizes", "64", "32", "--epochs", "1", "--out", str(tmp_path / "s"),
            "--readme", str(readme)]
    assert study_cli.main(argv) == 0, capsys.readouterr().err
    first = capsys.readouterr().out
    results = json.loads((tmp_path / "s" / "study.json").read_text())
    assert [(r["model"], r["batch_size"]) for r in results] == [
        (model, batch) for model in FORMS for batch in (32, 64)
    ]
    test = Pipeline(load_source("digits"), 32, "tf", 64, augment=Augment(eval_crop=1.0)).evaluation("test")
    for r in results:
        run = tmp_path / "s" / f"{r['model']}-bs{r['batch_size']}"
        # Every number is the run's own: its metrics, and its shift measured afresh.
        metrics = json.loads((run / "metrics.json").read_text())
        assert r["test_top1"] == metrics["test"]["top1"] and r["train_seconds"] == metrics["train_seconds"]
        assert json.loads((run / "run.json").read_text())["settings"]["batch_size"] == r["batch_size"]
        shift = estimation_shift(keras.saving.load_model(run / "model.keras"), test)
        if r["model"] == "tiny_gnws":  # batch-free: nothing can shift
            assert shift.layers == [] and np.isnan(r["mean_shift"])
        else:
            assert r["mean_shift"] == pytest.approx(shift.mean_shift, rel=1e-6) and r["mean_shift"] > 0
    table = (tmp_path / "s" / "study.md").read_text()
    assert "| model | bs 32 | bs 64 |" in table
    row = next(line for line in table.splitlines() if line.startswith("| `tiny_xbn` |"))
    assert row == "| `tiny_xbn` | " + " | ".join(
        f"{100 * r['test_top1']:.1f}" for r in results if r["model"] == "tiny_xbn"
    ) + " |"
    assert "| BN | 23.6 | 23.7 | 24.8 | 27.3 | 34.7 |" in table
    assert "Command: `python scripts/study_batch_size.py --family tiny --batch-sizes 64 32" in table
    text = readme.read_text()
    assert table.strip() in text and "![batch-size study](study_batch_size.png)" in text
    assert text.endswith("## After\n")
    assert (tmp_path / "study_batch_size.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "s" / "study.png").read_bytes().startswith(b"\x89PNG")
    assert "training 1 epochs" in first
    # A second call finds every run finished and measures the same models.
    assert study_cli.main(argv) == 0
    assert capsys.readouterr().out.count("reusing") == 6
    assert json.loads((tmp_path / "s" / "study.json").read_text()) == results


@pytest.mark.parametrize("argv, message", [
    (["--batch-sizes", "1", "8"], "batch sizes must be integers >= 2"),
    (["--epochs", "0"], "--epochs must be >= 1; got 0"),
    (["--image-size", "16"], "--image-size must be >= 32; got 16"),
    (["--family", "vgg"], "unknown family 'vgg'"),
])
def test_bad_arguments_are_named(argv, message, capsys, tmp_path):
    assert study_cli.main([*argv, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_per_form_builder_arguments_and_no_reuse_of_runs_with_other_settings(tiny_zoo, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "s"
    argv = ["--family", "tiny", "--batch-sizes", "32", "--epochs", "1", "--out", str(out), "--model-arg", "width=8"]
    assert study_cli.main([*argv, "--model-arg", "tiny_gnws:gn_groups=2"]) == 0, capsys.readouterr().err
    settings = {
        model: json.loads((out / f"{model}-bs32" / "run.json").read_text())["settings"]["model_args"]
        for model in FORMS
    }
    assert settings == {"tiny": {"width": 8}, "tiny_xbn": {"width": 8}, "tiny_gnws": {"width": 8, "gn_groups": 2}}
    model = keras.saving.load_model(out / "tiny_gnws-bs32" / "model.keras")
    assert model.get_layer("stem").filters == 8 and model.get_layer("stem_gn").groups == 2
    capsys.readouterr()
    # The same folder with other arguments: a clear refusal, nothing retrained.
    assert study_cli.main([*argv, "--model-arg", "tiny_gnws:gn_groups=4"]) == 2
    err = capsys.readouterr().err
    assert "tiny_gnws-bs32 holds a finished run with other settings" in err
    assert "model_args: {'width': 8, 'gn_groups': 2} there" in err and "Use another --out" in err


def test_arguments_for_a_form_the_study_does_not_train_are_refused(tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--model-arg", "resnet50_gnws:gn_groups=8"]
    assert study_cli.main(argv) == 2
    assert "builder arguments for resnet50_gnws, which the mobilenetv2 study does not train" in capsys.readouterr().err
