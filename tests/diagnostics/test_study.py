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
from xbn.diagnostics.estimation_shift import shift_metrics
from xbn.study import analysis, forms_of, report, runner, study_plan
from xbn.study.analysis import Estimate
from xbn.study.plan import SEEDS

FORMS = ("resnet20", "resnet20_xbn", "resnet20_gnws", "resnet20_brn")
QUICK_FORMS = FORMS[:3]  # the quick plan trains no batch-renormalized form


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """``xbn-study --quick`` run once: 12 runs (3 forms x batch 4, 16 x seeds 0, 1), two at a time."""
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
        (model, batch, seed) for seed in (0, 1) for batch in (16, 4) for model in QUICK_FORMS
    ]
    for r in rows:
        assert {"model", "batch_size", "seed", "purpose", "epochs", "steps", "lr", "lr_scale", "top1_ema",
                "val_top1", "top1_precise_bn", "precise_bn_changed", "mean_shift", "var_shift", "train_mean_shift",
                "noise_mean_shift", "layer_shifts", "corruption", "shift_top1", "train_seconds"} <= set(r)
        assert r["purpose"] == "study" and r["lr_scale"] == 1.0  # the quick plan tunes nothing
        assert r["epochs"] == 1 and r["steps"] == 3 and r["lr"] == pytest.approx(0.1 * r["batch_size"] / 64)
        assert 0 <= r["shift_top1"] <= 1 and 0 <= r["precise_bn_changed"] <= document["plan"]["test_images"]
        run = root / "s" / r["run"]
        settings = json.loads((run / "run.json").read_text())["settings"]
        assert (settings["batch_size"], settings["seed"], settings["recalibrate_bn"]) == (r["batch_size"], r["seed"], 0)
        metrics = json.loads((run / "metrics.json").read_text())
        assert r["top1_ema"] == metrics["test"]["top1"] and r["train_seconds"] == metrics["train_seconds"]
        if r["norm"] == "gnws":  # batch-free: nothing shifts, nothing to recalibrate
            assert r["layer_shifts"] == [] and r["mean_shift"] is None
            assert r["top1_precise_bn"] == r["top1_ema"] and r["precise_bn_changed"] == 0
        else:
            depths = [layer["depth"] for layer in r["layer_shifts"]]
            assert depths == sorted(depths) and 0 < depths[0] and depths[-1] < 1
            for key in ("mean_shift", "train_mean_shift", "noise_mean_shift"):
                assert r[key] == pytest.approx(np.mean([la[key] for la in r["layer_shifts"]]))
            # Precise BN's own account: it settled every layer (the default bound always does).
            assert r["precise_bn_converged"] is True and 2 <= r["precise_bn_passes"] <= 1 + len(depths) + 2
        # Corruptions at the normal batch, for the three forms H4 compares.
        scored = r["batch_size"] == 16 and r["norm"] != "brn"
        assert bool(r["corruption"]) == scored
        if scored:
            assert r["corruption"] == {"gaussian_noise": {"1": pytest.approx(r["corruption"]["gaussian_noise"]["1"]),
                                                          "5": pytest.approx(r["corruption"]["gaussian_noise"]["5"])},
                                       "contrast": {"3": pytest.approx(r["corruption"]["contrast"]["3"])}}
    # The shift in a row is the model's own, measured afresh on the test split
    # and on the unaugmented training split.
    row = rows[1]  # resnet20_xbn at batch 16, seed 0
    model = keras.saving.load_model(root / "s" / row["run"] / "model.keras")
    quick_data = load_source("digits_m", data_args=dict(study_plan(quick=True).data_args))
    pipeline = Pipeline(quick_data, 16, "torch", 64, augment=Augment(eval_crop=1.0))
    assert estimation_shift(model, pipeline.evaluation("test")).mean_shift == pytest.approx(row["mean_shift"], rel=1e-4)
    assert estimation_shift(model, pipeline.evaluation("train")).mean_shift == pytest.approx(
        row["train_mean_shift"], rel=1e-4)


def test_quick_mode_publishes_tables_figures_and_the_readme_section_from_the_rows(quick):
    root, _ = quick
    rows = json.loads((root / "s" / "results.json").read_text())["rows"]
    table = (root / "s" / "study.md").read_text()
    assert "Command: `xbn-study --quick --jobs 2" in table
    assert "**Epochs are held equal** (1 per run" in table and "3 steps at batch 4, 3 steps at batch 16" in table
    assert "(359 test images: one image is 0.279 points)" in table
    for h in ("**H1**", "**H2**", "**H3**", "**H4**"):
        assert h in table
    settled = [r for r in rows if r["layer_shifts"]]
    passes = [r["precise_bn_passes"] for r in settled]
    assert (f"Precise BN settled every BatchNorm in {len(settled)} of {len(settled)} runs that record it "
            f"({min(passes)}-{max(passes)} passes).") in table
    # A table cell is the mean and sd over seeds of the rows.
    values = [100 * r["top1_ema"] for r in rows if r["model"] == "resnet20_xbn" and r["batch_size"] == 4]
    half = stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values))
    cell = f"{np.mean(values):.1f} ± {half:.1f}"  # mean and the 95% CI's half-width
    line = next(li for li in table.splitlines() if li.startswith("| `resnet20_xbn` |"))
    assert line.split(" | ")[1] == cell
    for name in ("results.json", "study.md", *(f for n, f in report.PLOTS.items() if n != "convergence")):
        assert (root / "pub" / name).is_file()
    # The quick plan trains no convergence runs: no figure of them, and none linked.
    assert not (root / "pub" / report.PLOTS["convergence"]).exists() and report.PLOTS["convergence"] not in table
    assert (root / "pub" / "study_depth.png").read_bytes().startswith(b"\x89PNG")
    text = (root / "README.md").read_text()
    assert "![depth](pub/study_depth.png)" in text and text.endswith("## After\n")


def test_a_second_call_reuses_every_run_and_other_settings_are_refused(quick, capsys):
    root, argv = quick
    before = (root / "s" / "results.json").read_text()
    capsys.readouterr()
    assert study_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "12 finished and reused, 0 to train" in out
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


