"""Every command that writes refuses a place it cannot write in one line, with
the exit status of a refused input (2), and nothing is half-written."""

import errno
import os
import subprocess
from pathlib import Path

import pytest

from xbn.cli import _common
from xbn.cli import bench as bench_cli
from xbn.cli import plot as plot_cli
from xbn.cli import study as study_cli
from xbn.cli import train as train_cli


@pytest.fixture(scope="module")
def unwritable(tmp_path_factory):
    """A folder nobody can write: a read-only tmpfs where this machine lets us
    mount one, else /sys (read-only for files and folders on every Linux)."""
    folder = tmp_path_factory.mktemp("ro")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0
    yield folder if mounted else Path("/sys")
    if mounted:
        subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.parametrize("command, argv", [
    (train_cli, ["--model", "resnet20", "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "4",
                 "--image-size", "32", "--no-export", "--out", "{ro}/run"]),
    (study_cli, ["--quick", "--jobs", "1", "--out", "{ro}/study"]),
    (bench_cli, ["--suite", "layers", "--quick", "--repeats", "1", "--warmup", "0", "--out", "{ro}/bench"]),
    (plot_cli, ["resnet20", "--out", "{ro}/resnet20.png"]),
], ids=["xbn-train", "xbn-study", "xbn-bench", "xbn-plot"])
def test_an_unwritable_output_is_one_line_and_status_2(command, argv, unwritable, capsys):
    before = sorted(os.listdir(unwritable))
    assert command.main([a.replace("{ro}", str(unwritable)) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"cannot write {unwritable}" in err[0] and "Choose a folder you can write to" in err[0]
    assert "Traceback" not in err[0]
    assert sorted(os.listdir(unwritable)) == before


@pytest.mark.parametrize("code, reason", [(errno.EROFS, "read-only file system"), (errno.EACCES, "permission denied")])
def test_the_message_names_the_place_and_the_reason(code, reason, capsys):
    def body(argv):
        raise OSError(code, os.strerror(code), "/data/out")

    assert _common.run_main("xbn-x", body, []) == 2
    assert capsys.readouterr().err.strip() == (
        f"xbn-x: error: cannot write /data/out: {'it is on a ' if code == errno.EROFS else ''}{reason}. Choose a "
        "folder you can write to (--out, or the output argument of the command); nothing was written there.")


def test_other_os_errors_are_not_dressed_up():
    def body(argv):
        raise OSError(errno.EIO, "I/O error")

    with pytest.raises(OSError, match="I/O error"):
        _common.run_main("xbn-x", body, [])


def test_the_readme_gives_every_commands_exit_statuses():
    """The README's exit-status table has one row per console script of
    setup.cfg, and every script runs under run_main (status 2 for refused
    input, 130 when interrupted), which the table's columns promise."""
    import configparser
    import importlib
    import inspect

    root = Path(__file__).resolve().parents[1]
    config = configparser.ConfigParser()
    config.read(root / "setup.cfg")
    scripts = dict(
        line.split(" = ") for line in config["options.entry_points"]["console_scripts"].strip().splitlines()
    )
    readme = (root / "README.md").read_text()
    table = readme.split("<!-- exit-codes:")[1].split("\n\n")[0]
    rows = {line.split("|")[1].strip().strip("`") for line in table.splitlines() if line.startswith("| `")}
    assert rows == set(scripts)
    for target in scripts.values():
        module, function = target.split(":")
        source = inspect.getsource(importlib.import_module(module))
        assert "run_main(" in source or "console_main(" in source, module


def test_the_library_speaks_in_argument_names_and_the_commands_in_flags(capsys):
    """A Python caller never typed a flag: the library names its arguments
    (`` `data` ``, `` `batch_size` ``); a console script turns each name it has
    a flag for into that flag, and leaves the others as they are."""
    from xbn.data import load_source

    with pytest.raises(ValueError) as info:
        load_source("nope")
    assert str(info.value).startswith("`data` 'nope': unknown source 'nope'") and "--" not in str(info.value)
    assert train_cli.main(["--data", "nope", "--out", "unused"]) == 2
    assert capsys.readouterr().err.startswith("xbn-train: error: --data 'nope': unknown source 'nope'")
    message = "`batch_size` 64 is larger than the 10 training examples of `data` x; `fmt` and `seed`"
    assert _common.in_flags(message, "xbn-train") == (
        "--batch-size 64 is larger than the 10 training examples of --data x; `fmt` and --seed")
    assert _common.in_flags("`fmt` must be one of", "xbn-export") == "--format must be one of"
    assert _common.in_flags("`model_args` alpha", "xbn-train") == "--model-arg alpha"
    assert _common.in_flags("`batch_size`", "xbn-nothing") == "`batch_size`"


def test_a_batch_larger_than_the_data_in_both_wordings(tmp_path, capsys):
    from xbn.training import TrainConfig, train

    config = TrainConfig(model="resnet20", model_args={}, data="synthetic", data_args={"sizes": (8, 4, 4)},
                         batch_size=16,
                         image_size=8, epochs=1, out=str(tmp_path / "a"), export=False, verbose=False)
    with pytest.raises(ValueError, match=r"^`batch_size` 16 is larger than the 8 training examples of `data` "
                                         r"synthetic; use `batch_size` 8 or less\.$"):
        train(config, log=lambda line: None)
    argv = ["--model", "resnet20", "--data", "synthetic", "--data-arg", "sizes=(8,4,4)", "--batch-size", "16",
            "--image-size", "8", "--epochs", "1", "--out", str(tmp_path / "b"), "--no-export", "--quiet"]
    assert train_cli.main(argv) == 2
    assert capsys.readouterr().err.strip().endswith(
        "--batch-size 16 is larger than the 8 training examples of --data synthetic; use --batch-size 8 or less.")


def test_the_model_table_script_refuses_a_missing_readme_and_unknown_models(tmp_path, capsys):
    """scripts/model_table.py wrote a new README where the path was wrong,
    after counting every model, and an unknown name ended in a traceback."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "model_table.py"
    spec = importlib.util.spec_from_file_location("model_table", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    missing = tmp_path / "nowhere" / "README.md"
    assert script.main(["--readme", str(missing), "resnet20"]) == 2
    assert (f"model_table.py: error: --readme {missing}: no such file; name an existing Markdown file (its "
            "generated 'models' section") in capsys.readouterr().err
    assert not missing.parent.exists()
    readme = tmp_path / "README.md"
    readme.write_text("# Models\n")
    assert script.main(["--readme", str(readme), "resnet20", "resnet21"]) == 2
    assert "Unknown model 'resnet21'. The registered models are: mobilenetv2," in capsys.readouterr().err
    assert readme.read_text() == "# Models\n"


CONSOLE_SCRIPTS = ("train", "evaluate", "predict", "export", "shift", "study", "bench", "plot", "convert")


@pytest.mark.parametrize("script", CONSOLE_SCRIPTS)
def test_every_option_says_what_it_does_and_its_default(script):
    """Issue 40: --batch-size and --skip-bad-images of xbn-evaluate and
    xbn-shift and --format of xbn-export had no help text."""
    import argparse
    import importlib

    parser = importlib.import_module(f"xbn.cli.{script}").build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        assert (action.help or "").strip(), f"xbn-{script} {name} has no help text"
        shown = action.default not in (None, False, True, argparse.SUPPRESS, [])
        if shown and action.option_strings:
            assert "default" in action.help, f"xbn-{script} {name}: its default {action.default!r} is not stated"
