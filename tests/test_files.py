"""Atomic writes and generated Markdown sections (xbn._files)."""

import os

import pytest

from xbn import _files


def test_atomic_write_replaces_whole_file_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "sub" / "metrics.json"
    _files.atomic_write_text(path, "first")
    _files.atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert os.listdir(path.parent) == ["metrics.json"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "weights.bin"
    _files.atomic_write_bytes(path, b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(_files.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        _files.atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["weights.bin"]


def test_atomic_directory_is_all_or_nothing(tmp_path):
    target = tmp_path / "export"
    with pytest.raises(RuntimeError):
        with _files.atomic_directory(target) as tmp:
            (tmp / "half.pb").write_text("x")
            raise RuntimeError("conversion failed")
    assert not target.exists()
    assert os.listdir(tmp_path) == []
    with _files.atomic_directory(target) as tmp:
        (tmp / "saved_model.pb").write_text("v1")
    assert (target / "saved_model.pb").read_text() == "v1"


def test_atomic_directory_replaces_only_with_overwrite(tmp_path):
    target = tmp_path / "export"
    target.mkdir()
    (target / "old.pb").write_text("old")
    with pytest.raises(FileExistsError, match="`overwrite`"):
        with _files.atomic_directory(target):
            pass
    with _files.atomic_directory(target, overwrite=True) as tmp:
        (tmp / "new.pb").write_text("new")
    assert sorted(os.listdir(target)) == ["new.pb"]
    assert os.listdir(tmp_path) == ["export"]


def test_replace_section_keeps_the_hand_written_text(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("# Title\n\nintro\n\n<!-- begin:t -->\nold\n<!-- end:t -->\n\noutro\n")
    _files.replace_section(path, "t", "| new |")
    assert path.read_text() == (
        "# Title\n\nintro\n\n<!-- begin:t -->\n| new |\n<!-- end:t -->\n\noutro\n"
    )
    _files.replace_section(path, "other", "appended")
    assert path.read_text().endswith("<!-- begin:other -->\nappended\n<!-- end:other -->\n")


# -- permissions ------------------------------------------------------------------
@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path):
    return os.stat(path).st_mode & 0o777


def test_written_files_and_folders_get_the_permissions_of_the_umask(tmp_path, umask_022):
    """A serving process or a colleague must be able to read an export:
    temporary files are 0600 and folders 0700 until the rename."""
    assert _files.umask() == 0o022
    _files.atomic_write_text(tmp_path / "metrics.json", "{}")
    with _files.atomic_path(tmp_path / "model.keras") as tmp:
        tmp.write_text("x")
    with _files.atomic_directory(tmp_path / "export") as tmp:
        (tmp / "saved_model.pb").write_text("x")
    assert _mode(tmp_path / "metrics.json") == 0o644
    assert _mode(tmp_path / "model.keras") == 0o644
    assert _mode(tmp_path / "export") == 0o755
    assert _mode(tmp_path / "export" / "saved_model.pb") == 0o644


def test_a_stricter_umask_is_respected(tmp_path):
    previous = os.umask(0o077)
    try:
        _files.atomic_write_text(tmp_path / "private.json", "{}")
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "private.json") == 0o600


# -- temporaries and swaps ------------------------------------------------------------
def test_temporaries_of_dead_processes_are_cleaned_and_live_ones_kept(tmp_path):
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    host = socket.gethostname().replace("-", "_")
    stale = tmp_path / f".export.tmp-{host}-{dead}-abc123"
    stale.mkdir()
    (stale / "saved_model.pb").write_text("half")
    live = tmp_path / f".export.tmp-{host}-{os.getpid()}-def456"
    live.mkdir()
    other_host = tmp_path / f".export.tmp-elsewhere-{dead}-ghi789"
    other_host.mkdir()
    with _files.atomic_directory(tmp_path / "export") as tmp:
        (tmp / "saved_model.pb").write_text("whole")
    assert not stale.exists()
    assert live.exists() and other_host.exists()  # not ours to judge


def test_overwrite_swaps_the_folder_in_one_step(tmp_path, monkeypatch):
    """With --overwrite a reader finds the old export or the new, never none:
    on Linux the two are exchanged atomically, and nothing is renamed aside."""
    target = tmp_path / "export"
    target.mkdir()
    (target / "version").write_text("old")
    renames = []
    real_replace = os.replace
    monkeypatch.setattr(_files.os, "replace", lambda a, b: renames.append((a, b)) or real_replace(a, b))
    with _files.atomic_directory(target, overwrite=True) as tmp:
        (tmp / "version").write_text("new")
    assert (target / "version").read_text() == "new"
    assert renames == []  # exchanged, not moved away and back
    assert sorted(os.listdir(tmp_path)) == ["export"]


# -- locks --------------------------------------------------------------------------------
def test_a_second_holder_is_refused_at_once_with_the_first_named(tmp_path):
    folder = tmp_path / "run"
    with _files.FolderLock(folder, "xbn-train --epochs 3"):
        with pytest.raises(_files.FolderInUseError) as info:
            _files.FolderLock(folder, "xbn-train --epochs 4").acquire()
        message = str(info.value)
        assert f"{folder} is in use by process {os.getpid()}" in message
        assert "(xbn-train --epochs 3, since " in message
    with _files.FolderLock(folder, "xbn-train --epochs 4"):  # free again
        pass


def test_a_lock_left_by_a_killed_process_blocks_nobody(tmp_path):
    import signal
    import subprocess
    import sys

    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from xbn import _files; "
         f"_files.FolderLock({str(folder)!r}, 'holder').acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(_files.FolderInUseError, match=f"in use by process {holder.pid}"):
        _files.FolderLock(folder, "second").acquire()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with _files.FolderLock(folder, "second"):
        pass


# -- full disks -----------------------------------------------------------------------------
def test_too_little_space_is_one_line_naming_folder_need_and_advice(tmp_path, monkeypatch):
    usage = type("Usage", (), {"free": 3 * 2**20})
    monkeypatch.setattr(_files.shutil, "disk_usage", lambda path: usage)
    with pytest.raises(_files.DiskFullError) as info:
        _files.ensure_space(tmp_path / "checkpoints", 50 * 2**20, "the checkpoint of epoch 2", "Free some space.")
    assert str(info.value).endswith(
        f"not enough space in {tmp_path / 'checkpoints'} for the checkpoint of epoch 2: it needs about "
        "50.0 MB and 3.0 MB are free. Free some space."
    )


@pytest.mark.parametrize("error", [
    OSError(28, "No space left on device"),
    OSError("Unable to synchronously create file (file write failed: errno = 28, error message = "
            "'No space left on device')"),  # what h5py says
], ids=["errno", "h5py"])
def test_a_disk_that_fills_up_while_writing_is_reported_the_same_way(tmp_path, error):
    with pytest.raises(_files.DiskFullError, match=f"the disk of {tmp_path} filled up while writing x"):
        with _files.disk_full_errors(tmp_path, "writing x"):
            raise error
    with pytest.raises(OSError, match="Permission denied"):  # other errors pass untouched
        with _files.disk_full_errors(tmp_path, "writing x"):
            raise PermissionError(13, "Permission denied")
