import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: these tensors are small, and on a shared machine two threads that wait on each
    other run them slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def shape_cache(tmp_path_factory, monkeypatch):
    """Generated sets and the classifier go to one temporary cache per test session."""
    monkeypatch.setenv("FLOWCORE_CACHE", str(tmp_path_factory.getbasetemp() / "shape_cache"))


@pytest.fixture
def registry():
    from flowcore.registry import Registry

    return Registry()


def sphere(subdivisions: int = 3, radius: float = 1.0):
    """An icosphere as (vertices float64 [V, 3], faces int64 [F, 3]), counter-clockwise from outside."""
    import trimesh

    m = trimesh.creation.icosphere(subdivisions, radius=radius)
    return np.asarray(m.vertices), np.asarray(m.faces, dtype=np.int64)


@pytest.fixture(name="sphere")
def sphere_fixture():
    return sphere
