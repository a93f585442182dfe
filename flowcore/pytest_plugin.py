"""pytest fixtures for plugin authors, loaded by pytest through flowcore's ``pytest11`` entry point.

A plugin's test suite gets them without a conftest::

    def test_contract(flowcore_check):
        flowcore_check("mything", datasets=["mything_demo"])

- ``flowcore_registry``: a fresh :class:`~flowcore.registry.Registry` (every installed plugin,
  discovered anew for the test; register an uninstalled one with ``.register(module)``);
- ``flowcore_cache``: an empty cache folder for the test (``$FLOWCORE_CACHE`` points at it), so
  networks and generated data the test caches never touch the user's cache;
- ``flowcore_check``: :func:`flowcore.testing.check_plugin` bound to the test's ``tmp_path``
  and ``flowcore_registry``: ``flowcore_check(name, **kwargs)`` runs every contract check.

This module imports neither torch nor the kit until a fixture is used, so loading it costs
every pytest run in the environment nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest


@pytest.fixture
def flowcore_registry():
    """A fresh Registry of every installed plugin."""
    from flowcore.registry import Registry  # lazy: pytest loads this module in every run

    return Registry()


@pytest.fixture
def flowcore_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder that ``$FLOWCORE_CACHE`` points at for the test."""
    from flowcore.files import CACHE_VARIABLE  # lazy: pytest loads this module in every run

    path = tmp_path_factory.mktemp("flowcore_cache")
    monkeypatch.setenv(CACHE_VARIABLE, str(path))
    return path


@pytest.fixture
def flowcore_check(flowcore_registry, tmp_path: Path) -> Callable[..., Any]:
    """``flowcore_check(name, **kwargs)``: :func:`flowcore.testing.check_plugin` on the modality ``name``."""
    from flowcore.testing import check_plugin  # lazy: torch, only when a test uses the fixture

    def check(name: str, **kwargs: Any):
        return check_plugin(name, tmp_path, registry=flowcore_registry, **kwargs)

    return check
