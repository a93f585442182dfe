"""The rectified-flow training objective on a multi-modality batch.

    loss = mean_b w(t_b) * sum_m mean_{tokens, channels} |v_theta(x_t, t)_m - v_m|^2

with x_t, v from each modality's path (linear: x_t = (1 - t) x0 + t eps, v = eps - x0).
The same loss trains a first flow (eps fresh noise, optionally OT-coupled), a k-rectified
flow (eps, x0 fixed pairs from the previous flow) and a k-step distillation (t on the k-grid).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from flowcore.flow.path import LinearPath, ProbabilityPath

State = dict[str, torch.Tensor]


def flow_matching_loss(velocity: Callable[[State, Any], State], x0: State, eps: State,
                       t: torch.Tensor | Mapping[str, torch.Tensor],
                       paths: Mapping[str, ProbabilityPath] | None = None,
                       weight: Callable[[torch.Tensor], torch.Tensor] | torch.Tensor | None = None,
                       mask: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Scalar loss for data x0, noise eps (``{modality: [B, L, C]}``) at times t.

    t: one ``[B]`` for every modality, or ``{modality: [B]}`` (per-modality time, as the
    any-to-any backbone takes it; ``velocity`` then receives that dict).
    weight: a loss weight ``w(t) -> [B]`` (``make_loss_weight``, applied to each modality's t)
    or a tensor [B].
    mask: ``{modality: [B, L] bool}``; padded tokens add nothing to the loss.
    """
    paths = paths or {}
    times = {k: (t[k] if isinstance(t, Mapping) else t) for k in x0}
    samples = {k: (paths.get(k) or LinearPath()).interpolate(x0[k], eps[k], times[k]) for k in x0}
    pred = velocity({k: s.x_t for k, s in samples.items()}, t)
    per_sample = torch.zeros_like(next(iter(times.values())))
    for k, s in samples.items():
        sq = ((pred[k] - s.v) ** 2).mean(-1)  # [B, L]
        if mask is not None and k in mask:
            m = mask[k].to(sq.dtype)
            term = (sq * m).sum(-1) / m.sum(-1).clamp_min(1.0)
        else:
            term = sq.mean(-1)
        if weight is not None:
            term = term * (weight(times[k]) if callable(weight) else weight)
        per_sample = per_sample + term
    return per_sample.mean()
