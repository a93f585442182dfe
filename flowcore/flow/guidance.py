"""Classifier-free guidance with one weight per conditioning modality, and condition dropout.

Multi-modal CFG (OmniFlow form, reducing to SD3/minRF CFG for one condition)::

    v = v_u + sum_m w_m (v_m - v_u)

v_u is the model with every conditioning modality dropped, v_m the model with only modality
m kept. w_m = 1 for every m with one condition gives the plain conditional model; w_m = 0
ignores m. One evaluation for v_u plus one per non-zero weight.

How a modality is "dropped" is the model's business (``velocity_fn`` receives the set): the
any-to-any convention (docs/design.md) removes it from the sequence or puts it at t = 1 with noise,
exactly as condition dropout did in training.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

from flowcore.errors import ConfigError

State = dict[str, torch.Tensor]
ConditionalVelocity = Callable[[State, torch.Tensor, frozenset], State]


def guided_velocity(velocity_fn: ConditionalVelocity,
                    weights: Mapping[str, float]) -> Callable[[State, torch.Tensor], State]:
    """``velocity(x, t) -> dict`` combining ``velocity_fn(x, t, dropped)`` over conditions.

    velocity_fn(x: dict, t [B], dropped: frozenset[str]) -> dict: the model with the
    conditioning modalities in ``dropped`` removed. ``weights``: {condition: w}. Further
    arguments of ``velocity`` (an average-velocity field's r [B]) are passed on after ``dropped``.
    """
    names = frozenset(weights)
    active = {m: float(w) for m, w in weights.items() if float(w) != 0.0}

    def velocity(x: State, t: torch.Tensor, *args) -> State:
        v_u = velocity_fn(x, t, names, *args)
        out = {k: v.clone() for k, v in v_u.items()}
        for m, w in active.items():
            v_m = velocity_fn(x, t, names - {m}, *args)
            for k in out:
                out[k] += w * (v_m[k] - v_u[k])
        return out

    return velocity


def condition_dropout(batch_size: int, names: Sequence[str], p: float | Mapping[str, float],
                      generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """Which conditions to drop in a training batch: ``{name: BoolTensor [B]}``, True = drop.

    Each (sample, condition) is dropped independently with probability ``p`` (one float for
    all, or ``{name: p}``); SD3 and minRF use p ~ 0.1 so the model also learns v_u.
    """
    probs = {n: float(p[n] if isinstance(p, Mapping) else p) for n in names}
    for n, q in probs.items():
        if not 0.0 <= q <= 1.0:
            raise ConfigError(f"condition dropout probability for {n!r} must lie in [0, 1], got {q}")
    return {n: torch.rand(batch_size, generator=generator, device=device) < probs[n] for n in names}
