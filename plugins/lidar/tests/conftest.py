import pytest


@pytest.fixture
def registry():
    from flowcore.registry import Registry

    return Registry()


@pytest.fixture(scope="module")
def lidar_cache(tmp_path_factory):
    """Simulated scans go to one temporary cache per test module."""
    path = tmp_path_factory.mktemp("lidar_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLOWCORE_CACHE", str(path))
        yield path
