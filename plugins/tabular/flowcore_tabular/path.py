"""RecTable's mixed prior: N(0, 1) on quantile-normal dims, U(-1, 1) on one-hot (±1) dims.

The core's ``LinearPath`` draws one Gaussian for every channel, so it cannot say that a
one-hot dim starts from U(-1, 1), nor that a padding channel of a column token stays 0. This
path keeps LinearPath's interpolation and velocity (x_t = (1 - t) x0 + t eps, v = eps - x0)
and only replaces the prior, from a per-token, per-channel map of kinds.
"""

from __future__ import annotations

import torch

from flowcore.errors import DataError
from flowcore.flow.path import LinearPath

from flowcore_tabular.tokenizers import GAUSSIAN, UNIFORM


class MixedPriorPath(LinearPath):
    """LinearPath with eps drawn per channel kind: ``kinds [L, C]`` of ZERO / GAUSSIAN / UNIFORM."""

    def __init__(self, kinds: torch.Tensor) -> None:
        super().__init__()
        self.kinds = kinds

    def __repr__(self) -> str:
        return f"MixedPriorPath(tokens={self.kinds.shape[0]}, channels={self.kinds.shape[1]})"

    def prior(self, shape, *, generator=None, device=None, dtype=torch.float32):
        shape = tuple(shape)
        if shape[-2:] != tuple(self.kinds.shape):
            raise DataError(f"tabular prior is for tokens [B, {self.kinds.shape[0]}, {self.kinds.shape[1]}], "
                            f"asked for {shape}")
        gauss = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        unif = torch.rand(shape, generator=generator, device=device, dtype=dtype) * 2 - 1
        kinds = self.kinds.to(gauss.device)
        return torch.where(kinds == GAUSSIAN, gauss, torch.where(kinds == UNIFORM, unif, torch.zeros_like(gauss)))
