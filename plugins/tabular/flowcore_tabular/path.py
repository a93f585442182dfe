"""RecTable's mixed prior: N(0, 1) on quantile-normal dims, U(-1, 1) on one-hot (±1) dims;
and masked-column training for imputation.

The core's ``LinearPath`` draws one Gaussian for every channel, so it cannot say that a
one-hot dim starts from U(-1, 1), nor that a padding channel of a column token stays 0.
:class:`MixedPriorPath` keeps LinearPath's interpolation and velocity
(x_t = (1 - t) x0 + t eps, v = eps - x0) and only replaces the prior, from a per-token,
per-channel map of kinds.

:class:`MaskedColumnPath` (modality option ``masking``) also teaches the network to fill in
columns given the others. The core gives one time per modality, but a table is one
modality; so the per-column choice lives in the path: a share ``masking`` of training rows
get a random set of *known* columns, which stay at their data values (x_t = x0, target
v = 0) with their flag channel at 1. The network learns the conditional velocity of the
other columns given the known ones (and v = 0 on known ones); the rest of the rows train
unconditional generation as before. Imputation then holds known columns fixed and solves
for the others (:mod:`flowcore_tabular.impute`).
"""

from __future__ import annotations

import torch

from flowcore.errors import DataError
from flowcore.flow.path import LinearPath, PathSample
from flowcore_tabular.tokenizers import GAUSSIAN, UNIFORM, known_channels


class MixedPriorPath(LinearPath):
    """LinearPath with eps drawn per channel kind: ``kinds [L, C]`` of ZERO / GAUSSIAN / UNIFORM."""

    def __init__(self, kinds: torch.Tensor) -> None:
        super().__init__()
        self.kinds = kinds

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tokens={self.kinds.shape[0]}, channels={self.kinds.shape[1]})"

    def prior(self, shape, *, generator=None, device=None, dtype=torch.float32):
        shape = tuple(shape)
        if shape[-2:] != tuple(self.kinds.shape):
            raise DataError(f"tabular prior is for tokens [B, {self.kinds.shape[0]}, {self.kinds.shape[1]}], "
                            f"asked for {shape}")
        gauss = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        unif = torch.rand(shape, generator=generator, device=device, dtype=dtype) * 2 - 1
        kinds = self.kinds.to(gauss.device)
        return torch.where(kinds == GAUSSIAN, gauss, torch.where(kinds == UNIFORM, unif, torch.zeros_like(gauss)))


class MaskedColumnPath(MixedPriorPath):
    """MixedPriorPath whose training rows get random known columns (module docstring).

    kinds    [L, C] channel kinds (ZERO / GAUSSIAN / UNIFORM)
    columns  [L, C] long: the column of each value channel, -1 elsewhere (``column_map``)
    flags    [L, C] long: the column of each flag channel, -1 elsewhere (``flag_map``)
    masking  share of rows that get known columns; such a row gets k known columns, k uniform
             in 1 .. Ncols - 1, chosen at random (so every pattern with something left to
             generate occurs)
    """

    def __init__(self, kinds: torch.Tensor, columns: torch.Tensor, flags: torch.Tensor, masking: float) -> None:
        super().__init__(kinds)
        if not 0.0 < masking <= 1.0:
            raise DataError(f"tabular option masking: {masking}; use a share in (0, 1] (0 turns masking off)")
        self.columns, self.flags, self.masking = columns, flags, masking
        self.n_columns = int(max(columns.max(), flags.max())) + 1

    def draw_known(self, batch_size: int, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """known [B, Ncols] bool: the training distribution of known columns."""
        n = self.n_columns
        masked = torch.rand(batch_size, 1, generator=generator) < self.masking
        count = torch.randint(1, max(n, 2), (batch_size, 1), generator=generator)  # 1 .. n-1 known
        rank = torch.rand(batch_size, n, generator=generator).argsort(1).argsort(1)
        return ((rank < count) & masked).to(device)

    def hold(self, x: torch.Tensor, x0: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """State x [B, L, C] with the ``known [B, Ncols]`` columns at x0 and their flags at 1."""
        value = known_channels(known, self.columns)
        flag = known_channels(known, self.flags)
        return torch.where(flag, torch.ones_like(x), torch.where(value, x0, x))

    def held(self, known: torch.Tensor) -> torch.Tensor:
        """[B, L, C] bool: the channels ``hold`` fixes (value and flag channels of known columns)."""
        return known_channels(known, self.columns) | known_channels(known, self.flags)

    def interpolate(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> PathSample:
        sample = super().interpolate(x0, eps, t)
        known = self.draw_known(x0.shape[0], x0.device)
        x_t = self.hold(sample.x_t, x0, known)
        v = sample.v.masked_fill(self.held(known), 0.0)
        return PathSample(x_t, v, sample.t)
