"""What probing the commands found (issue 40), each refused in one line in
the caller's words before anything is written, and bugs that keep their
traceback (issue 42)."""

import numpy as np
import pytest
import tiny
from tiny import tiny_zoo  # noqa: F401  (fixture)

from xbn.cli import _common
from xbn.cli import train as cli
from xbn.data import load_source
from xbn.errors import UsageError

pytestmark = pytest.mark.usefixtures("tiny_zoo")
QUICK = ["--model", "tiny_xbn", "--image-size", "32", "--epochs", "1", "--no-export", "--recalibrate-bn", "0"]


def _refused(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("xbn-train: error: ") and err.count("\n") == 1, err
    return err


def test_one_class_is_refused_before_training(tmp_path, capsys):
    import datasets

    datasets.write_folder(tmp_path / "data", per_class=10, classes=(4,))
    out = tmp_path / "run"
    err = _refused([*QUICK, "--data", f"folder:{tmp_path / 'data'}", "--out", str(out)], capsys)
    assert "--data folder:" in err and "has 1 class (digit_4); a classifier trains on at least 2 classes" in err
    assert not out.exists()


@pytest.mark.parametrize("arrays, message", [
    ({"images": np.zeros((40, 8, 8), "uint8"), "labels": np.repeat([0, 99], 20)},
     "the labels go up to 99, but only 2 different labels occur; labels count the classes from 0, so renumber "
     "them 0..1, or, if the data really has 100 classes (or more), say so with --data-arg num_classes=100"),
    ({"images": np.full((4, 8, 8), "x"), "labels": np.arange(4)},
     "'images' holds <U1 values, not pixel numbers; it must be uint8 or float values in 0..255"),
    ({"images": np.where(np.arange(40)[:, None, None] == 7, np.nan, np.ones((40, 8, 8))),
      "labels": np.arange(40) % 2},
     "'images' holds 64 NaN or infinite pixel value(s), the first in image 7"),
])
def test_numpy_data_is_checked_before_any_file_is_written(arrays, message, tmp_path, capsys):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    out = tmp_path / "run"
    err = _refused([*QUICK, "--data", f"numpy:{path}", "--out", str(out)], capsys)
    assert message in err
    assert not out.exists()


def test_a_text_file_named_npz_is_called_what_it_is(tmp_path):
    path = tmp_path / "data.npz"
    path.write_text("images,labels\n")
    with pytest.raises(UsageError, match="is not a NumPy .npz archive \\(a zip file of arrays, as np.savez "
                                         "writes\\)"):
        load_source(f"numpy:{path}")


def test_data_options_are_named_as_the_caller_gives_them(capsys, tmp_path):
    with pytest.raises(UsageError, match="^`data` digits_m: argument `size` must be an integer >= 8. Received: "
                                         "size=4$"):
        load_source("digits_m", data_args={"size": 4})
    err = _refused([*QUICK, "--data", "digits", "--data-arg", "size", "--out", str(tmp_path / "r")], capsys)
    assert "--data-arg expects KEY=VALUE with KEY a Python identifier, e.g. --data-arg label_offset=-1" in err


def test_an_out_that_is_a_file_is_named(tmp_path, capsys):
    out = tmp_path / "taken.txt"
    out.write_text("mine")
    err = _refused([*QUICK, "--out", str(out)], capsys)
    assert f"--out {out} is a file; name a folder for the run" in err
    assert out.read_text() == "mine"


def test_an_interrupted_run_says_that_rerunning_resumes(capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    assert _common.run_main("xbn-train", interrupted, []) == 130
    assert capsys.readouterr().err == ("xbn-train: interrupted; run the same command again to resume from the last "
                                       "finished epoch.\n")


def test_a_bug_keeps_its_traceback_and_debug_shows_a_usage_errors(capsys, monkeypatch):
    """Issue 42: a ValueError, TypeError or RuntimeError from inside xbn or
    keras is a bug, not the user's mistake: it propagates with its traceback
    (exit status 1 from the interpreter); a usage error is one line unless
    ``--debug`` or ``XBN_DEBUG=1`` asks for its traceback."""
    monkeypatch.setenv("XBN_DEBUG", "0")  # restored afterwards, whatever --debug sets below

    def bug(argv):
        return {}["missing"] if argv else int("x")

    with pytest.raises(ValueError, match="invalid literal"):
        _common.run_main("xbn-train", bug, [])
    with pytest.raises(KeyError):
        _common.run_main("xbn-train", bug, ["x"])

    def usage(argv):
        raise UsageError("`epochs` must be positive.")

    assert _common.run_main("xbn-train", usage, []) == 2
    assert capsys.readouterr().err == "xbn-train: error: --epochs must be positive.\n"
    with pytest.raises(UsageError):
        _common.run_main("xbn-train", usage, ["--debug"])
    monkeypatch.setenv("XBN_DEBUG", "1")
    with pytest.raises(UsageError):
        _common.run_main("xbn-train", usage, [])


def test_no_library_message_speaks_in_flags():
    """Library messages name Python arguments in backticks; only the console
    scripts turn them into their flags (``xbn/cli``)."""
    import re
    from pathlib import Path

    import xbn

    root = Path(xbn.__file__).parent
    found = []
    for path in root.rglob("*.py"):
        if path.parts[-2] == "cli" or path.name in ("config.py", "registry.py"):
            continue  # the scripts, and the --help text the settings and data sources carry
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"(raise \w+\(|log\(|UsageError\(|\bf?\")[^#]*\s--[a-z][a-z-]+", line) and \
                    "xbn-export" not in line and "xbn-train" not in line and "--data_dir" not in line \
                    and "baseline_name" not in line:
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_saved_runs_state_their_outputs(tmp_path):
    """model.keras outputs logits (the builders default to a softmax): run.json
    and the summary say so, and the export serves both."""
    import json

    from xbn.training import TrainConfig, train

    lines = []
    with tiny.registered():
        train(TrainConfig(model="tiny_xbn", model_args={}, image_size=32, epochs=1, recalibrate_bn=0,
                          export=False, verbose=False, out=str(tmp_path / "run")), log=lines.append)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["outputs"] == "logits"
    assert "model.keras: logits" in lines[-1]
