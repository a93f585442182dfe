"""The rectified-flow training objective on a multi-modality batch.

For each modality m and sample b with time t_bm, x_t = path.interpolate(x0, eps, t) (linear:
x_t = (1 - t) x0 + t eps, v = eps - x0) and

    l_bm = mean_{real tokens, channels} |v_theta(x_t, t)_m - v_m|^2  (+ an auxiliary term on x0_hat)
    loss = sum_{b, m noised} w(t_bm) s_m l_bm / #{(b, m) noised}

so every noised (sample, modality) pair weighs the same, whatever the sequence length or the
number of modalities noised in the sample. A modality given clean (t = 0) or absent (t = 1) in a
sample is seen by the network but adds nothing. The same loss trains a first flow (eps fresh
noise, optionally OT-coupled), a k-rectified flow (eps, x0 fixed pairs from the previous flow),
a k-step distillation (t on the k-grid) and an any-to-any model (per-modality t and states).

With a pseudo-Huber constant c (Lee et al. 2024, "Improving the Training of Rectified Flows";
R2Flow's 2-RF), l_bm is sqrt(mse_bm + c^2) - c instead: the pseudo-Huber distance
sqrt(|.|^2 + c^2 d) - c sqrt(d) of the d values, divided by sqrt(d), so one c fits every sequence
length (theirs: 0.00054 sqrt(d)). Its gradient weighs each sample by 1 / sqrt(mse + c^2), so the
samples the network already fits well are not drowned by the poorly fitted ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from flowcore.flow.path import LinearPath, ProbabilityPath

State = dict[str, torch.Tensor]
#: ``auxiliary[m](x0_hat [B, L, C], t [B]) -> [B] or None``: an extra per-sample loss on the clean
#: estimate the predicted velocity points back to (``ProbabilityPath.clean_estimate``)
Auxiliary = Callable[[torch.Tensor, torch.Tensor], torch.Tensor | None]


@dataclass
class FlowLoss:
    """The scalar that trains, and each modality's mean over the samples where it was noised."""

    loss: torch.Tensor  # []
    per_modality: dict[str, torch.Tensor]  # {m: []} unweighted, for logs


def flow_matching_terms(velocity: Callable[[State, Any], State], x0: State, eps: State,
                        t: torch.Tensor | Mapping[str, torch.Tensor],
                        paths: Mapping[str, ProbabilityPath] | None = None,
                        weight: Callable[[torch.Tensor], torch.Tensor] | torch.Tensor | None = None,
                        mask: Mapping[str, torch.Tensor] | None = None,
                        noised: Mapping[str, torch.Tensor] | None = None,
                        scale: Mapping[str, float] | None = None,
                        auxiliary: Mapping[str, Auxiliary] | None = None,
                        huber_c: float | None = None) -> FlowLoss:
    """The loss (module docstring) for data x0 and noise eps (``{modality: [B, L, C]}``) at times t.

    t: one ``[B]`` for every modality, or ``{modality: [B]}`` (per-modality time, as the
    any-to-any backbone takes it; ``velocity`` then receives that dict).
    weight: a loss weight ``w(t) -> [B]`` (``make_loss_weight``, applied to each modality's t)
    or a tensor [B].
    mask: ``{modality: [B, L] bool}``; padded tokens add nothing to the loss.
    noised: ``{modality: [B] bool}``, the pairs the loss is taken on (default: all of them).
    scale: ``{modality: s_m}``, a per-modality loss weight (default 1).
    auxiliary: ``{modality: Auxiliary}``, added to that modality's per-sample loss.
    huber_c: the pseudo-Huber constant c (module docstring); None takes the squared error.
    """
    paths, scale, auxiliary = paths or {}, scale or {}, auxiliary or {}
    times = {k: (t[k] if isinstance(t, Mapping) else t) for k in x0}
    samples = {k: (paths.get(k) or LinearPath()).interpolate(x0[k], eps[k], times[k]) for k in x0}
    pred = velocity({k: s.x_t for k, s in samples.items()}, t)
    first = next(iter(times.values()))
    total = torch.zeros((), device=first.device)
    count = torch.zeros((), device=first.device)
    parts = {}
    for k, s in samples.items():
        v_hat = pred[k].float()  # a bf16 network output is compared in fp32
        sq = ((v_hat - s.v.float()) ** 2).mean(-1)  # [B, L]
        if mask is not None and k in mask:
            m = mask[k].to(sq.dtype)
            per_sample = (sq * m).sum(-1) / m.sum(-1).clamp_min(1.0)
        else:
            per_sample = sq.mean(-1)
        if huber_c is not None:
            per_sample = (per_sample + huber_c ** 2).sqrt() - huber_c
        if k in auxiliary:
            x0_hat = (paths.get(k) or LinearPath()).clean_estimate(s.x_t, v_hat, times[k])
            extra = auxiliary[k](x0_hat, times[k])
            if extra is not None:
                per_sample = per_sample + extra
        on = noised[k].to(per_sample.dtype) if noised is not None else torch.ones_like(per_sample)
        w = on * scale.get(k, 1.0)
        if weight is not None:
            w = w * (weight(times[k]) if callable(weight) else weight)
        total = total + (w * per_sample).sum()
        count = count + on.sum()
        parts[k] = (on * per_sample).sum() / on.sum().clamp_min(1)
    return FlowLoss(total / count.clamp_min(1), parts)


def flow_matching_loss(velocity: Callable[[State, Any], State], x0: State, eps: State,
                       t: torch.Tensor | Mapping[str, torch.Tensor], **options: Any) -> torch.Tensor:
    """The scalar of :func:`flow_matching_terms` (same arguments)."""
    return flow_matching_terms(velocity, x0, eps, t, **options).loss
