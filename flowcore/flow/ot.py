"""Minibatch optimal-transport coupling of data and noise (torchcfm's OT-CFM).

With independent coupling the learned ODE's paths cross and curve. Pairing each data point
with a noise sample of the same batch so that the total squared distance is minimal gives
straighter paths at the same training cost (Tong et al. 2023, Pooladian et al. 2023).
"""

from __future__ import annotations

import numpy as np
import torch

from flowcore.errors import DataError, UnknownNameError

State = dict[str, torch.Tensor]


def _flat(x: torch.Tensor | State) -> torch.Tensor:
    """[B, ...] or {m: [B, ...]} -> [B, D] (modalities side by side: one joint cost)."""
    if isinstance(x, torch.Tensor):
        return x.reshape(x.shape[0], -1)
    return torch.cat([v.reshape(v.shape[0], -1) for v in x.values()], 1)


def _take(x: torch.Tensor | State, index: torch.Tensor) -> torch.Tensor | State:
    if isinstance(x, torch.Tensor):
        return x[index]
    return {k: v[index] for k, v in x.items()}


def _sinkhorn_plan(cost: torch.Tensor, reg: float, iters: int) -> torch.Tensor:
    """Entropic OT plan with uniform marginals, log-domain iterations (stable for small reg)."""
    n, m = cost.shape
    log_k = -cost / reg
    log_a = torch.full((n,), -float(np.log(n)), dtype=cost.dtype, device=cost.device)
    log_b = torch.full((m,), -float(np.log(m)), dtype=cost.dtype, device=cost.device)
    f = torch.zeros_like(log_a)
    g = torch.zeros_like(log_b)
    for _ in range(iters):
        f = log_a - torch.logsumexp(log_k + g[None, :], 1)
        g = log_b - torch.logsumexp(log_k + f[:, None], 0)
    return torch.exp(f[:, None] + log_k + g[None, :])


def ot_coupling(x0: torch.Tensor | State, eps: torch.Tensor | State, method: str = "exact", reg: float = 0.05,
                iters: int = 200, generator: torch.Generator | None = None) -> torch.Tensor | State:
    """Re-pair a batch's noise with its data by minibatch optimal transport; returns eps reordered.

    Cost: squared Euclidean distance between flattened samples (over all modalities of a dict),
    divided by its maximum. ``"exact"``: the optimal permutation (Hungarian,
    ``scipy.optimize.linear_sum_assignment``). ``"sinkhorn"``: for each x0[i], eps[j] drawn from
    row i of the entropic plan with regulariser ``reg`` (torchcfm's sampler; j may repeat).
    """
    a, b = _flat(x0), _flat(eps)
    if a.shape[0] != b.shape[0]:
        raise DataError(f"ot_coupling: x0 has {a.shape[0]} samples but eps has {b.shape[0]}; give equal batches")
    cost = torch.cdist(a.double(), b.double()) ** 2
    cost = cost / cost.max().clamp_min(1e-12)
    if method == "exact":
        from scipy.optimize import linear_sum_assignment  # lazy: scipy only for the exact coupling

        rows, cols = linear_sum_assignment(cost.cpu().numpy())
        index = torch.empty(len(rows), dtype=torch.long)
        index[torch.from_numpy(rows)] = torch.from_numpy(cols)
    elif method == "sinkhorn":
        plan = _sinkhorn_plan(cost.cpu(), reg, iters)
        index = torch.multinomial(plan / plan.sum(1, keepdim=True), 1, generator=generator).squeeze(1)
    else:
        raise UnknownNameError(f"unknown OT coupling method {method!r}; choose 'exact' or 'sinkhorn'")
    return _take(eps, index.to(a.device))
