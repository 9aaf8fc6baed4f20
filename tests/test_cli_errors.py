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
