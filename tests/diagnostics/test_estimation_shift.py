"""Estimation shift against float64 NumPy, its report and plot, and xbn-shift."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from bn_nets import data, net, randomize_moving, reference
from tiny import tiny_zoo  # noqa: F401  (fixture)

from xbn.cli import shift as shift_cli
from xbn.diagnostics import ShiftReport, estimation_shift, plot_shift, shift_metrics
from xbn.layers import GroupNorm

PNG = b"\x89PNG\r\n\x1a\n"


def test_shift_per_layer_equals_float64_reference(rng):
    model = net()
    randomize_moving(model, rng)
    x = data(rng)
    report = estimation_shift(model, tf.data.Dataset.from_tensor_slices(x).batch(10), label="mine")
    assert report.model == "mine" and report.examples == 37
    assert [layer.name for layer in report.layers] == ["bn1", "bn2"]
    for layer, (mean, var) in zip(report.layers, reference(model, x, training=False)):
        bn = model.get_layer(layer.name)
        m = bn.moving_mean.numpy().astype(np.float64)
        v = bn.moving_variance.numpy().astype(np.float64)
        eps = bn.epsilon
        assert layer.channels == len(mean)
        np.testing.assert_allclose(layer.mean_shift, np.sqrt(np.mean((m - mean) ** 2 / (var + eps))), rtol=1e-5)
        np.testing.assert_allclose(layer.var_shift, np.mean(np.abs(np.log((v + eps) / (var + eps)))), rtol=1e-4)
    np.testing.assert_allclose(report.mean_shift, np.mean([la.mean_shift for la in report.layers]))
    assert report.max_mean_shift == max(la.mean_shift for la in report.layers)


def test_depth_is_the_relative_position_in_the_network(rng):
    model = net()
    report = estimation_shift(model, tf.data.Dataset.from_tensor_slices(data(rng)).batch(16))
    last = len(model.layers) - 1
    for layer in report.layers:
        assert model.layers[layer.index].name == layer.name
        assert layer.depth == pytest.approx(layer.index / last)
    assert 0 < report.layers[0].depth < report.layers[1].depth < 1


def test_metrics_are_scale_free_and_zero_only_at_the_truth(rng):
    m, mu = rng.normal(size=8), rng.normal(size=8)
    v, var = rng.uniform(0.5, 2, 8), rng.uniform(0.5, 2, 8)
    base = shift_metrics(m, v, mu, var, 0.0)
    assert min(base) > 0
    np.testing.assert_allclose(shift_metrics(7 * m, 49 * v, 7 * mu, 49 * var, 0.0), base, rtol=1e-12)
    assert shift_metrics(mu, var, mu, var, 1e-3) == (0.0, 0.0)
    # A variance estimate 10% off in every channel is a shift of log(1.1).
    assert shift_metrics(mu, 1.1 * var, mu, var, 0.0)[1] == pytest.approx(np.log(1.1))


def test_model_without_batchnorm_gives_an_empty_report(tmp_path):
    inputs = keras.Input((8, 8, 4))
    model = keras.Model(inputs, GroupNorm(groups=2)(inputs), name="gn_only")
    report = estimation_shift(model, tf.data.Dataset.from_tensor_slices(np.ones((2, 8, 8, 4), np.float32)).batch(2))
    assert report.layers == [] and np.isnan(report.mean_shift)
    assert "no BatchNorm layer" in report.summary()


def test_table_json_and_plot(rng, tmp_path):
    model = net()
    report = estimation_shift(model, tf.data.Dataset.from_tensor_slices(data(rng)).batch(16))
    lines = report.table().splitlines()
    assert lines[0].startswith("| # | layer | depth") and len(lines) == 2 + 2
    assert lines[2].startswith("| 1 | bn1 |")
    saved = json.loads(json.dumps(report.to_dict()))
    assert saved["model"] == "net" and [la["name"] for la in saved["layers"]] == ["bn1", "bn2"]
    path = plot_shift([report, ShiftReport("empty", 0, [])], tmp_path / "shift.png")
    assert path.read_bytes().startswith(PNG)


# -- xbn-shift -----------------------------------------------------------------
@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    """Untrained MobileNetV2 and its XBN twin at 32x32, saved as .keras files."""
    from xbn.models import mobilenetv2, mobilenetv2_xbn

    folder = tmp_path_factory.mktemp("models")
    paths = []
    for builder in (mobilenetv2, mobilenetv2_xbn):
        model = builder(input_shape=(32, 32, 3), alpha=0.35, classes=10)
        path = folder / f"{model.name}.keras"
        model.save(path)
        paths.append(str(path))
    return paths


def test_cli_compares_models_before_and_after_precise_bn(keras_files, tmp_path, capsys):
    out = tmp_path / "shift"
    code = shift_cli.main([
        *keras_files, "--data", "digits", "--split", "train", "--steps", "1", "--batch-size", "32",
        "--recalibrate-bn", "1", "--out", str(out),
    ])
    printed = capsys.readouterr().out
    assert code == 0
    reports = json.loads((out / "shift.json").read_text())
    assert [r["model"] for r in reports] == [
        "mobilenetv2", "mobilenetv2 + precise BN", "mobilenetv2_xbn", "mobilenetv2_xbn + precise BN",
    ]
    vanilla, vanilla_precise, xbn, xbn_precise = reports
    # MobileNetV2 has 52 BatchNorms; its XBN twin turns the 17 depthwise ones into GroupNorm.
    assert len(vanilla["layers"]) == 52 and len(xbn["layers"]) == 35
    assert all(r["examples"] == 32 for r in reports)
    # Freshly initialised moving statistics (0 and 1) are far from the truth;
    # precise BN over the same batches brings every layer to it.
    for before, after in ((vanilla, vanilla_precise), (xbn, xbn_precise)):
        assert before["var_shift"] > 0.5
        assert max(la["mean_shift"] for la in after["layers"]) < 2e-3
        assert max(la["var_shift"] for la in after["layers"]) < 2e-3
    assert (out / "shift.png").read_bytes().startswith(PNG)
    assert "## mobilenetv2_xbn + precise BN" in (out / "shift.md").read_text()
    # The printed table is the JSON's, row for row: MobileNetV2's first BN is bn_Conv1.
    section = printed.split("## mobilenetv2\n", 1)[1]
    first = next(line for line in section.splitlines() if line.startswith("| 1 |"))
    layer = vanilla["layers"][0]
    assert first == (
        f"| 1 | bn_Conv1 | {layer['depth']:.2f} | {layer['channels']} | "
        f"{layer['mean_shift']:.4f} | {layer['var_shift']:.4f} |"
    )


def test_cli_reads_data_and_split_from_a_run_folder(tiny_zoo, tmp_path, capsys):  # noqa: F811
    from xbn.training import TrainConfig, train

    run = tmp_path / "run"
    train(TrainConfig(model="tiny_xbn", model_args={}, out=str(run), image_size=32, batch_size=64, epochs=1,
                      warmup_epochs=0.0, recalibrate_bn=0,
                      export=False, verbose=False))
    code = shift_cli.main([str(run), "--steps", "1", "--out", str(tmp_path / "s")])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    (report,) = json.loads((tmp_path / "s" / "shift.json").read_text())
    assert report["model"] == "run" and report["examples"] == 64
    assert [la["name"] for la in report["layers"]] == ["stem_bn", "project_bn"]
    assert "digits, test split" in printed


def test_evaluate_and_shift_take_data_args_for_the_data_they_score(tiny_zoo, tmp_path, capsys):  # noqa: F811
    """--data-arg (the help of --data promised it; the commands had none):
    the plain-digits run scored on digits_m rendered once per scan (359 test
    images, not the default 2,154); a misspelt option is named."""
    from xbn.cli import evaluate as evaluate_cli
    from xbn.training import TrainConfig, train

    run = tmp_path / "run"
    train(TrainConfig(model="tiny_xbn", model_args={}, out=str(run), image_size=32, batch_size=64, epochs=1,
                      warmup_epochs=0.0, recalibrate_bn=0, export=False, verbose=False))
    once = ["--data", "digits_m", "--data-arg", "renders=(1, 1, 1)", "--split", "test"]
    assert evaluate_cli.main([str(run), *once, "--json", str(tmp_path / "e.json")]) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "e.json").read_text())["examples"] == 359
    assert shift_cli.main([str(run), *once, "--out", str(tmp_path / "s")]) == 0, capsys.readouterr().err
    (report,) = json.loads((tmp_path / "s" / "shift.json").read_text())
    assert report["examples"] == 359
    for command in (evaluate_cli, shift_cli):
        assert command.main([str(run), "--data", "digits_m", "--data-arg", "render=2"]) == 2
        assert "render" in capsys.readouterr().err
        assert command.main([str(run), "--data-arg", "renders"]) == 2
        assert "--data-arg expects KEY=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["{keras}"], "is not a run folder; say which data to measure on with --data"),
    (["{keras}", "{keras}", "--weights", "w.h5"], "describe one registered model; give one SOURCE"),
    (["{keras}", "--data", "digits", "--steps", "0"], "--steps must be >= 1; got 0"),
    (["nonsense", "--data", "digits"], "neither a run folder, a .keras file nor a registered model"),
])
def test_cli_errors_are_one_line(keras_files, capsys, argv, message):
    argv = [a.format(keras=keras_files[0]) for a in argv]
    assert shift_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("xbn-shift: error:") and message in err