def test_reuse_takes_a_published_study_s_rows_and_trains_only_what_they_lack(quick, tmp_path, capsys):
    """``--reuse``: the published rows stand in for run folders that are gone;
    a row that is no run of the plan (here: another learning rate) is trained
    again, and the recorded command leaves ``--reuse`` out."""
    root, _ = quick
    published = json.loads((root / "pub" / "results.json").read_text())
    altered = json.loads(json.dumps(published))
    altered["rows"][0]["lr"] = 0.5
    source = tmp_path / "published.json"
    source.write_text(json.dumps(altered))
    out = tmp_path / "bigger"
    capsys.readouterr()
    assert study_cli.main(["--quick", "--jobs", "1", "--out", str(out), "--reuse", str(source)]) == 0
    printed = capsys.readouterr().out
    assert f"reused 11 of the 12 rows of {source}" in printed
    assert "12 study runs: 11 finished and reused, 1 to train or complete" in printed
    document = json.loads((out / "results.json").read_text())
    assert document["command"] == f"xbn-study --quick --jobs 1 --out {out}"
    assert document["rows"][1:] == published["rows"][1:]
    retrained = document["rows"][0]
    assert retrained["run"] == published["rows"][0]["run"] and retrained["lr"] == published["rows"][0]["lr"]
    assert (out / retrained["run"] / "run.json").is_file() and not (out / document["rows"][1]["run"]).joinpath(
        "run.json").exists()
    # Rows measured on other data or at another input size are refused as a whole.
    altered["plan"]["image_size"] = 24
    source.write_text(json.dumps(altered))
    assert study_cli.main(["--quick", "--out", str(tmp_path / "other"), "--reuse", str(source)]) == 2
    assert "was measured with other settings (image_size: 24 there, 16 asked)" in capsys.readouterr().err
    assert not (tmp_path / "other" / "runs").exists()
    assert study_cli.main(["--quick", "--out", str(out), "--reuse", str(tmp_path / "none.json")]) == 2
    assert "--reuse " + str(tmp_path / "none.json") + ": no such file" in capsys.readouterr().err
    assert study_cli.main(["--from-results", str(source), "--reuse", str(source)]) == 2
    assert "give one of them" in capsys.readouterr().err
    assert study_cli._without_reuse(["--quick", "--reu", "f", "--reuse=g", "--jobs", "1", "--reus", "h"]) == [
        "--quick", "--jobs", "1"]
    source.write_text("{")
    assert study_cli.main(["--quick", "--out", str(out), "--reuse", str(source)]) == 2
    assert f"--reuse {source} is not JSON" in capsys.readouterr().err
    source.write_text(json.dumps({"plan": {}, "rows": [1]}))
    assert study_cli.main(["--quick", "--out", str(out), "--reuse", str(source)]) == 2
    assert f"{source} is not a study's results.json" in capsys.readouterr().err


def test_from_results_regenerates_without_training(quick, tmp_path, capsys):
    root, _ = quick
    readme = tmp_path / "R.md"
    readme.write_text("<!-- begin:study -->\n<!-- end:study -->\n")
    assert study_cli.main(["--from-results", str(root / "pub" / "results.json"), "--readme", str(readme)]) == 0
    assert "Command: `xbn-study --quick --jobs 2" in readme.read_text()
    assert study_cli.main(["--from-results", str(tmp_path / "none.json")]) == 2
    assert "no such file; run the study first" in capsys.readouterr().err
    missing = tmp_path / "nowhere" / "READM.md"  # refused before anything is trained or written
    for argv in (["--from-results", str(root / "pub" / "results.json")], ["--quick", "--out", str(tmp_path / "s")]):
        assert study_cli.main([*argv, "--readme", str(missing)]) == 2
        assert f"--readme {missing}: no such file; name an existing Markdown file (its generated 'study' section" \
            in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "s").exists()
    for text in ("[]", '{"rows": []}', '{"plan": {}, "rows": [1]}'):  # JSON, but no study's results
        (tmp_path / "other.json").write_text(text)
        assert study_cli.main(["--from-results", str(tmp_path / "other.json")]) == 2
        assert (f"--from-results {tmp_path / 'other.json'} is not a study's results.json (it has no 'plan' and "
                "'rows'); run the study first") in capsys.readouterr().err


def test_the_published_plan():
    from xbn.study.plan import LR_SCALES, TUNING_SEED

    plan = study_plan()
    assert plan.batch_sizes == (2, 4, 8, 16, 64) and len(plan.seeds) >= 5 and plan.data == "digits_m"
    assert plan.image_size == 16 and plan.normal_batch == 64 and plan.shift_data == "digits"
    tuning = plan.tuning_cells()
    assert {c.seed for c in tuning} == {TUNING_SEED} and TUNING_SEED not in plan.seeds
    assert {c.batch_size for c in tuning} == {2, 64}
    assert len(tuning) == len(plan.sweep) * 2 * len(LR_SCALES)
    scales = {(c.form.label, c.batch_size): 2.0 for c in tuning}
    cells = plan.cells(scales)
    study = [c for c in cells if c.purpose == "study"]
    assert {c.form.label for c in study} == {*FORMS, "resnet56", "resnet56_xbn"}
    assert all(c.lr_scale == 2.0 for c in study)  # the depth forms take their sweep form's scale
    # Between tuned batches, log-log interpolation rounded to a tried scale.
    form = plan.sweep[0]
    scales = {(form.label, 2): 0.5, (form.label, 64): 2.0}
    assert [plan.scale(scales, form, b) for b in (2, 4, 8, 16, 64)] == [0.5, 0.5, 1.0, 1.0, 2.0]
    brn = sorted({c.batch_size for c in study if c.form.norm == "brn"})
    assert brn == [2, 4, 8, 16, 64]  # the ramp trains batch renormalization at every batch
    depth = len(plan.depth) * len(plan.depth_batch_sizes)
    assert len(study) == len(plan.seeds) * (4 * 5 + depth)
    converge = [c for c in cells if c.purpose == "convergence"]
    assert {(c.batch_size, c.epochs) for c in converge} == {(64, 2 * plan.epochs)}
    assert len(converge) == len(plan.seeds) * 4 and len({c.name for c in cells}) == len(cells)
    scored = [c for c in study if c.corruption]
    assert {(c.form.label, c.batch_size) for c in scored} == {(m, 64) for m in FORMS[:3]}
    assert len(scored[0].corruption) == 14 * 5
    assert plan.lr(2) == pytest.approx(0.003125) and plan.lr(2, 2.0) == pytest.approx(0.00625)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        study_plan(seeds=(0,))
    with pytest.raises(ValueError, match="seed 100 is held out"):
        study_plan(seeds=(0, 100))


def test_batch_renormalization_s_ramp_is_sized_to_each_run():
    """Ioffe's ramp, from the end of the warm-up epoch to 40% (rmax) and 25%
    (dmax) of the run's steps: 3 steps of one epoch ramp at once; a full run
    of the published plan over thousands of steps."""
    from xbn.study.plan import Cell

    brn = forms_of("resnet20")[3]
    quick = study_plan(quick=True)
    args = runner._model_args(Cell(brn, 4, 0), quick)
    assert args["bn_kind"] == "brn" and args["bn_options"]["renorm_ramp"] == {"rmax": (0, 1), "dmax": (0, 1)}
    plan = study_plan()
    per_epoch, epochs = runner._steps(Cell(brn, 64, 0), plan)
    ramp = runner._model_args(Cell(brn, 64, 0), plan)["bn_options"]["renorm_ramp"]
    steps = per_epoch * epochs
    assert ramp == {"rmax": (per_epoch, round(0.4 * steps)), "dmax": (per_epoch, round(0.25 * steps))}
    assert ramp["rmax"][1] > ramp["rmax"][0] > 0


