"""Atomic writes: the file appears whole, with a plain file's mode, and nothing is left beside it."""

import os

import pytest

from flowcore.io import atomic_path, write_text_atomic


def test_an_atomic_write_gets_a_plain_files_mode(tmp_path):
    mask = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "config.yaml", "a: 1\n")
    finally:
        os.umask(mask)
    assert path.read_text() == "a: 1\n"
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_text_atomic(tmp_path / "out.json", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
