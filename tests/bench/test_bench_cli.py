"""xbn-bench runs and writes its documents (a smoke run: no timing is judged)."""

import json

import pytest

from xbn import _hardware
from xbn.bench import report
from xbn.cli import bench as cli


def test_quick_layer_suite_writes_json_markdown_and_readme_section(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# Zoo\n\n<!-- begin:bench -->\n<!-- end:bench -->\n")
    code = cli.main(
        ["--suite", "layers", "--quick", "--repeats", "1", "--warmup", "0",
         "--out", str(tmp_path / "out"), "--readme", str(readme)]
    )
    assert code == 0
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    cases = [row["case"] for row in result["rows"]]
    assert any(c.startswith("BatchNorm train") for c in cases)
    assert any(c.startswith("GroupNorm(G=8) inference") for c in cases)
    for row in result["rows"]:
        assert row["xbn"] > 0 and row["baseline"] > 0
        assert row["speedup"] == pytest.approx(row["baseline"] / row["xbn"])
        assert row["baseline_name"].startswith("keras.layers.")
    assert result["machine"]["tensorflow"]
    # The figures name the CPU and its vector extensions.
    assert result["machine"]["cpu_label"] == _hardware.cpu_label()
    table = (tmp_path / "out" / "results.md").read_text()
    assert table.count("\n| layers |") == len(result["rows"])
    assert f"on {_hardware.cpu_label()}, TensorFlow" in table
    # Published: this machine's record beside the README, and the section from the records.
    (record,) = (tmp_path / "bench").glob("*.json")
    assert record.name == f"{report.machine_slug(result)}.json"
    assert json.loads(record.read_text()) == result
    text = readme.read_text()
    assert "| layers | BatchNorm train" in text and f"#### {_hardware.cpu_label()}" in text
    assert "wrote" in capsys.readouterr().out
    # A README inside a bench folder (models/bench/README.md) keeps the records beside it.
    inside = tmp_path / "published" / "bench" / "README.md"
    inside.parent.mkdir(parents=True)
    inside.write_text("<!-- begin:bench -->\n<!-- end:bench -->\n")
    report.write(result, readme=inside)
    assert [p.name for p in inside.parent.glob("*.json")] == [record.name]
    assert "| layers | BatchNorm train" in inside.read_text()


def _record(date, cpu, extensions, speedup):
    info = {"model": cpu, "family": "25", "model_number": "17", "extensions": extensions, "cores": 2}
    return {
        "date": date, "command": "xbn-bench", "repeats": 10, "quick": False,
        "machine": {"device": "CPU", "cpu": cpu, "cpu_info": info, "cpu_label": _hardware.cpu_label(info),
                    "cpu_count": 2, "tensorflow": "2.21.0", "keras": "3.15.1"},
        "rows": [{"suite": "models", "case": "ResNet-50 step", "unit": "images/s", "xbn": 10 * speedup,
                  "baseline": 10.0, "baseline_name": "keras", "speedup": speedup, "goal": 1.3}],
    }


def test_published_speedups_are_ranges_over_the_machines(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("<!-- begin:bench -->\n<!-- end:bench -->\n")
    fast = _record("2026-11-22T10:00:00+00:00", "AMD EPYC", ["AVX2", "AVX-512"], 1.41)
    slow = _record("2026-11-23T10:00:00+00:00", "Intel Xeon", ["AVX2"], 1.17)
    report.write(fast, readme=readme)
    report.write(slow, readme=readme)
    assert report.machine_slug(fast) != report.machine_slug(slow)
    text = readme.read_text()
    assert "| models | ResNet-50 step | 1.17x - 1.41x | 2 | 1.30x | 1 of 2 |" in text
    assert text.index(f"#### {fast['machine']['cpu_label']}") < text.index(f"#### {slow['machine']['cpu_label']}")
    # A machine measured again replaces its own record, not the other's.
    report.write({**fast, "date": "2026-11-24T10:00:00+00:00", "rows": [{**fast["rows"][0], "speedup": 1.5}]},
                 readme=readme)
    assert len(list((tmp_path / "bench").glob("*.json"))) == 2
    assert "| 1.17x - 1.50x | 2 |" in readme.read_text()


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
        "MobileNetV2 training step (bs 2, 32x32): keras.applications.MobileNetV2 after "
        "xbn.surgery.to_xbn_layers vs before",
        "MobileNetV2 training step (bs 2, 32x32): mobilenetv2_xbn vs mobilenetv2 (price of XBN)",
        "ResNet-20 training step (bs 2, 32x32): resnet20_xbn vs resnet20 (price of XBN)",
        "MobileNetV2 training step (bs 2, 32x32, mixed_bfloat16): mobilenetv2 vs keras",
        "MobileNetV2 training step (bs 2, 32x32, mixed_bfloat16): mobilenetv2_xbn vs mobilenetv2 (price of XBN)",
        "MobileNetV2 training step (bs 2, 32x32): mobilenetv2 with mixed_bfloat16 vs without",
    ]
    assert by_suite["models"][-1]["goal"] is None  # informational: does bfloat16 pay here?
    cifar = by_suite["models"][3]  # no keras.applications twin: the price of XBN only
    assert cifar["baseline_name"] == "xbn resnet20" and cifar["goal"] == by_suite["models"][2]["goal"]
    assert by_suite["models"][0]["baseline_name"] == "keras.applications.MobileNetV2"
    assert [row["case"].split(":")[0] for row in by_suite["export"]] == [
        "resnet20 SavedModel serving_default, batch 1, 32x32",
        "resnet20 SavedModel serving_default, batch 2, 32x32",
    ]
    assert all(row["goal"] == 1.0 for row in by_suite["export"])
    (pipeline,) = by_suite["pipeline"]
    assert pipeline["goal"] == 2.0 and pipeline["baseline_name"] == "mobilenetv2 training step"


def test_variants_need_the_models_suite(capsys):
    assert cli.main(["--suite", "layers", "--jit-compile"]) == 2
    assert "add --suite models" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends_run_the_layer_and_model_suites(backend, tmp_path):
    """--backend runs the bench under that keras backend (a fresh process here,
    where keras already runs on TensorFlow) with the backend's own step; the
    record names the backend and files under it.  The variants: bfloat16
    layers on JAX (its models' variant costs minutes of compiling on a CPU and
    is the TensorFlow test's), torch.compile on PyTorch."""
    readme = tmp_path / "README.md"
    readme.write_text("<!-- begin:bench -->\n<!-- end:bench -->\n")
    common = ["--backend", backend, "--quick", "--repeats", "1", "--warmup", "1", "--readme", str(readme)]
    runs = ([["--suite", "layers", "--mixed-precision", "bfloat16"], ["--suite", "models"]] if backend == "jax"
            else [["--suite", "layers", "--suite", "models", "--jit-compile"]])
    cases = []
    for i, argv in enumerate(runs):
        assert cli.main([*common, *argv, "--out", str(tmp_path / f"out{i}")]) == 0
        result = json.loads((tmp_path / f"out{i}" / "results.json").read_text())
        assert result["machine"]["backend"] == backend and result["machine"][backend]
        assert result["machine"]["device"] == "CPU"
        for row in result["rows"]:
            assert row["xbn"] > 0 and row["baseline"] > 0
        cases += [row["case"] for row in result["rows"]]
    assert "BatchNorm train fwd+bwd (4, 16, 16, 32)" in cases
    assert "MobileNetV2 training step (bs 2, 32x32): mobilenetv2 vs keras" in cases
    assert ("BatchNorm train fwd+bwd (4, 16, 16, 32) bfloat16" if backend == "jax" else
            "MobileNetV2 training step (bs 2, 32x32, torch.compile): mobilenetv2 vs keras") in cases
    (record,) = (tmp_path / "bench").glob("*.json")  # one per backend and machine, the newest
    assert record.name.startswith(f"{backend}-")
    name = report.BACKEND_NAMES[backend]
    assert f"### {name} on a CPU" in readme.read_text()
    assert f", {name} {result['machine'][backend]}, Keras" in (tmp_path / f"out{i}" / "results.md").read_text()


def test_a_readme_that_is_not_there_is_refused_before_anything_runs(tmp_path, capfd):
    """A mistyped --readme once wrote a new Markdown file (and its folder)
    after the whole benchmark had run."""
    missing = tmp_path / "nowhere" / "READM.md"
    assert cli.main(["--suite", "layers", "--quick", "--out", str(tmp_path / "out"), "--readme", str(missing)]) == 2
    assert (f"--readme {missing}: no such file; name an existing Markdown file (its generated 'bench' section is "
            "replaced, or appended where it has none)") in capfd.readouterr().err
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "out").exists()


def test_tensorflow_suites_are_refused_on_another_backend(capfd):
    assert cli.main(["--backend", "jax", "--suite", "export", "--quick"]) == 2
    assert "run it with --backend tensorflow" in capfd.readouterr().err