def test_a_smaller_plan_says_what_it_leaves_out():
    """The options that shrink the plan (issue 21 allows a subset of batch
    sizes with the reason): the cells follow, seed by seed with each seed's
    convergence runs, and the report names everything left out."""
    plan = study_plan(batch_sizes=(64, 2), tune=False, brn=False, depth=None, epochs=10,
                      convergence_seeds=(0, 1))
    assert plan.batch_sizes == (2, 64) and plan.normal_batch == 64 and not plan.depth
    assert plan.tuning_cells() == [] and [f.norm for f in plan.sweep] == ["bn", "xbn", "gnws"]
    cells = plan.cells()
    assert [(c.seed, c.batch_size, c.purpose) for c in cells[:9]] == (
        [(0, 64, "study")] * 3 + [(0, 2, "study")] * 3 + [(0, 64, "convergence")] * 3)
    assert {c.seed for c in cells if c.purpose == "convergence"} == {0, 1}
    assert len(cells) == 5 * 6 + 2 * 3
    rows = [{"model": f.label, "norm": f.norm, "batch_size": b, "seed": 0, "steps": 1, "purpose": "study",
             "top1_ema": 0.5, "top1_precise_bn": 0.5} for f in plan.sweep for b in plan.batch_sizes]
    text = report.to_markdown({"plan": plan.describe(), "rows": rows}, "xbn-study ...")
    scope = next(line for line in text.splitlines() if line.startswith("**Scope**"))
    for left_out in ("batch sizes 4, 8, 16", "`resnet20_brn`", "`resnet56`", "learning-rate tuning",
                     "beyond seed(s) 0, 1", "10 of the full plan's 20 epochs"):
        assert left_out in scope
    with pytest.raises(ValueError, match="convergence_seeds"):
        study_plan(convergence_seeds=(7,))


def test_the_deeper_network_can_take_fewer_seeds():
    """``depth_seeds``: ResNet-56's runs cost 2.8 times ResNet-20's, so a
    study can train them on some seeds now and add the others later; the
    sweep keeps every seed and the report says which are missing."""
    plan = study_plan(batch_sizes=(2, 64), tune=False, brn=False, seeds=(0, 1, 2, 3), depth_seeds=(2, 0))
    cells = [c for c in plan.cells() if c.purpose == "study"]
    deep = [(c.form.label, c.batch_size, c.seed) for c in cells if c.form in plan.depth]
    assert deep == [(f.label, b, s) for s in (0, 2) for b in (64, 8) for f in plan.depth]
    assert {c.seed for c in cells if c.form in plan.sweep} == {0, 1, 2, 3}
    assert plan.describe()["depth_seeds"] == [2, 0] and study_plan().describe()["depth_seeds"] == list(SEEDS)
    rows = [{"model": f.label, "norm": f.norm, "batch_size": b, "seed": 0, "steps": 1, "purpose": "study",
             "top1_ema": 0.5, "top1_precise_bn": 0.5} for f in plan.sweep for b in plan.batch_sizes]
    text = report.to_markdown({"plan": plan.describe(), "rows": rows}, "xbn-study ...")
    scope = next(li for li in text.splitlines() if li.startswith("**Scope"))
    assert "the deeper network's seeds beyond 2, 0" in scope
    assert "the deeper network at batch sizes 2 (`--depth-batch-sizes`)" in scope
    for seeds, message in (((0,), "at least 2 of the seeds"), ((0, 7), "at least 2 of the seeds")):
        with pytest.raises(ValueError, match=message):
            study_plan(seeds=(0, 1, 2), depth_seeds=seeds)
    with pytest.raises(ValueError, match="depth_seeds .* the plan has none"):
        study_plan(depth=None, depth_seeds=(0, 1))


def test_the_deeper_network_can_take_other_batch_sizes():
    """``depth_batch_sizes`` (issue 21: the depth figure at every batch size
    studied): the deeper forms train at those."""
    plan = study_plan(batch_sizes=(2, 8, 64), tune=False, brn=False, seeds=(0, 1), depth_batch_sizes=(64, 2, 8))
    deep = [(c.form.label, c.batch_size) for c in plan.cells() if c.form in plan.depth and c.seed == 0]
    assert deep == [(f.label, b) for b in (64, 8, 2) for f in plan.depth]
    assert plan.describe()["depth_batch_sizes"] == [2, 8, 64]
    assert study_plan().depth_batch_sizes == (8, 64)
    with pytest.raises(ValueError, match=r"batch sizes must be integers >= 2 .* got \(2, 64, 1\)"):
        study_plan(batch_sizes=(2, 64), depth_batch_sizes=(1,))
    with pytest.raises(ValueError, match="depth_batch_sizes .* the plan has none"):
        study_plan(depth=None, depth_batch_sizes=(8,))


def test_the_normal_batch_can_take_more_epochs_until_it_converges():
    """``normal_epochs`` (issue 21: converged batch-64 references): only the
    normal batch's runs take them, its convergence runs twice them, the runs
    at the small batches keep their names (a study of ``epochs`` alone is
    reused), and the report says the epochs are not held equal."""
    plan = study_plan(batch_sizes=(2, 64), tune=False, brn=False, depth=None, epochs=10, normal_epochs=40,
                      convergence_seeds=(0,), seeds=(0, 1))
    cells = plan.cells()
    study = {(c.batch_size, c.purpose): c.epochs for c in cells}
    assert study == {(64, "study"): 40, (2, "study"): None, (64, "convergence"): 80}
    assert {c.name for c in cells if c.batch_size == 2} == {
        c.name for c in study_plan(batch_sizes=(2, 64), tune=False, brn=False, depth=None, epochs=10,
                                   seeds=(0, 1)).cells() if c.batch_size == 2}
    assert [runner._steps(c, plan)[1] for c in cells[:4]] == [40, 40, 40, 10]
    described = plan.describe()
    assert (described["epochs"], described["normal_epochs"]) == (10, 40)
    assert study_plan(epochs=10).describe()["normal_epochs"] == 10
    tuned = study_plan(batch_sizes=(2, 64), brn=False, depth=None, epochs=10, normal_epochs=40)
    assert {(c.batch_size, c.epochs) for c in tuned.tuning_cells()} == {(64, 40), (2, None)}
    rows = [{"model": f.label, "norm": f.norm, "batch_size": b, "seed": s, "steps": 39 * plan.epochs_at(b),
             "purpose": "study", "top1_ema": 0.5, "top1_precise_bn": 0.5}
            for f in plan.sweep for b in plan.batch_sizes for s in plan.seeds]
    text = report.to_markdown({"plan": described, "rows": rows}, "xbn-study ...")
    assert "**Epochs are held equal below the normal batch** (10 per run" in text
    assert "the batch-64 references take 40" in text
    assert "10 of the full plan's 20 epochs per run below batch 64" in text
    with pytest.raises(ValueError, match="`normal_epochs` must be >= `epochs`"):
        study_plan(epochs=10, normal_epochs=5)


