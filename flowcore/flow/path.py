"""Probability paths: how data x0 and noise eps are joined, and what velocity the net learns.

Every path works on ``[B, L, C]`` tensors with a per-sample time ``t [B]`` (t = 0 data,
t = 1 noise). A manifold path (unit quaternions, products) overrides ``interpolate``,
``prior`` and ``step``; solvers only ever move a state through ``path.step``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


def expand_t(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """t [B] -> [B, 1, ..., 1] broadcastable against ``like``."""
    return t.reshape(t.shape[0], *([1] * (like.dim() - 1))).to(like.dtype)


@dataclass
class PathSample:
    """A point on the path and the velocity the network should predict there.

    x_t [B, L, C]  the state at time t
    v   [B, L, C]  d x_t / d t (for the linear path: eps - x0)
    t   [B]
    """

    x_t: torch.Tensor
    v: torch.Tensor
    t: torch.Tensor


class ProbabilityPath(ABC):
    """A path from data (t = 0) to the prior (t = 1)."""

    @abstractmethod
    def prior(self, shape: torch.Size | tuple[int, ...], *, generator: torch.Generator | None = None,
              device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Draw eps from the prior, shape ``[B, L, C]``."""

    @abstractmethod
    def interpolate(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> PathSample:
        """x_t and the target velocity for data x0, noise eps and times t [B]."""

    def step(self, x: torch.Tensor, v: torch.Tensor, dt: torch.Tensor | float) -> torch.Tensor:
        """Move state x along velocity v for a (signed) time dt. Euclidean: x + dt v."""
        if isinstance(dt, torch.Tensor) and dt.dim() == 1:
            dt = expand_t(dt, x)
        return x + dt * v

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Put x back on the manifold (identity in Euclidean space)."""
        return x


class LinearPath(ProbabilityPath):
    """The rectified-flow path: x_t = (1 - t) x0 + t eps, v = eps - x0, eps ~ N(0, I)."""

    def prior(self, shape, *, generator=None, device=None, dtype=torch.float32):
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)

    def interpolate(self, x0, eps, t):
        tt = expand_t(t, x0)
        return PathSample(x_t=(1 - tt) * x0 + tt * eps, v=eps - x0, t=t)
