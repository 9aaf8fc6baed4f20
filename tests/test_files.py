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
    with pytest.raises(FileExistsError, match="--overwrite"):
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
