import json
import os
import subprocess
import sys

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


#: runs the CLI, then reports its exit code, its stderr and whether torch was imported
RUNNER = """
import contextlib, io, json, sys
from flowcore.cli import main
err = io.StringIO()
with contextlib.redirect_stderr(err):
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "stderr": err.getvalue(), "torch": "torch" in sys.modules}))
"""


@pytest.fixture
def flowcore_train():
    """``flowcore_train(*args)`` runs ``flowcore train`` in a fresh interpreter (so whether it imported
    torch is honest) and gives ``{"code", "stderr", "torch"}``."""

    def run(*args: str) -> dict:
        out = subprocess.run([sys.executable, "-c", RUNNER, "train", *args], capture_output=True, text=True,
                             check=True)
        return json.loads(out.stdout)

    return run