def test_a_form_can_take_normal_epochs_of_its_own():
    """``form_normal_epochs`` (issue 21: GN+WS's batch-64 reference was
    lower with twice its 40 epochs, past its best): only that form's
    normal-batch runs (tuning, study and convergence) take its epochs, their
    folders say them (the plan's runs of the same cell keep theirs), and the
    report names the form's epochs."""
    common = dict(batch_sizes=(2, 64), brn=False, depth="resnet56", depth_batch_sizes=(64,), epochs=10,
                  normal_epochs=40, convergence_seeds=(0,), seeds=(0, 1))
    base, plan = study_plan(**common), study_plan(**common, form_normal_epochs={"gnws": 20})
    gnws = next(f for f in plan.sweep if f.norm == "gnws")
    epochs = {(c.form.label, c.batch_size, c.purpose): runner._steps(c, plan)[1] for c in plan.cells() if c.seed == 0}
    assert epochs[gnws.label, 64, "study"] == 20 and epochs[gnws.label, 64, "convergence"] == 40
    assert epochs[gnws.label, 2, "study"] == 10
    assert {e for (m, b, _), e in epochs.items() if m != gnws.label and b == 64 and _ == "study"} == {40}
    changed = {c.name for c in plan.cells()} ^ {c.name for c in base.cells()}
    assert changed == {f"{gnws.label}-bs64-{end}" for end in ("s0", "s1", "s0-e80", "s0-e20", "s1-e20", "s0-e40")}
    tuning = {c.name: c.epochs for c in plan.tuning_cells() if c.form == gnws}
    assert tuning[f"{gnws.label}-bs64-s100-lr1-e20"] == 20 and tuning[f"{gnws.label}-bs2-s100-lr1"] is None
    described = plan.describe()
    assert described["normal_epochs"] == 40 and described["form_normal_epochs"] == {"gnws": 20}
    assert study_plan(**common, form_normal_epochs={"gnws": 40}).cells() == base.cells()  # the plan's own
    rows = [{"model": f.label, "norm": f.norm, "batch_size": b, "seed": s, "steps": 39 * plan.epochs_at(b, f),
             "epochs": plan.epochs_at(b, f), "purpose": "study", "top1_ema": 0.5, "top1_precise_bn": 0.5}
            for f in plan.sweep for b in plan.batch_sizes for s in plan.seeds]
    rows += [{**r, "purpose": "convergence", "epochs": 2 * r["epochs"], "top1_ema": 0.52}
             for r in rows if r["batch_size"] == 64]
    text = report.to_markdown({"plan": described, "rows": rows}, "xbn-study ...")
    assert "the batch-64 references take 40 (GN+WS 20)" in text
    assert f"trained again at twice their epochs (40; `{gnws.label}`'s 20)" in text
    assert f"- `{gnws.label}`: 20 -> 40 epochs +2.0 points" in text
    assert "- `resnet20`: 40 -> 80 epochs +2.0 points" in text
    for bad, message in (({"ws": 20}, "names 'ws', a norm no form of the plan has"),
                         ({"gnws": 5}, "gnws's epochs must be an integer >= `epochs` \\(10\\); got 5")):
        with pytest.raises(ValueError, match=message):
            study_plan(**common, form_normal_epochs=bad)


def test_a_convergence_run_takes_the_row_of_a_run_that_trained_the_same(tmp_path):
    """A form checked at fewer epochs is doubled back to the plan's normal
    epochs, whose study run is finished: the convergence run takes that
    row (in ``--reuse`` and in the study's own folder) instead of training
    it again, says whose row it is, and claims none of its time."""
    common = dict(batch_sizes=(2, 64), tune=False, brn=False, depth=None, epochs=10, normal_epochs=40,
                  convergence_seeds=(0,), seeds=(0, 1))
    base, plan = study_plan(**common), study_plan(**common, form_normal_epochs={"gnws": 20})
    gnws = next(f for f in plan.sweep if f.norm == "gnws")
    old = next(c for c in base.cells() if c.form == gnws and c.batch_size == 64 and c.seed == 0
               and c.purpose == "study")
    done = {**runner._identity(old, base), "top1_ema": 0.9, "val_top1": 0.91, "train_seconds": 100.0}
    check = next(c for c in plan.cells() if c.form == gnws and c.purpose == "convergence")
    row = runner.twin_row(check, plan, [done])
    assert row["top1_ema"] == 0.9 and row["purpose"] == "convergence" and row["epochs"] == 40
    assert row["same_run_as"] == done["run"] and row["run"].endswith("-e40") and row["train_seconds"] is None
    for other in ({**done, "lr": 0.2}, {**done, "seed": 1}, {**done, "diverged": "NaN", "top1_ema": None}):
        assert runner.twin_row(check, plan, [other]) is None
    study = next(c for c in plan.cells() if c.form == gnws and c.purpose == "study")
    assert runner.twin_row(study, plan, [done]) is None  # a study run measures more than its training

    document = {"plan": base.describe(), "rows": [done]}
    assert runner.reuse_rows(document, plan, tmp_path / "reused", log=lambda m: None) == 1
    stored = json.loads((tmp_path / "reused" / "runs" / check.name / runner.ROW_FILE).read_text())
    assert stored == row

    folder = tmp_path / "own" / "runs" / old.name
    folder.mkdir(parents=True)
    (folder / runner.ROW_FILE).write_text(json.dumps(done))
    stored, said = {check.name: None}, []
    runner._adopt_twins([check], plan, tmp_path / "own", stored, said.append)
    assert stored[check.name] == row and said == [f"[study] {check.name}: the same training as {done['run']}, "
                                                  "whose test top-1 it takes"]


def test_reuse_is_taken_again_with_the_learning_rates_the_tuning_chose(tmp_path, monkeypatch):
    """A form given epochs of its own is tuned again at them, so ``--reuse``
    first sees its normal-batch scale interpolated (here 2, from batch 2),
    and its convergence twin (trained at scale 1) does not match; once the
    tuning has chosen 1, the rows are taken again with it."""
    common = dict(batch_sizes=(2, 64), brn=False, depth=None, epochs=10, normal_epochs=40, convergence_seeds=(0,),
                  seeds=(0, 1))
    base, plan = study_plan(**common), study_plan(**common, form_normal_epochs={"gnws": 20})
    gnws = next(f for f in plan.sweep if f.norm == "gnws")

    def tuning_rows(tuning):  # scale 2 best at batch 2, scale 1 at batch 64
        return [{**runner._identity(c, plan), "val_top1": 0.9 if c.lr_scale == (2.0 if c.batch_size == 2 else 1.0)
                 else 0.8} for c in tuning]

    twin = next(c for c in base.cells() if c.form == gnws and c.batch_size == 64 and c.seed == 0)
    done = {**runner._identity(twin, base), "top1_ema": 0.9, "val_top1": 0.91, "train_seconds": 100.0}
    document = {"plan": base.describe(), "rows": [*tuning_rows(base.tuning_cells()), done]}
    check = next(c for c in plan.cells() if c.form == gnws and c.purpose == "convergence")
    names = {c.name for c in plan.tuning_cells()}
    known = [r for r in document["rows"] if r["run"].split("/")[-1] in names]  # gnws's batch-64 tuning is not
    assert plan.scale(runner.chosen_scales(known), gnws, 64) == 2.0

    def fake_run_cells(cells, plan, out, jobs, log, command, rows, what, scales, before=()):
        made = tuning_rows(cells) if what == "tuning runs" else [{"run": f"runs/{c.name}"} for c in cells]
        rows.update({c.name: row for c, row in zip(cells, made)})

    monkeypatch.setattr(runner, "_run_cells", fake_run_cells)
    said = []
    runner.run_study(plan, tmp_path, log=said.append, reuse=document, reuse_source="pub.json")
    stored = json.loads((tmp_path / "runs" / check.name / runner.ROW_FILE).read_text())
    assert stored["same_run_as"] == done["run"] and stored["lr_scale"] == 1.0
    assert said[0].startswith("[study] reused 15 of the 19 rows of pub.json; the others")  # the tuning rows
    assert said[-1].startswith("[study] reused 1 of the 19 rows of pub.json with the learning rates this plan's "
                               "tuning chose")


