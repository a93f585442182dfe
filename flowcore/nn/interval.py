"""The second time input of an average-velocity network (MeanFlow): the interval h = t - r.

A network built with ``interval=True`` embeds h per modality beside t; called without r it
sees h = 0, u(z, t, t) = v, the instantaneous velocity, so one network serves both the
one-step sampler and every ODE solver, inversion included (flowcore.flow.meanflow).
"""

from __future__ import annotations

from typing import Mapping

import torch

from flowcore.errors import ConfigError


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
