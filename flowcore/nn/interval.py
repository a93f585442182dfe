"""The second time input of an average-velocity network (MeanFlow): the interval h = t - r.

A network built with ``interval=True`` embeds h per modality beside t; called without r it
sees h = 0, u(z, t, t) = v, the instantaneous velocity, so one network serves both the
one-step sampler and every ODE solver, inversion included (flowcore.flow.meanflow).
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from flowcore.errors import ConfigError
from flowcore.nn.embeddings import timestep_frequencies


def interval_lengths(t: Mapping[str, torch.Tensor], r: Mapping[str, torch.Tensor] | None, built: bool,
                     network: str) -> dict[str, torch.Tensor] | None:
    """h = t - r ``{modality: [B]}`` for a network built with ``interval`` (0 where r is not given), else None.

    r given to a network built without the interval embedding is an error naming ``network``.
    """
    if not built:
        if r is not None:
            raise ConfigError(f"{network}: this network was built without the interval embedding an average "
                              "velocity needs (r); train the run with flow.objective: meanflow, or sample it "
                              "with a solver other than meanflow")
        return None
    r = r or {}
    return {n: tn - r[n] if n in r else torch.zeros_like(tn) for n, tn in t.items()}


class IntervalEmbedding(nn.Sequential):
    """h [B] -> [B, dim]: sinusoids of ``time_scale`` h, then Linear, SiLU, Linear, as a conv network's
    time embedding; added to it. The last layer starts at zero, so a velocity network's weights load
    into the average-velocity one (the missing keys are this module's) and give the same field."""

    def __init__(self, dim: int, time_scale: float = 1000.0):
        super().__init__(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.dim, self.time_scale = dim, time_scale
        nn.init.zeros_(self[2].weight)
        nn.init.zeros_(self[2].bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return super().forward(timestep_frequencies(h, self.dim, scale=self.time_scale))
