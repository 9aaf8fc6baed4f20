"""The study: its quick mode end to end, resumption, refusals, and the statistics by hand."""

import json
import math

import keras
import numpy as np
import pytest
from scipy import stats

from xbn.cli import study as study_cli
from xbn.data import Augment, Pipeline, load_source
from xbn.diagnostics import estimation_shift
from xbn.study import analysis, forms_of, report, study_plan
from xbn.study.analysis import Estimate

FORMS = ("resnet20", "resnet20_xbn", "resnet20_gnws", "resnet20_brn")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """``xbn-study --quick`` run once: 16 runs (4 forms x batch 4, 16 x seeds 0, 1), two at a time."""
    root = tmp_path_factory.mktemp("study")
    readme = root / "README.md"
    readme.write_text("# Zoo\n\n<!-- begin:study -->\n<!-- end:study -->\n\n## After\n")
    argv = ["--quick", "--jobs", "2", "--out", str(root / "s"), "--publish", str(root / "pub"),
            "--readme", str(readme)]
    assert study_cli.main(argv) == 0
    return root, argv


def test_quick_mode_trains_every_cell_and_records_the_rows_the_issue_names(quick):
    root, _ = quick
    document = json.loads((root / "s" / "results.json").read_text())
    rows = document["rows"]
    assert [(r["model"], r["batch_size"], r["seed"]) for r in rows] == [
        (model, batch, seed) for seed in (0, 1) for batch in (16, 4) for model in FORMS
    ]
    for r in rows:
        assert {"model", "batch_size", "seed", "epochs", "steps", "lr", "top1_ema", "top1_precise_bn",
                "mean_shift", "var_shift", "layer_shifts", "corruption", "train_seconds"} <= set(r)
        assert r["epochs"] == 1 and r["steps"] == 3 and r["lr"] == pytest.approx(0.1 * r["batch_size"] / 64)
        run = root / "s" / r["run"]
        settings = json.loads((run / "run.json").read_text())["settings"]
        assert (settings["batch_size"], settings["seed"], settings["recalibrate_bn"]) == (r["batch_size"], r["seed"], 0)
        metrics = json.loads((run / "metrics.json").read_text())
        assert r["top1_ema"] == metrics["test"]["top1"] and r["train_seconds"] == metrics["train_seconds"]
        if r["norm"] == "gnws":  # batch-free: nothing shifts, nothing to recalibrate
            assert r["layer_shifts"] == [] and r["mean_shift"] is None
            assert r["top1_precise_bn"] == r["top1_ema"]
        else:
            depths = [layer["depth"] for layer in r["layer_shifts"]]
            assert depths == sorted(depths) and 0 < depths[0] and depths[-1] < 1
            assert r["mean_shift"] == pytest.approx(np.mean([la["mean_shift"] for la in r["layer_shifts"]]))
        # Corruptions at the normal batch, for the three forms H4 compares.
        scored = r["batch_size"] == 16 and r["norm"] != "brn"
        assert bool(r["corruption"]) == scored
        if scored:
            assert r["corruption"] == {"gaussian_noise": {"1": pytest.approx(r["corruption"]["gaussian_noise"]["1"]),
                                                          "5": pytest.approx(r["corruption"]["gaussian_noise"]["5"])},
                                       "contrast": {"3": pytest.approx(r["corruption"]["contrast"]["3"])}}
    # The shift in a row is the model's own, measured afresh on the test split.
    row = rows[1]  # resnet20_xbn at batch 16, seed 0
    model = keras.saving.load_model(root / "s" / row["run"] / "model.keras")
    test = Pipeline(load_source("digits"), 32, "torch", 64, augment=Augment(eval_crop=1.0)).evaluation("test")
    assert estimation_shift(model, test).mean_shift == pytest.approx(row["mean_shift"], rel=1e-5)


def test_quick_mode_publishes_tables_figures_and_the_readme_section_from_the_rows(quick):
    root, _ = quick
    rows = json.loads((root / "s" / "results.json").read_text())["rows"]
    table = (root / "s" / "study.md").read_text()
    assert "Command: `python scripts/study_batch_size.py --quick --jobs 2" in table
    assert "**Epochs are held equal** (1 per run" in table and "3 steps at batch 4, 3 steps at batch 16" in table
    for h in ("**H1**", "**H2**", "**H3**", "**H4**"):
        assert h in table
    # A table cell is the mean and sd over seeds of the rows.
    values = [100 * r["top1_ema"] for r in rows if r["model"] == "resnet20_xbn" and r["batch_size"] == 4]
    cell = f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}"
    line = next(li for li in table.splitlines() if li.startswith("| `resnet20_xbn` |"))
    assert line.split(" | ")[1] == cell
    for name in ("results.json", "study.md", *report.PLOTS.values()):
        assert (root / "pub" / name).is_file()
    assert (root / "pub" / "study_depth.png").read_bytes().startswith(b"\x89PNG")
    text = (root / "README.md").read_text()
    assert "![depth](pub/study_depth.png)" in text and text.endswith("## After\n")


