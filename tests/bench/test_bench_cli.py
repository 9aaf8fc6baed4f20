"""xbn-bench runs and writes its documents (a smoke run: no timing is judged)."""

import json

import pytest

from xbn.bench import report
from xbn.cli import bench as cli


def test_quick_layer_suite_writes_json_markdown_and_readme_section(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# Zoo\n\n<!-- begin:bench -->\n<!-- end:bench -->\n")
    code = cli.main(
        ["--suite", "layers", "--quick", "--repeats", "1", "--warmup", "0",
         "--out", str(tmp_path / "bench"), "--readme", str(readme)]
    )
    assert code == 0
    result = json.loads((tmp_path / "bench" / "results.json").read_text())
    cases = [row["case"] for row in result["rows"]]
    assert any(c.startswith("BatchNorm train") for c in cases)
    assert any(c.startswith("GroupNorm(G=8) inference") for c in cases)
    for row in result["rows"]:
        assert row["xbn"] > 0 and row["baseline"] > 0
        assert row["speedup"] == pytest.approx(row["baseline"] / row["xbn"])
        assert row["baseline_name"].startswith("keras.layers.")
    assert result["machine"]["tensorflow"]
    table = (tmp_path / "bench" / "results.md").read_text()
    assert table.count("\n| layers |") == len(result["rows"])
    assert "| layers | BatchNorm train" in readme.read_text()
    assert "wrote" in capsys.readouterr().out


def test_goal_verdicts():
    assert report.goal_met({"speedup": 2.1, "goal": 2.0}) is True
    assert report.goal_met({"speedup": 0.9, "goal": 1.0}) is False
    assert report.goal_met({"speedup": 0.9, "goal": None}) is None


@pytest.mark.parametrize("argv", [["--repeats", "0"], ["--warmup", "-1"]])
def test_bad_counts_are_refused(argv, capsys):
    assert cli.main(argv) == 2
    assert "xbn-bench: error: --repeats must be >= 1" in capsys.readouterr().err


def test_unknown_suite_is_refused_by_argparse(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--suite", "nope"])
    assert "invalid choice" in capsys.readouterr().err


def test_quick_model_export_and_pipeline_suites_with_a_precision_variant(tmp_path, capsys):
    code = cli.main([
        "--suite", "models", "--suite", "export", "--suite", "pipeline", "--quick",
        "--repeats", "1", "--warmup", "0", "--mixed-precision", "bfloat16",
        "--out", str(tmp_path),
    ])
    assert code == 0, capsys.readouterr().err
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    by_suite = {}
    for row in rows:
        by_suite.setdefault(row["suite"], []).append(row)
        assert row["xbn"] > 0 and row["baseline"] > 0
        assert row["speedup"] == pytest.approx(
            row["xbn"] / row["baseline"] if row["unit"] == "images/s" else row["baseline"] / row["xbn"]
        )
    models = [row["case"] for row in by_suite["models"]]
    assert models == [
        "MobileNetV2 training step (bs 2, 32x32): mobilenetv2 vs keras",
        "MobileNetV2 training step (bs 2, 32x32): mobilenetv2_xbn vs mobilenetv2 (price of XBN)",
        "MobileNetV2 training step (bs 2, 32x32, mixed_bfloat16): mobilenetv2 vs keras",
    ]
    assert by_suite["models"][0]["baseline_name"] == "keras.applications.MobileNetV2"
    assert [row["case"].split(":")[0] for row in by_suite["export"]] == [
        "mobilenetv2 SavedModel serving_default, batch 1, 32x32",
        "mobilenetv2 SavedModel serving_default, batch 2, 32x32",
    ]
    assert all(row["goal"] == 1.0 for row in by_suite["export"])
    (pipeline,) = by_suite["pipeline"]
    assert pipeline["goal"] == 2.0 and pipeline["baseline_name"] == "mobilenetv2 training step"


def test_variants_need_the_models_suite(capsys):
    assert cli.main(["--suite", "layers", "--jit-compile"]) == 2
    assert "add --suite models" in capsys.readouterr().err
