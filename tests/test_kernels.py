"""flowcore.kernels: the Triton kernels against the references, the dispatch, torch.compile.

The kernel-vs-reference tests need Triton's interpreter, switched on by TRITON_INTERPRET=1
before triton is first imported; torch imports triton early, so they run in a child pytest
(``tests/kernels_interpreted.py``) and the environment of this session stays untouched.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import flowcore.kernels as kernels
from flowcore.errors import ConfigError
from flowcore.kernels import reference
from flowcore.nn.tiny import tiny_transformer

_TESTS = Path(__file__).resolve().parent
# Triton installs with torch on Linux x86-64 only; elsewhere just the reference path exists.
needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")


@needs_triton
def test_triton_kernels_match_the_reference_in_the_interpreter():
    """Every kernel and gradient vs its reference, fp32/bf16, odd shapes and strides; the
    dispatch; the backbone through the kernels (tests/kernels_interpreted.py, 70-odd cases)."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    env.pop("FLOWCORE_KERNELS", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(_TESTS / "kernels_interpreted.py"), "-q", "-p", "no:cacheprovider"],
        cwd=_TESTS.parent, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]


@pytest.fixture
def backend():
    previous = kernels.get_backend()
    yield kernels.set_backend
    kernels.set_backend(previous)


def test_auto_dispatch_on_cpu_uses_the_reference(backend, monkeypatch):
    calls = []
    real = reference.rms_norm
    monkeypatch.setattr(reference, "rms_norm", lambda *a, **k: calls.append(1) or real(*a, **k))
    backend("auto")
    x = torch.randn(3, 8)
    torch.testing.assert_close(kernels.rms_norm(x), real(x))
    assert calls == [1]


def test_an_unknown_backend_is_a_config_error_naming_the_choices(backend):
    with pytest.raises(ConfigError, match="set_backend.*auto, triton, reference.*'cuda'"):
        backend("cuda")
    env = {**os.environ, "FLOWCORE_KERNELS": "fast"}
    result = subprocess.run([sys.executable, "-c", "import flowcore.kernels"], env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "FLOWCORE_KERNELS" in result.stderr and "'fast'" in result.stderr


@needs_triton
def test_forcing_triton_on_cpu_without_the_interpreter_says_what_to_do():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["FLOWCORE_KERNELS"] = "triton"
    code = (
        "import torch, flowcore.kernels as k\n"
        "from flowcore.errors import DataError\n"
        "try:\n    k.rms_norm(torch.ones(2, 4))\nexcept DataError as e:\n    print(e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "needs CUDA tensors" in result.stdout and "TRITON_INTERPRET=1" in result.stdout


@needs_triton
def test_kernels_compile_for_an_h100_without_one():
    """The interpreter checks what the kernels compute; this checks the real compiler takes them
    (Triton ships ptxas, so sm_90 cubins are built with no GPU)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-m", "flowcore.kernels.aot", "--quick", "--arch", "90"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "compiled 6 kernel variants to sm_90 cubins" in result.stdout


# --------------------------------------------------------------------------- torch.compile


@pytest.mark.slow
def test_torch_compile_of_the_backbone_matches_eager(backend):
    """Inductor compiles the backbone (reference ops inside) to the eager outputs."""
    backend("auto")
    model, tokens, t = tiny_transformer()
    with torch.no_grad():
        eager = model(tokens, t)
        compiled = torch.compile(model)(tokens, t)
    assert eager.keys() == compiled.keys() == {"image", "label"}
    for name in eager:
        assert eager[name].abs().max() > 0.1
        torch.testing.assert_close(compiled[name], eager[name], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_torch_compile_traces_the_backbone_training_step(backend):
    """Dynamo + AOT autograd trace forward and backward in one graph (no graph break): the same
    loss and gradients as eager.

    (aot_eager runs the traced graphs without inductor's C++ codegen, which the test above
    already covers, to keep this one fast.)
    """
    backend("auto")
    model, tokens, t = tiny_transformer()

    def loss_and_grads(fn):
        model.zero_grad()
        loss = sum(v.square().mean() for v in fn(tokens, t).values())
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    eager_loss, eager_grads = loss_and_grads(model)
    loss, grads = loss_and_grads(torch.compile(model, backend="aot_eager", fullgraph=True))
    torch.testing.assert_close(loss, eager_loss)
    for got, want in zip(grads, eager_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
