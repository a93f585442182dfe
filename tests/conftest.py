import os

import pytest
import torch

# Tests must not depend on the machine's core count or fight over the 2 CI cores.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def registry():
    from flowcore.registry import Registry

    return Registry()
