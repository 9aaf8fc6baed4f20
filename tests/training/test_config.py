"""Settings: defaults, recipes, flags, and their errors."""

from pathlib import Path

import pytest

from xbn.cli import train as cli
from xbn.models import list_models
from xbn.training import TrainConfig, load_recipe, resolve

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_defaults_are_the_digits_recipe():
    recipe = resolve(MODELS / "digits_mobilenetv2_xbn.yaml")
    assert recipe.as_dict() == TrainConfig().validate().as_dict()
    assert recipe.learning_rate == pytest.approx(0.1 * 64 / 256)


@pytest.mark.parametrize("recipe, model, calibrate", [
    ("finetune_resnet50.yaml", "resnet50", 0), ("finetune_mobilenetv2.yaml", "mobilenetv2", 0),
    ("finetune_resnet50_xbn.yaml", "resnet50_xbn", 512),
])
def test_the_fine_tuning_recipes_start_from_keras_imagenet_weights(recipe, model, calibrate):
    """Issue 39: the head first with the backbone frozen, then everything at a
    tenth of the rate; the names resolve without a download."""
    from xbn.training.start import check_start, entry_arguments

    config = resolve(MODELS / recipe)
    assert (config.model, config.weights, config.calibrate) == (model, "imagenet", calibrate)
    assert (config.freeze, config.freeze_epochs, config.epochs) == ("backbone", 3, 15)
    assert config.unfrozen_learning_rate == pytest.approx(config.learning_rate / 10)
    check_start(config)
    assert entry_arguments(config) == ({"alpha": 1.0, "layout": "keras"} if model == "mobilenetv2"
                                       else {"layout": "keras"})


@pytest.mark.parametrize("name", list_models())
def test_every_model_has_a_recipe_following_the_official_one(name):
    """ImageNet models: the official XBNBlock recipe; CIFAR models (32x32): He et al.'s."""
    from xbn.models import model_facts

    cifar = model_facts(name).default_size == 32
    config = resolve(MODELS / f"{'cifar10' if cifar else 'imagenet'}_{name}.yaml")
    assert config.model == name
    assert (config.optimizer, config.momentum) == ("sgd", 0.9)
    if cifar:
        assert config.image_size == 32 and config.data == "tfds:cifar10"
        assert (config.lr, config.weight_decay, config.epochs, config.batch_size) == (0.1, 1e-4, 164, 128)
        return
    assert config.image_size == 224
    assert config.data.startswith("tfrecord:") and config.data_args == {"label_offset": -1}
    if name.startswith("mobilenetv2"):
        assert config.epochs == 150
    else:
        assert (config.lr, config.weight_decay, config.epochs, config.batch_size) == (0.1, 1e-4, 100, 256)


def test_flags_override_the_recipe_and_model_args_merge(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("base: %s\nepochs: 3\nmodel_args: {alpha: 0.5}\n" % (MODELS / "digits_mobilenetv2_xbn.yaml"))
    config = cli.config_from_args(
        ["--recipe", str(recipe), "--epochs", "7", "--model-arg", "xbn_groups=8", "--no-flip",
         "--crop-scale", "0.3", "0.9"]
    )
    assert config.epochs == 7
    assert config.model_args == {"alpha": 0.5, "xbn_groups": 8}
    assert config.crop_scale == (0.3, 0.9) and config.flip is False
    assert config.batch_size == 64  # from the base recipe


def test_switching_model_drops_the_default_models_arguments():
    config = resolve(overrides={"model": "resnet50_xbn"})
    assert config.model_args == {}


@pytest.mark.parametrize(
    "text, error, message",
    [("epochs: [", ValueError, "is not valid YAML"),
     ("- 1\n- 2\n", ValueError, "must be a mapping of settings"),
     ("epoch: 3\n", ValueError, "unknown setting(s) 'epoch' (did you mean 'epochs'?)"),
     ("base: nowhere.yaml\n", FileNotFoundError, "does not exist")],
)
def test_unreadable_recipes(tmp_path, text, error, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(error) as info:
        load_recipe(path)
    assert message in str(info.value)


def test_recipe_base_loops_are_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ValueError, match="loops back"):
        load_recipe(tmp_path / "a.yaml")


@pytest.mark.parametrize(
    "overrides, message",
    [({"model": "resnet9"}, "unknown `model` 'resnet9'"),
     ({"image_size": 16}, "`image_size` must be an integer >= 32"),
     ({"epochs": 2, "warmup_epochs": 2}, "`warmup_epochs` 2.0 must be less than `epochs` 2"),
     ({"model_args": {"classes": 3}}, "`model_args` classes is set by the trainer itself"),
     ({"data": "imagenet"}, "unknown source 'imagenet'"),
     ({"optimizer": "adam"}, "`optimizer` must be one of 'sgd', 'adamw'"),
     ({"crop_scale": (0.5,)}, "`crop_scale` must be two numbers")],
)
def test_bad_settings(overrides, message):
    with pytest.raises((ValueError, TypeError)) as info:
        resolve(overrides=overrides)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "argv, message",
    [(["--image-size", "16"], "argument --image-size must be an integer >= 32"),
     (["--model", "nope"], "unknown --model 'nope'"),
     (["--recipe", "/no/such.yaml"], "recipe /no/such.yaml does not exist"),
     (["--batch-size", "5000", "--out", "{tmp}/big"], "--batch-size 5000 is larger than the 1258 training examples"),
     (["--data", "folder:{tmp}/missing", "--out", "{tmp}/m"], "does not exist"),
     (["--model-arg", "alpha"], "--model-arg expects KEY=VALUE")],
)
def test_cli_errors_are_one_clear_line(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err and err.startswith("xbn-train: error:")
