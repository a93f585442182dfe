import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def image_cache(tmp_path_factory):
    """Metric classifiers trained by the tests go to a temporary cache, not the user's."""
    path = tmp_path_factory.mktemp("flowcore_cache")
    old = os.environ.get("FLOWCORE_CACHE")
    os.environ["FLOWCORE_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("FLOWCORE_CACHE", None)
    else:
        os.environ["FLOWCORE_CACHE"] = old


@pytest.fixture
def registry():
    from flowcore.registry import Registry

    return Registry()
