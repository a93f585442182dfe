import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def registry():
    from flowcore.registry import Registry

    return Registry()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Parsed-chain caches go to the test's own folder, never the user's."""
    monkeypatch.setenv("FLOWCORE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def ideal_samples():
    from flowcore_protein.data import ideal

    ds = ideal("train", size=8, min_length=40, max_length=90)
    return [ds[i]["protein"] for i in range(len(ds))]