def test_a_second_call_reuses_every_run_and_other_settings_are_refused(quick, capsys):
    root, argv = quick
    before = (root / "s" / "results.json").read_text()
    capsys.readouterr()
    assert study_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "16 finished and reused, 0 to train" in out
    assert json.loads((root / "s" / "results.json").read_text())["rows"] == json.loads(before)["rows"]
    # A run of the folder trained with other settings: refused by name, nothing retrained.
    run = root / "s" / "runs" / "resnet20-bs4-s0" / "run.json"
    info = json.loads(run.read_text())
    info["settings"]["lr"] = 0.5
    run.write_text(json.dumps(info))
    assert study_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "resnet20-bs4-s0 holds a run with other settings (lr: 0.5 there, 0.00625 asked)" in err
    assert "Use another --out" in err


def test_from_results_regenerates_without_training(quick, tmp_path, capsys):
    root, _ = quick
    readme = tmp_path / "R.md"
    readme.write_text("<!-- begin:study -->\n<!-- end:study -->\n")
    assert study_cli.main(["--from-results", str(root / "pub" / "results.json"), "--readme", str(readme)]) == 0
    assert "Command: `python scripts/study_batch_size.py --quick --jobs 2" in readme.read_text()
    assert study_cli.main(["--from-results", str(tmp_path / "none.json")]) == 2
    assert "no such file; run the study first" in capsys.readouterr().err


def test_the_published_plan():
    plan = study_plan()
    cells = plan.cells()
    assert plan.batch_sizes == (2, 4, 8, 16, 32, 64) and plan.seeds == (0, 1, 2) and plan.epochs == 8
    assert {c.form.label for c in cells} == {*FORMS, "resnet56", "resnet56_xbn"}
    brn = sorted({c.batch_size for c in cells if c.form.norm == "brn"})
    assert brn == [2, 4, 8, 16]  # batch renormalization stops at 16 (plan.BRN_MAX_BATCH)
    assert len(cells) == 3 * (3 * 6 + 4 + 2 * 2)
    scored = [c for c in cells if c.corruption]
    assert {(c.form.label, c.batch_size) for c in scored} == {(m, 64) for m in FORMS[:3]}
    assert len(scored[0].corruption) == 14 * 5
    assert plan.lr(2) == pytest.approx(0.003125)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        study_plan(seeds=(0,))


@pytest.mark.parametrize("argv, message", [
    (["--jobs", "0"], "jobs must be an integer >= 1; got 0"),
    (["--seeds", "3"], "at least 2 seeds per cell"),
    (["--model", "vgg"], "unknown models vgg, vgg_xbn, vgg_gnws; the study needs a registered network"),
])
def test_bad_arguments_are_named(argv, message, capsys, tmp_path):
    assert study_cli.main([*argv, "--quick", "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_estimates_and_verdicts_by_hand():
    e = Estimate.of([1.0, 2.0, 3.0])
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)  # 4.303 x sd 1 / sqrt 3
    assert (e.mean, e.sd, e.n) == (2.0, 1.0, 3) and e.low == pytest.approx(2 - half) and half == pytest.approx(2.484, abs=1e-3)
    assert e.verdict(0.0) == analysis.INCONCLUSIVE  # -0.48 .. 4.48 straddles 0
    assert Estimate.of([1.0, 1.1, 0.9]).verdict(0.0) == analysis.REPLICATES
    assert Estimate.of([-1.0, -1.1, -0.9]).verdict(0.0) == analysis.FAILS
    assert Estimate.of([-1.0, -1.1, -0.9]).verdict(0.0, above=False) == analysis.REPLICATES
    assert Estimate.of([None, 2.0]).n == 1 and Estimate.of([2.0]).verdict(0.0) == analysis.INCONCLUSIVE
    row = {"layer_shifts": [{"depth": d / 6, "mean_shift": s, "var_shift": 1.0}
                            for d, s in enumerate([1, 1, 2, 2, 4, 4], 1)]}
    assert analysis.accumulation_factor(row) == pytest.approx(4.0)  # last third 4 over first third 1
    assert analysis.accumulation_factor(row, "var_shift") == pytest.approx(1.0)
    assert analysis.accumulation_factor({"layer_shifts": row["layer_shifts"][:2]}) is None


def test_paired_differences_use_the_seeds_both_cells_have():
    rows = [{"model": m, "batch_size": 64, "seed": s, "top1_ema": v}
            for m, s, v in (("a", 0, 0.9), ("a", 1, 0.8), ("a", 2, 0.7), ("b", 0, 0.85), ("b", 2, 0.6))]
    cells = analysis.by_cell(rows)
    assert analysis.paired(cells, ("a", 64), ("b", 64), lambda r: r["top1_ema"]) == pytest.approx([0.05, 0.1])
    assert [f.label for f in forms_of("resnet20", brn=False)] == ["resnet20", "resnet20_xbn", "resnet20_gnws"]


def test_the_published_section_is_generated_from_the_committed_results():
    """Every number of models/README.md's study section comes from models/study/results.json."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "models"
    document = json.loads((root / "study" / "results.json").read_text())
    text = (root / "README.md").read_text()
    section = text[text.index("<!-- begin:study -->\n") + len("<!-- begin:study -->\n"):text.index("<!-- end:study -->")]
    assert section.strip() == report.to_markdown(document, document["command"], "study/").strip()
    rows = document["rows"]
    assert len({(r["model"], r["batch_size"]) for r in rows}) * 3 == len(rows)  # 3 seeds per cell
    vanilla = [r["top1_ema"] for r in rows if r["model"] == "resnet20" and r["batch_size"] == 64]
    assert np.mean(vanilla) >= 0.97  # the schedule trains the vanilla network at a normal batch