def test_convergence_can_be_checked_at_half_the_epochs_as_well():
    """``convergence_factors`` (issue 21: GN+WS's reference was lower with
    twice its epochs; half says whether it was still rising into them):
    convergence runs at each multiple, each step paired by seed, and the
    verdict tells a reference at its peak from one past it."""
    common = dict(batch_sizes=(2, 64), tune=False, depth=None, epochs=10, normal_epochs=40, convergence_seeds=(0, 1),
                  seeds=(0, 1, 2))
    plan = study_plan(**common, convergence_factors=(2, 0.5))
    checks = [(c.form.label, c.seed, c.epochs, c.name) for c in plan.cells() if c.purpose == "convergence"]
    assert [(m, s, e) for m, s, e, _ in checks] == [(f.label, s, e) for s in (0, 1) for e in (20, 80)
                                                    for f in plan.sweep]
    assert checks[0][3] == "resnet20-bs64-s0-e20" and plan.describe()["convergence_factors"] == [0.5, 2]
    assert study_plan(**common).describe()["convergence_factors"] == [2]
    for bad, message in (((0.33, 2), "convergence factor 0.33 must be positive, not 1, and give whole epochs of "
                                     "at least 1 for every reference \\(it gives 13.2, 13.2, 13.2, 13.2\\)"),
                         ((0.5,), "must include 2"), ((1, 2), "convergence factor 1 must be"),
                         ((2, math.inf), "convergence factor inf must be positive, not 1, and give whole epochs")):
        with pytest.raises(ValueError, match=message):
            study_plan(**common, convergence_factors=bad)

    top1 = {("resnet20", 20): 0.880, ("resnet20", 40): 0.890, ("resnet20", 80): 0.891,  # converged
            ("resnet20_gnws", 20): 0.880, ("resnet20_gnws", 40): 0.900, ("resnet20_gnws", 80): 0.895}  # peak
    rows = []
    for (model, epochs), value in top1.items():
        for seed, noise in zip((0, 1), (0.001, -0.001)):
            rows.append({"model": model, "norm": "bn", "batch_size": 64, "seed": seed, "epochs": epochs,
                         "steps": 39 * epochs, "purpose": "study" if epochs == 40 else "convergence",
                         "top1_ema": value + noise * (epochs != 40), "top1_precise_bn": value})
    found = analysis.convergence(rows, 64)
    assert {m: {k: round(100 * e.mean, 6) for k, e in steps.items()} for m, steps in found.items()} == {
        "resnet20": {(20, 40): 1.0, (40, 80): 0.1}, "resnet20_gnws": {(20, 40): 2.0, (40, 80): -0.5}}
    text = "\n".join(report._convergence_lines({"plan": {**plan.describe(), "test_images": 2000}, "rows": rows}))
    assert "the batch-64 runs trained again at half and twice their epochs (40)" in text
    assert "- `resnet20`: 20 -> 40 epochs +1.0 points" in text and text.count(": converged") == 1
    assert "- `resnet20_gnws`: 20 -> 40 epochs +2.0 points" in text and "40 -> 80 epochs -0.5 points" in text
    assert "near its peak: higher than with half the epochs and lower with twice" in text
    assert report.convergence_verdict(-0.5, 0.3, rise=0.2).endswith("past its best, not under-trained)")


def test_a_norm_can_be_checked_at_more_multiples_of_its_epochs(tmp_path):
    """``form_convergence_factors`` (issue 21: GN+WS's reference was lower
    with twice its epochs, so the rule asks what doubling once more does):
    only that norm's forms get the extra convergence runs, every doubling is
    paired by seed (80 -> 160, not only from the reference), the verdict
    follows the curve past the reference, and a figure shows it."""
    common = dict(batch_sizes=(2, 64), tune=False, depth=None, epochs=10, normal_epochs=40, convergence_seeds=(0, 1),
                  seeds=(0, 1, 2), convergence_factors=(0.5, 2))
    base, plan = study_plan(**common), study_plan(**common, form_convergence_factors={"gnws": (4,)})
    gnws = next(f for f in plan.sweep if f.norm == "gnws")
    added = {c.name for c in plan.cells()} - {c.name for c in base.cells()}
    assert added == {f"{gnws.label}-bs64-s0-e160", f"{gnws.label}-bs64-s1-e160"}
    assert {c.name for c in base.cells()} <= {c.name for c in plan.cells()}
    assert plan.describe()["form_convergence_factors"] == {"gnws": [4]}
    assert base.describe()["form_convergence_factors"] == {}
    for bad, message in (({"ws": (4,)}, "`form_convergence_factors` names 'ws', a norm no form of the plan has"),
                         ({"gnws": (2,)}, "`form_convergence_factors` gnws=2 is among the plan's factors \\(0.5, 2\\) "
                                          "already"),
                         ({"gnws": (0.33,)}, "convergence factor 0.33 must be positive, not 1, and give whole epochs "
                                            "of at least 1 for every reference \\(it gives 13.2\\)")):
        with pytest.raises(ValueError, match=message):
            study_plan(**common, form_convergence_factors=bad)

    top1 = {("resnet20", 20): 0.880, ("resnet20", 40): 0.890, ("resnet20", 80): 0.891,
            ("resnet20_gnws", 20): 0.887, ("resnet20_gnws", 40): 0.901, ("resnet20_gnws", 80): 0.896,
            ("resnet20_gnws", 160): 0.890}
    rows = []
    for (model, epochs), value in top1.items():
        for seed, noise in zip((0, 1), (0.001, -0.001)):
            rows.append({"model": model, "norm": model.partition("_")[2] or "bn", "batch_size": 64, "seed": seed,
                         "epochs": epochs, "steps": 39 * epochs, "purpose": "study" if epochs == 40 else "convergence",
                         "top1_ema": value + noise * (epochs != 40), "top1_precise_bn": value, "layer_shifts": []})
    found = analysis.convergence(rows, 64)
    assert {k: round(100 * e.mean, 6) for k, e in found["resnet20_gnws"].items()} == {
        (20, 40): 1.4, (40, 80): -0.5, (80, 160): -0.6}
    assert set(found["resnet20"]) == {(20, 40), (40, 80)}
    document = {"plan": {**plan.describe(), "test_images": 2000}, "rows": rows}
    text = "\n".join(report._convergence_lines(document))
    assert ("the batch-64 runs trained again at half and twice their epochs (40), `resnet20_gnws` also at four "
            "times (160)") in text
    assert "- `resnet20_gnws`: 20 -> 40 epochs +1.4 points" in text and "80 -> 160 epochs -0.6 points" in text
    assert ("near its peak: higher than with half the epochs and lower with twice, lower still at 160, so the best "
            "trained of the four; no doubling up to 160 epochs stays within 0.3 points") in text
    assert report.convergence_verdict(0.5, 0.3, later=[(80, 160, 0.1)]) == (
        "**not converged** (still improving); then 80 -> 160 +0.1: converged from 80 epochs on")
    assert report.convergence_verdict(-0.5, 0.3, rise=1.0, later=[(80, 160, 0.9)]) == (
        "**not converged** (lower with twice the epochs, higher again at 160: not its best); then 80 -> 160 +0.9: "
        "no doubling up to 160 epochs stays within 0.3 points")
    assert report.convergence_verdict(-0.5, 0.3, later=[(80, 160, -0.4)]) == (
        "**not converged** (lower with twice the epochs: past its best, not under-trained); then 80 -> 160 -0.4: "
        "no doubling up to 160 epochs stays within 0.3 points")
    assert study_cli._convergence_factors(["0.5", "2", "gnws=4", "gnws=8"]) == ([0.5, 2.0], {"gnws": (4.0, 8.0)})
    assert study_cli._convergence_factors(None) == (None, {})
    assert study_cli._convergence_factors(["gnws=4"]) == (None, {"gnws": (4.0,)})  # beside the default 2
    assert report.convergence_verdict(0.1, 0.3, later=[(80, 160, -0.2)]) == (
        "converged; then 80 -> 160 -0.2: within 0.3 points as well")
    paths = report.plot_all(document, tmp_path)
    assert tmp_path / report.PLOTS["convergence"] in paths and (tmp_path / report.PLOTS["convergence"]).is_file()
    curves = analysis.convergence_curves(rows, 64)
    assert {e: round(100 * v.mean, 6) for e, v in curves["resnet20_gnws"].items()} == {
        20: 88.7, 40: 90.1, 80: 89.6, 160: 89.0}
    assert curves["resnet20_gnws"][160].n == 2


