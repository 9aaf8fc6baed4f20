"""The batch-size study's mechanics, on the tiny stand-in model."""

import json

import pytest

from tiny import tiny_zoo  # noqa: F401  (fixture)
from xbn.cli import study as study_cli
from xbn.diagnostics import study


def test_study_trains_every_form_at_every_batch_size_and_reuses_runs(tiny_zoo, tmp_path, capsys):  # noqa: F811
    readme = tmp_path / "README.md"
    readme.write_text("# Zoo\n\n<!-- begin:study -->\n<!-- end:study -->\n\n## After\n")
    argv = ["--batch-sizes", "64", "32", "--epochs", "1", "--out", str(tmp_path / "s"), "--readme", str(readme)]
    assert study_cli.main(argv) == 0, capsys.readouterr().err
    first = capsys.readouterr().out
    results = json.loads((tmp_path / "s" / "study.json").read_text())
    assert [(r["model"], r["batch_size"]) for r in results] == [
        (model, batch) for model in study.FAMILIES["mobilenetv2"] for batch in (32, 64)
    ]
    for r in results:
        assert 0 <= r["test_top1"] <= 1 and r["mean_shift"] >= 0
        assert (tmp_path / "s" / f"{r['model']}-bs{r['batch_size']}" / "model.keras").is_file()
    table = (tmp_path / "s" / "study.md").read_text()
    assert "| model | bs 32 | bs 64 |" in table
    assert "| `mobilenetv2_xbn` |" in table and "| BN | 23.6 | 23.7 | 24.8 | 27.3 | 34.7 |" in table
    assert "Command: `python scripts/study_batch_size.py --batch-sizes 64 32" in table
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
])
def test_bad_arguments_are_named(argv, message, capsys, tmp_path):
    assert study_cli.main([*argv, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_per_form_builder_arguments_and_no_reuse_of_runs_with_other_settings(tiny_zoo, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "s"
    argv = ["--batch-sizes", "32", "--epochs", "1", "--out", str(out)]
    assert study_cli.main([*argv, "--model-arg", "mobilenetv2_gnws:gn_groups=8"]) == 0, capsys.readouterr().err
    settings = {
        model: json.loads((out / f"{model}-bs32" / "run.json").read_text())["settings"]["model_args"]
        for model in study.FAMILIES["mobilenetv2"]
    }
    assert settings == {
        "mobilenetv2": {"alpha": 0.35}, "mobilenetv2_xbn": {"alpha": 0.35},
        "mobilenetv2_gnws": {"alpha": 0.35, "gn_groups": 8},
    }
    capsys.readouterr()
    # The same folder with other arguments: a clear refusal, nothing retrained.
    assert study_cli.main([*argv, "--model-arg", "mobilenetv2_gnws:gn_groups=4"]) == 2
    err = capsys.readouterr().err
    assert "mobilenetv2_gnws-bs32 holds a finished run with other settings" in err
    assert "model_args: {'alpha': 0.35, 'gn_groups': 8} there" in err and "Use another --out" in err


def test_arguments_for_a_form_the_study_does_not_train_are_refused(tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--model-arg", "resnet50_gnws:gn_groups=8"]
    assert study_cli.main(argv) == 2
    assert "builder arguments for resnet50_gnws, which the mobilenetv2 study does not train" in capsys.readouterr().err
