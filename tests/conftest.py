import os

import pytest
import torch

# Tests must not depend on the machine's core count or fight over the 2 CI cores.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def registry():
    from flowcore.registry import Registry

    return Registry()


@pytest.fixture
def one_thread():
    """Small tensors: a second thread only adds sync cost (much more so on a loaded shared CPU)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