def test_a_run_folder_of_another_purpose_gives_its_row_where_the_training_is_the_same(tmp_path):
    """A form's own normal epochs can equal another plan's convergence
    epochs: the folder ``...-e20`` then holds a study run where a
    convergence run is asked for (or the reverse); the row is taken where
    the training is the same, else the run is measured again."""
    common = dict(batch_sizes=(2, 64), tune=False, brn=False, depth=None, epochs=10, normal_epochs=40,
                  convergence_seeds=(0,), seeds=(0, 1))
    own = study_plan(**common, form_normal_epochs={"gnws": 20})
    halves = study_plan(**common, convergence_factors=(0.5, 2))
    gnws = next(f for f in own.sweep if f.norm == "gnws")
    study = next(c for c in own.cells() if c.form == gnws and c.batch_size == 64 and c.seed == 0)
    check = next(c for c in halves.cells() if c.form == gnws and c.purpose == "convergence" and c.epochs == 20)
    assert study.name == check.name == f"{gnws.label}-bs64-s0-e20"
    done = {**runner._identity(study, own), "top1_ema": 0.88, "val_top1": 0.9, "train_seconds": 50.0,
            "layer_shifts": []}
    folder = tmp_path / "runs" / study.name
    folder.mkdir(parents=True)
    (folder / runner.ROW_FILE).write_text(json.dumps(done))
    row = runner._stored_row(check, halves, tmp_path)
    assert row["purpose"] == "convergence" and row["top1_ema"] == 0.88 and row["run"] == done["run"]
    assert row["train_seconds"] == 50.0 and "same_run_as" not in row  # this folder's own run, not another's
    (folder / runner.ROW_FILE).write_text(json.dumps({**done, "purpose": "convergence"}))
    assert runner._stored_row(study, own, tmp_path) is None  # a study run measures more: measured again


def test_a_tuned_study_reuses_the_untuned_runs_and_trains_the_others_beside_them():
    """Tuning after an untuned study (the same ``--out``): a cell whose tuned
    scale is 1 keeps its run's name, so its run is reused; one with another
    scale gets a name of its own, so it is trained beside the untuned run
    instead of being refused as "other settings"."""
    untuned = study_plan(batch_sizes=(2, 64), tune=False, brn=False, depth=None, seeds=(0, 1))
    tuned = study_plan(batch_sizes=(2, 64), brn=False, depth=None, seeds=(0, 1))
    form = tuned.sweep[0]
    scales = {(f.label, b): 1.0 for f in tuned.sweep for b in (2, 64)} | {(form.label, 2): 0.5}
    before = {c.name: c for c in untuned.cells()}
    after = {c.name: c for c in tuned.cells(scales)}
    assert set(after) - set(before) == {f"{form.label}-bs2-s0-lr0.5", f"{form.label}-bs2-s1-lr0.5"}
    assert set(before) - set(after) == {f"{form.label}-bs2-s0", f"{form.label}-bs2-s1"}
    assert all(after[n].lr_scale == 1.0 for n in set(after) & set(before))
    scales[form.label, 64] = 2.0  # the reference and its convergence run both say their scale
    names = {c.name for c in tuned.cells(scales) if c.form == form and c.batch_size == 64 and c.seed == 0}
    assert names == {f"{form.label}-bs64-s0-lr2", f"{form.label}-bs64-s0-lr2-e{2 * tuned.epochs}"}
    assert {c.name for c in tuned.tuning_cells() if c.form == form and c.batch_size == 2} == {
        f"{form.label}-bs2-s100-lr{s:g}" for s in (0.5, 1.0, 2.0)}


def test_a_reference_is_converged_only_within_the_limit_either_way():
    assert report.convergence_verdict(0.2, 0.3) == report.convergence_verdict(-0.29, 0.3) == "converged"
    assert "still improving" in report.convergence_verdict(0.3, 0.3)
    assert "past its best" in report.convergence_verdict(-0.6, 0.3)
    assert report.convergence_verdict(-0.6, 0.3).startswith("**not converged**")


def test_learning_rates_are_chosen_on_the_validation_split():
    from xbn.study.runner import chosen_scales

    rows = [{"purpose": "tuning", "model": "a", "batch_size": 2, "lr_scale": s, "val_top1": v}
            for s, v in ((0.5, 0.80), (1.0, 0.85), (2.0, 0.84))]
    rows += [{"purpose": "tuning", "model": "a", "batch_size": 64, "lr_scale": s, "val_top1": v}
             for s, v in ((0.5, 0.90), (1.0, None), (2.0, 0.90))]
    rows[4]["diverged"] = "loss became NaN"
    rows.append({"purpose": "study", "model": "a", "batch_size": 2, "lr_scale": 0.5, "val_top1": 0.99})
    # The best validation top-1; a tie goes to the scale nearest 1 (0.5 and 2 are as near: the first).
    assert chosen_scales(rows) == {("a", 2): 1.0, ("a", 64): 0.5}


