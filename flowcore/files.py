"""Files outside a run directory: flowcore's cache, and data files that installed packages ship.

Both are found the same way by the core and every plugin, so one environment variable moves
every cache and one message says what to install when a package's file is missing.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import platformdirs

from flowcore.errors import DataError

#: the environment variable that moves flowcore's cache (tests point it at a temporary folder)
CACHE_VARIABLE = "FLOWCORE_CACHE"


def cache_dir(*parts: str) -> Path:
    """``<cache>/<parts...>``: ``$FLOWCORE_CACHE``, else the platform's user cache folder for
    flowcore (``$XDG_CACHE_HOME/flowcore`` or ``~/.cache/flowcore`` on Linux).

    The folder is not created; writers create it when they first write.
    """
    root = os.environ.get(CACHE_VARIABLE) or platformdirs.user_cache_dir("flowcore", appauthor=False)
    return Path(root).joinpath(*parts)


def package_file(package: str, relative_path: str, install: str) -> Path:
    """The file (or folder) ``relative_path`` ("/"-separated) inside the installed ``package``.

    The package is located without being imported (``importlib.util.find_spec``): some data
    packages are installed without their dependencies and could not be imported, and importing
    others (scikit-learn) costs seconds for one CSV file. ``install`` says how to get the package,
    e.g. ``"pip install scikit-learn"``; it ends both error messages.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the Python package {package!r} is not installed; {install}")
    roots = [Path(location) for location in spec.submodule_search_locations]
    for root in roots:
        path = root / relative_path
        if path.exists():
            return path
    raise DataError(f"{relative_path} is missing from the installed package {package!r} "
                    f"(looked in {', '.join(map(str, roots))}); {install}")
