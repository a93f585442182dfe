"""The cache folder and package data files: where they are, and what a missing one says."""

from pathlib import Path

import platformdirs
import pytest

from flowcore.errors import DataError
from flowcore.files import cache_dir, package_file


def test_cache_dir_follows_flowcore_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("FLOWCORE_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    assert cache_dir("protein", "x") == tmp_path / "protein" / "x"


def test_cache_dir_defaults_to_the_platforms_user_cache(monkeypatch):
    monkeypatch.delenv("FLOWCORE_CACHE", raising=False)
    assert cache_dir("image") == Path(platformdirs.user_cache_dir("flowcore", appauthor=False)) / "image"


def test_package_file_finds_a_shipped_file_without_importing_it():
    path = package_file("pytest", "py.typed", "pip install pytest")
    assert path.is_file() and path.parent.name == "pytest"


def test_a_missing_package_or_file_names_both_and_how_to_install():
    with pytest.raises(DataError, match=r"'no_such_package_x' is not installed; pip install it"):
        package_file("no_such_package_x", "data/a.csv", "pip install it")
    with pytest.raises(DataError, match=r"data/a\.csv is missing from the installed package 'pytest'.*; reinstall"):
        package_file("pytest", "data/a.csv", "reinstall")
