"""The one dispatch point for the backbone's fused ops: Triton on CUDA, torch reference elsewhere.

The backbone calls only the functions exported here. ``set_backend`` (or the environment
variable ``FLOWCORE_KERNELS`` = auto | triton | reference) forces a choice; ``auto`` also
takes the reference while torch.compile traces. See docs/kernels.md.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from flowcore.errors import ConfigError
from flowcore.kernels import reference

_BACKENDS = ("auto", "triton", "reference")


def _checked(name: str, source: str) -> str:
    if name not in _BACKENDS:
        raise ConfigError(f"{source}: the kernel backend must be one of {', '.join(_BACKENDS)}, got {name!r}")
    return name


_backend = _checked(os.environ.get("FLOWCORE_KERNELS", "auto"), "environment variable FLOWCORE_KERNELS")


def set_backend(name: str) -> None:
    """Choose ``auto`` (Triton on CUDA tensors, reference otherwise), ``triton`` or ``reference``."""
    global _backend
    _backend = _checked(name, "flowcore.kernels.set_backend")


def get_backend() -> str:
    return _backend


def _use_triton(x: torch.Tensor) -> bool:
    if _backend == "reference":
        return False
    if _backend == "triton":
        if _triton_ops() is None:
            raise ConfigError("the kernel backend 'triton' was chosen but triton cannot be imported: "
                              "install triton, or use 'auto' / 'reference'")
        return True
    # Under torch.compile the reference is the better input: inductor fuses it with its
    # neighbours into its own Triton kernels, while an opaque kernel would break the graph.
    return x.is_cuda and not torch.compiler.is_compiling() and _triton_ops() is not None


def _triton_ops():
    """The Triton implementations, or None where Triton is unavailable."""
    try:
        from flowcore.kernels import triton_ops  # lazy: Triton only where a CUDA tensor asks for it
    except ImportError:
        return None
    return triton_ops


def modulated_layer_norm(x: Tensor, shift: Tensor, scale: Tensor, eps: float = 1e-6) -> Tensor:
    if _use_triton(x):
        return _triton_ops().modulated_layer_norm(x, shift, scale, eps)
    return reference.modulated_layer_norm(x, shift, scale, eps)


def rms_norm(x: Tensor, weight: Tensor | None = None, eps: float = 1e-6) -> Tensor:
    if _use_triton(x):
        return _triton_ops().rms_norm(x, weight, eps)
    return reference.rms_norm(x, weight, eps)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    if _use_triton(x):
        return _triton_ops().apply_rope(x, cos, sin)
    return reference.apply_rope(x, cos, sin)


def gated_residual(x: Tensor, y: Tensor, gate: Tensor) -> Tensor:
    if _use_triton(x):
        return _triton_ops().gated_residual(x, y, gate)
    return reference.gated_residual(x, y, gate)


__all__ = ["modulated_layer_norm", "rms_norm", "apply_rope", "gated_residual", "set_backend", "get_backend"]