@pytest.mark.parametrize("argv, message", [
    (["--jobs", "0"], "argument --jobs must be an integer >= 1. Received: jobs=0"),
    (["--seeds", "3"], "at least 2 seeds per cell"),
    (["--model", "vgg"], "unknown models vgg, vgg_xbn, vgg_gnws; the study needs a registered network"),
    (["--normal-epochs", "2", "gnws=x"], "--normal-epochs takes N or NORM=N with N a whole number, e.g. 40 "
                                         "gnws=20; got 'gnws=x'"),
    (["--normal-epochs", "2", "3"], "--normal-epochs takes one plain N (the plan's) and NORM=N for the others"),
    (["--normal-epochs", "gnws=2", "gnws=3"], "--normal-epochs names gnws twice (gnws=2 and gnws=3)"),
    (["--normal-epochs", "2", "ws=3"], "--normal-epochs names 'ws', a norm no form of the plan has"),
    (["--convergence-factors", "3"], "must include 2: doubling the epochs is the test of convergence"),
    (["--convergence-factors", "2", "gnws=x"], "--convergence-factors takes F or NORM=F with F a positive number, "
                                               "e.g. 0.5 2 gnws=4; got 'gnws=x'"),
    (["--convergence-factors", "2", "ws=4"], "--convergence-factors names 'ws', a norm no form of the plan has"),
    (["--convergence-factors", "2", "-1"], "--convergence-factors takes F or NORM=F with F a positive number"),
    (["--convergence-factors", "2", "gnws=inf"], "--convergence-factors takes F or NORM=F with F a positive number"),
    (["--batch-sizes", "2", "64"], "the quick plan is fixed (batch 4 and 16, no deeper network, no convergence "
                                   "runs, 3 corruptions): it takes no --batch-sizes; drop them, or drop --quick"),
    (["--depth-seeds", "0", "1", "--severities", "3"], "it takes no --severities, --depth-seeds"),
    (["--convergence-seeds", "0"], "it takes no --convergence-seeds"),
])
def test_bad_arguments_are_named(argv, message, capsys, tmp_path):
    assert study_cli.main([*argv, "--quick", "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_estimates_and_verdicts_by_hand():
    e = Estimate.of([1.0, 2.0, 3.0])
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)  # 4.303 x sd 1 / sqrt 3
    assert (e.mean, e.sd, e.n) == (2.0, 1.0, 3) and e.low == pytest.approx(2 - half)
    assert half == pytest.approx(2.484, abs=1e-3)
    assert e.verdict(0.0) == analysis.INCONCLUSIVE  # -0.48 .. 4.48 straddles 0
    assert Estimate.of([1.0, 2.0, 3.0], confidence=0.90).low == pytest.approx(2 - stats.t.ppf(0.95, 2) / math.sqrt(3))
    assert Estimate.of([1.0, 1.1, 0.9]).verdict(0.0) == analysis.REPLICATES
    assert Estimate.of([-1.0, -1.1, -0.9]).verdict(0.0) == analysis.FAILS
    assert Estimate.of([-1.0, -1.1, -0.9]).verdict(0.0, above=False) == analysis.REPLICATES
    assert Estimate.of([None, 2.0]).n == 1 and Estimate.of([2.0]).verdict(0.0) == analysis.INCONCLUSIVE
    # The slope of log shift against depth, on the named layers only.
    layers = [{"name": f"l{i}", "depth": d, "mean_shift": math.exp(2 * d)} for i, d in enumerate((0.1, 0.4, 0.7, 0.9))]
    row = {"layer_shifts": layers + [{"name": "stem", "depth": 0.0, "mean_shift": 50.0}]}
    assert analysis.depth_slope(row, ["l0", "l1", "l2", "l3"]) == pytest.approx(2.0)
    assert analysis.depth_slope(row, ["l0", "l1"]) is None  # too few layers for a slope
    assert analysis.matched_average(row, ["l0", "l3"]) == pytest.approx((math.exp(0.2) + math.exp(1.8)) / 2)
    shared = analysis.matched_layers([{"model": "b", "layer_shifts": row["layer_shifts"]},
                                      {"model": "b_xbn", "layer_shifts": layers[1:]}], "b", "b_xbn")
    assert shared == ["l1", "l2", "l3"]


def test_h1_reports_the_variance_shift_beside_the_mean_shift_test():
    """On the shared layers, per seed: BN's variance shift grows as
    exp(slope x depth) with slope 1, 2 and 3, XBN's is flat; the line
    gives BN's slope (mean 2, sd 1) and BN's minus XBN's, and the average
    levels, each form's beside its own noise floor (half the shift between
    the test split's halves); no verdict rests on it."""
    def row(model, seed, slope, level):
        layers = [{"name": f"b{i}_2_bn", "depth": d, "mean_shift": 0.02, "noise_mean_shift": 0.01,
                   "train_mean_shift": 0.02, "var_shift": level * math.exp(slope * d), "noise_var_shift": 0.01}
                  for i, d in enumerate((0.2, 0.5, 0.8))]
        return {"model": model, "norm": "xbn" if model.endswith("_xbn") else "bn", "batch_size": 8, "seed": seed,
                "purpose": "study", "top1_ema": 0.5, "top1_precise_bn": 0.5, "layer_shifts": layers}

    rows = [row("r", s, s + 1.0, 0.01) for s in range(3)] + [row("r_xbn", s, 0.0, 0.02) for s in range(3)]
    for r in rows[3:]:  # XBN's own floor, lower than BN's
        for layer in r["layer_shifts"]:
            layer["noise_var_shift"] = 0.004
    lines, verdicts = analysis._h1(rows, analysis.by_cell(rows), 8)
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
    variance = next(line for line in lines if "variance shift" in line)
    assert (f"BN's slope on the test split +2.00 (95% CI {2 - half:+.2f} to {2 + half:+.2f}, sd 1.00, 3 seeds); "
            "BN's minus XBN's +2.00") in variance
    bn_level = np.mean([np.mean([0.01 * math.exp((s + 1) * d) for d in (0.2, 0.5, 0.8)]) for s in range(3)])
    assert (f"Variance shift on these layers: BN {bn_level:.3f}, XBN 0.020; noise floor BN 0.005, XBN 0.002"
            in variance)
    assert len(verdicts) == 2  # the mean-shift test's two, as before


@pytest.mark.parametrize("draw", ["normal", "exponential"])
def test_the_noise_floor_is_the_split_s_own_sampling_error(draw):
    """A layer whose moving statistics are the population's exactly still
    shows a shift on a finite split: its sampling error.  The floor (half
    the shift between the split's halves) estimates that shift, float64
    NumPy, for symmetric and skewed activations alike; the halves' shift
    itself is twice it."""
    rng = np.random.default_rng(0)
    channels, size = 64, 2000
    sample = {"normal": lambda: rng.normal(3.0, 2.0, (size, channels)),
              "exponential": lambda: rng.exponential(2.0, (size, channels))}[draw]
    mean, var = {"normal": (3.0, 4.0), "exponential": (2.0, 4.0)}[draw]
    truth, floors = [], []
    for _ in range(200):
        x = sample()
        a, b = x[: size // 2], x[size // 2:]
        truth.append(shift_metrics(np.full(channels, mean), np.full(channels, var), x.mean(0), x.var(0), 1e-3))
        halves = shift_metrics(a.mean(0), a.var(0), b.mean(0), b.var(0), 1e-3)
        floors.append([analysis.noise_floor({"noise_mean_shift": halves[0], "noise_var_shift": halves[1]}, kind)
                       for kind in ("mean", "var")])
    np.testing.assert_allclose(np.mean(floors, 0), np.mean(truth, 0), rtol=0.05)
    assert analysis.noise_floor({"mean_shift": 0.1}) is None


def _rows(values):
    """Study rows ``{(model, batch): [top-1 per seed]}``."""
    return [{"model": m, "norm": "bn" if m == "r" else m.split("_")[1], "batch_size": b, "seed": s,
             "top1_ema": v, "top1_precise_bn": v, "layer_shifts": []}
            for (m, b), seeds in values.items() for s, v in enumerate(seeds)]


def test_h2_is_a_fall_with_its_interval_and_flatness_by_two_one_sided_tests():
    rows = _rows({("r", 64): [0.90, 0.91, 0.89, 0.90, 0.92], ("r", 2): [0.80, 0.82, 0.79, 0.81, 0.80],
                  ("r_gnws", 64): [0.85, 0.86, 0.85, 0.84, 0.86], ("r_gnws", 2): [0.85, 0.85, 0.86, 0.84, 0.85]})
    lines, verdicts = analysis._h2(rows, analysis.by_cell(rows), 64)
    assert verdicts == [analysis.REPLICATES, analysis.REPLICATES]  # BN falls 10.0 points; GN+WS within +-1
    # The part of BN's fall that batch-free normalization does not share,
    # paired by seed: 10.0 - 0.2 = 9.8 points, descriptive (no verdict).
    beyond = next(line for line in lines if "beyond" in line)
    assert "+9.8 points" in beyond and "5 seeds" in beyond and len(verdicts) == 2
    falls = [0.02, -0.02, 0.03, -0.01, 0.0]  # GN+WS moving up to 3 points: not shown flat
    rows = _rows({("r", 64): [0.9] * 5, ("r", 2): [0.9] * 5,
                  ("r_gnws", 64): [0.85 + f for f in falls], ("r_gnws", 2): [0.85] * 5})
    _, verdicts = analysis._h2(rows, analysis.by_cell(rows), 64)
    assert verdicts[1] == analysis.INCONCLUSIVE


def test_h2_compares_batches_of_equal_epochs_when_the_reference_trained_longer():
    """With ``normal_epochs`` the normal batch's runs train longer, which
    lifts every form alike: H2 then compares the smallest batch with the
    largest of the same epochs, and prints the step to the normal batch
    apart, without a verdict."""
    values = {("r", 64): [0.93, 0.94, 0.93], ("r", 16): [0.90, 0.91, 0.90], ("r", 2): [0.88, 0.89, 0.88],
              ("r_gnws", 64): [0.93, 0.92, 0.93], ("r_gnws", 16): [0.90, 0.90, 0.91], ("r_gnws", 2): [0.90, 0.90, 0.91]}
    rows = _rows(values)
    for row in rows:
        row["epochs"] = 40 if row["batch_size"] == 64 else 10
    assert analysis.h2_batches(rows, 64) == (16, 2)
    lines, verdicts = analysis._h2(rows, analysis.by_cell(rows), 64)
    assert lines[0].startswith("- `r`: top-1 at batch 16 minus at batch 2 (both 10 epochs): +2.0 points")
    assert verdicts == [analysis.REPLICATES, analysis.REPLICATES]  # GN+WS: 0.0 at equal epochs
    assert "batch 64 (40 epochs) minus batch 16 (10 epochs)" in lines[-2] and "`r` +3.0 points" in lines[-2]
    assert "`r_gnws` +2.3 points" in lines[-2]
    assert "batch 64 (40 epochs) minus batch 2 (10 epochs)" in lines[-1] and "`r` +5.0 points" in lines[-1]
    for row in rows:  # equal epochs everywhere: the normal batch is the high end, as before
        row["epochs"] = 10
    assert analysis.h2_batches(rows, 64) == (64, 2)
    for row in rows:  # no larger batch shares batch 2's epochs: the normal batch, as before
        row["epochs"] = 10 if row["batch_size"] == 2 else 40
    assert analysis.h2_batches(rows, 64) == (64, 2)


def test_h3_s_margin_is_relative_to_bn_s_error():
    # BN at 20% error: XBN 1.5 points worse is within 10% of it (2 points).
    rows = _rows({("r", 64): [0.80, 0.81, 0.79, 0.80, 0.80], ("r_xbn", 64): [0.785, 0.795, 0.775, 0.785, 0.785]})
    lines, verdicts = analysis._h3(rows, analysis.by_cell(rows), 64)
    assert verdicts == [analysis.REPLICATES] and "the margin (10% of BN's error) is 2.0 points" in lines[0]
    # BN at 5% error: the same 1.5 points is more than 0.5.
    rows = _rows({("r", 64): [0.95] * 3, ("r_xbn", 64): [0.935, 0.934, 0.936]})
    assert analysis._h3(rows, analysis.by_cell(rows), 64)[1] == [analysis.FAILS]


def test_paired_differences_use_the_seeds_both_cells_have():
    rows = [{"model": m, "batch_size": 64, "seed": s, "top1_ema": v}
            for m, s, v in (("a", 0, 0.9), ("a", 1, 0.8), ("a", 2, 0.7), ("b", 0, 0.85), ("b", 2, 0.6))]
    cells = analysis.by_cell(rows)
    assert analysis.paired(cells, ("a", 64), ("b", 64), lambda r: r["top1_ema"]) == pytest.approx([0.05, 0.1])
    assert [f.label for f in forms_of("resnet20", brn=False)] == ["resnet20", "resnet20_xbn", "resnet20_gnws"]


def test_the_published_section_is_generated_from_the_committed_results():
    """Every number of models/study/README.md's study section comes from
    models/study/results.json, which holds a complete study of the plan it
    records, on the new data, in the difficulty band issue 21 asks for (the
    section's Scope paragraph says what the plan leaves out of the full
    one)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "models"
    document = json.loads((root / "study" / "results.json").read_text())
    text = (root / "study" / "README.md").read_text()
    begin = "<!-- begin:study -->\n"
    section = text[text.index(begin) + len(begin):text.index("<!-- end:study -->")]
    assert section.strip() == report.to_markdown(document, document["command"], "./").strip()
    rows = analysis.study_rows(document["rows"])
    assert document["plan"]["data"] == "digits_m"
    per_cell = {}
    for r in rows:
        per_cell.setdefault((r["model"], r["batch_size"]), set()).add(r["seed"])
    planned = set(document["plan"]["seeds"])
    assert len(planned) >= 5  # issue 21: enough seeds to see a 1-point effect
    deep = set(document["plan"].get("depth_seeds") or planned)  # the deeper network may take fewer
    for (model, _), seeds in per_cell.items():  # every cell has every seed the plan gives it
        assert seeds == (deep if model in document["plan"]["depth"] else planned), model
    assert {batch for _, batch in per_cell} == set(document["plan"]["batch_sizes"])
    # The difficulty asked for: the vanilla network at batch 64 between 80% and 92% (whether its
    # reference has converged is measured and reported in the section, not assumed here).
    vanilla = [r["top1_ema"] for r in rows if r["model"] == "resnet20" and r["batch_size"] == 64]
    assert 0.80 <= np.mean(vanilla) <= 0.92
    # Every form of the sweep has its convergence check.
    assert set(analysis.convergence(document["rows"], 64)) == set(document["plan"]["sweep"])


def test_a_worker_dies_with_the_study_that_started_it(tmp_path):
    """kill -9 of the study left its two workers training as orphans (1.1 GB
    each), holding their run folders' locks; now they watch their parent."""
    import os
    import subprocess
    import sys
    import textwrap
    import time

    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c",
            "import os, time; from xbn.study.runner import _worker_init; _worker_init(1, os.getppid()); "
            "print(os.environ['XBN_LOCK_HOLDER'], flush=True); time.sleep(120)"], stdout=subprocess.PIPE, text=True)
        print(child.pid, child.stdout.readline().strip(), flush=True)
        time.sleep(120)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    pid, holder = parent.stdout.readline().split(" ", 1)
    assert holder.strip() == f"xbn-study (a worker of process {parent.pid})"
    parent.kill()  # as kill -9
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.kill(int(pid), 9)
        pytest.fail("the worker outlived its study by 10 s")


def test_the_lock_names_the_program_that_holds_it(monkeypatch):
    from xbn.training import run_folder

    monkeypatch.setattr("sys.argv", ["/usr/bin/xbn-train", "--epochs", "3"])
    monkeypatch.delenv("XBN_LOCK_HOLDER", raising=False)
    assert run_folder.holder() == "xbn-train --epochs 3"
    monkeypatch.setattr("sys.argv", ["/home/u/experiment.py", "--fast"])
    assert run_folder.holder() == "experiment.py --fast"
    monkeypatch.setenv("XBN_LOCK_HOLDER", "xbn-study (a worker of process 7)")
    assert run_folder.holder() == "xbn-study (a worker of process 7)"
