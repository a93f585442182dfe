"""MeanFlow: an average-velocity network for one-step and few-step generation (Geng et al. 2025).

In flowcore's convention (t = 0 data, t = 1 noise, z_t = (1 - t) x0 + t eps) the average
velocity over [r, t] is

    u(z_t, r, t) = 1 / (t - r) int_r^t v(z_s, s) ds,      so      z_r = z_t - (t - r) u(z_t, r, t),

and u(z, t, t) = v(z, t). Differentiating (t - r) u = int_r^t v ds in t gives the MeanFlow
identity, which trains u without integrals:

    u(z_t, r, t) = v(z_t, t) - (t - r) d/dt u(z_t, r, t),    d/dt u = v . du/dz + du/dt,

the total derivative taken along the flow (a Jacobian-vector product with tangents
(dz, dr, dt) = (v, 0, 1), ``torch.func.jvp``). The loss regresses u_theta on the right-hand
side with v = eps - x0 (the conditional velocity) under stop-gradient:

    u_tgt = sg(v - (t - r) jvp(u_theta, (z_t, t), (v, 1))),    l = |u_theta(z_t, r, t) - u_tgt|^2,

weighted per sample by 1 / sg(l + c)^p (the paper's adaptive weight; p = 0 is plain L2).
Classifier-free guidance goes into the target: v is replaced by
v_g = w v + kappa u_theta(z_t, t, t | c) + (1 - w - kappa) u_theta(z_t, t, t | none) for
samples that keep their condition, so one network pass samples at the guidance scale
w / (1 - kappa).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from flowcore.flow.path import expand_t
from flowcore.flow.timesteps import TimestepSampler

State = dict[str, torch.Tensor]
#: ``u(x: {modality: [B, L, C]}, t [B], r [B]) -> {modality: [B, L, C]}``: an average-velocity field
AverageVelocity = Callable[[State, torch.Tensor, torch.Tensor], State]


def sample_interval(sampler: TimestepSampler, batch_size: int, p_equal: float,
                    generator: torch.Generator | None = None,
                    device: torch.device | str | None = None,
                    draw: str = "sorted",
                    split_means: Sequence[float] = (0.4, -1.2)) -> tuple[torch.Tensor, torch.Tensor]:
    """(t [B], r [B]) with r <= t; r = t for a fraction ``p_equal``.

    A sample with r = t trains u(z, t, t) = v, plain flow matching; the rest train the interval.
    ``draw`` picks the intervals: ``sorted`` takes two draws of ``sampler``, sorted (the paper's);
    ``gap`` takes the length h = t - r uniform on (0, 1) and t uniform on [h, 1], so one interval in
    ten is longer than 0.9, where sorted logit-normal(-0.4, 1) draws 3 in 100,000: the one-step
    map u(z, 0, 1) is trained often, while the r = t samples keep ``sampler``'s t; ``split`` draws t
    and r from two logit-normals of unit scale and means ``split_means`` (noise-side t, data-side r),
    sorted, while the r = t samples keep ``sampler``'s t (Decoupled MeanFlow's proposal: intervals
    are long, 0.35 on average with the default means, and flow matching stays where it was).
    """
    a = sampler(batch_size, generator=generator, device=device)
    if draw == "sorted":
        b = sampler(batch_size, generator=generator, device=device)
        t, r = torch.maximum(a, b), torch.minimum(a, b)
    elif draw == "gap":
        h, u = torch.rand(2, batch_size, generator=generator, device=device)
        t = h + (1 - h) * u
        r = t - h
    elif draw == "split":
        m = torch.tensor(split_means, device=device).unsqueeze(1)
        a_t, a_r = torch.sigmoid(m + torch.randn(2, batch_size, generator=generator, device=device))
        t, r = torch.maximum(a_t, a_r), torch.minimum(a_t, a_r)
    else:
        raise ValueError(f"interval draw {draw!r}: expected 'sorted', 'gap' or 'split'")
    equal = torch.rand(batch_size, generator=generator, device=device) < p_equal
    if draw != "sorted":  # the r = t samples are plain flow matching at the sampler's own t
        t = torch.where(equal, a, t)
    return t, torch.where(equal, t, r)


def total_derivative(u: Callable[[State, torch.Tensor], State], z_t: State, t: torch.Tensor,
                     v: State) -> tuple[State, State]:
    """(u(z_t, t), d/dt u) along dz/dt = v: one forward-mode JVP with tangents (v, 1).

    ``u(z, t)`` closes over r (tangent 0) and anything else that does not move with t.
    Attention runs on SDPA's math backend here: the fused (flash) kernels have no forward-mode
    derivative.
    """
    with sdpa_kernel(SDPBackend.MATH):
        return torch.func.jvp(u, (dict(z_t), t), (dict(v), torch.ones_like(t)))


def difference_derivative(u: Callable[[State, torch.Tensor], State], z_t: State, t: torch.Tensor, v: State,
                          step: float) -> State:
    """d/dt u along dz/dt = v by a central difference: (u(z_t + step v, t + step) - u(z_t - step v, t - step)) / 2 step.

    Two plain passes without a graph where the JVP's forward-mode pass costs several (about five
    plain passes for the ConvUNet on the CPU), and any attention kernel will do. The error is
    O(step^2): a time embedding with periods near 0.006 (scale 1000) needs a step near 1e-4.
    Both passes run in fp32 (autocast off): bf16 cannot resolve a change of order ``step``.
    """
    with torch.autocast(t.device.type, enabled=False):
        ahead = u({k: z_t[k] + step * v[k] for k in z_t}, t + step)
        behind = u({k: z_t[k] - step * v[k] for k in z_t}, t - step)
    return {k: (ahead[k].float() - behind[k].float()) / (2 * step) for k in ahead}


@torch.no_grad()
def meanflow_target(u: AverageVelocity, z_t: State, v: State, t: torch.Tensor, r: torch.Tensor,
                    tangent: State | None = None, step: float | None = None) -> State:
    """u_tgt = v - (t - r) du/dt for each modality (stop-gradient: computed without a graph).

    du/dt is taken along dz/dt = ``tangent``, by default v itself (the paper's). Improved MeanFlow
    (Geng et al. 2025) takes the network's own instantaneous velocity u(z_t, t, t) instead, an
    estimate of the same marginal velocity without the spread of the one-sample eps - x0, which
    the JVP otherwise carries into every long interval's target multiplied by t - r.
    With ``step`` du/dt is a central difference (:func:`difference_derivative`) instead of the JVP.
    """
    direction = v if tangent is None else tangent
    if step is None:
        _, dudt = total_derivative(lambda z, tt: u(z, tt, r), z_t, t, direction)
    else:
        dudt = difference_derivative(lambda z, tt: u(z, tt, r), z_t, t, direction, step)
    h = t - r
    return {k: v[k] - expand_t(h, v[k]) * dudt[k].to(v[k].dtype) for k in v}


@torch.no_grad()
def lagrangian_target(u: AverageVelocity, z_t: State, t: torch.Tensor, r: torch.Tensor,
                      velocity: Callable[[State, torch.Tensor], State]) -> State:
    """u_tgt = v(X, r) + (t - r) du/dr with X = z_t - (t - r) u(z_t, r, t) (stop-gradient).

    The Lagrangian form of the same fixed point (Boffi et al., flow map matching): the map's end
    point X must move with the flow as r moves, dX/dr = v(X, r). Differentiating
    X = z_t - (t - r) u in r gives u - (t - r) du/dr = v(X, r). It needs a velocity field that
    can be read at any point (``velocity``: a trained flow), and takes du/dr by a JVP in r alone,
    with no derivative in z: nothing of u's spatial Jacobian enters the target.
    """
    with sdpa_kernel(SDPBackend.MATH):
        u_rt, dudr = torch.func.jvp(lambda rr: u(z_t, t, rr), (r,), (torch.ones_like(r),))
    h = t - r
    end = {k: z_t[k] - expand_t(h, z_t[k]) * u_rt[k].to(z_t[k].dtype) for k in u_rt}
    v = velocity({**z_t, **end}, r)
    return {k: v[k] + expand_t(h, v[k]) * dudr[k].to(v[k].dtype) for k in u_rt}


def adaptive_weight(per_sample: torch.Tensor, p: float, c: float) -> torch.Tensor:
    """1 / sg(l + c)^p for per-sample losses l [B] (p = 0: ones)."""
    if p == 0:
        return torch.ones_like(per_sample)
    return 1.0 / (per_sample.detach() + c) ** p


def meanflow_loss(u: AverageVelocity, x0: State, eps: State, t: torch.Tensor, r: torch.Tensor,
                  p: float = 1.0, c: float = 1e-3) -> torch.Tensor:
    """The MeanFlow loss (module docstring) on Euclidean data x0 and noise eps ``{modality: [B, L, C]}``.

    The plain form for a field with no conditions and no padding; the training stage
    (``flowcore.train.objective``) adds conditions, guidance in the target, masks and
    per-modality weights around the same :func:`meanflow_target`.
    """
    z_t = {k: (1 - expand_t(t, x0[k])) * x0[k] + expand_t(t, x0[k]) * eps[k] for k in x0}
    v = {k: eps[k] - x0[k] for k in x0}
    target = meanflow_target(u, z_t, v, t, r)
    pred = u(z_t, t, r)
    per_sample = sum(((pred[k].float() - target[k].float()) ** 2).flatten(1).mean(1) for k in x0)
    return (adaptive_weight(per_sample, p, c) * per_sample).mean()


def guided_target_velocity(v: State, u_cond: State | None, u_uncond: State, keep: torch.Tensor,
                           w: float, kappa: float = 0.0) -> State:
    """v_g = w v + kappa u_cond + (1 - w - kappa) u_uncond where ``keep [B]`` (condition kept), else v.

    u_cond, u_uncond: the network's instantaneous velocity u(z_t, t, t) with and without the
    condition (no gradient). w = 1, kappa = 0 gives v.
    """
    out = {}
    for k in v:
        g = w * v[k] + (1 - w - kappa) * u_uncond[k].to(v[k].dtype)
        if kappa:
            g = g + kappa * u_cond[k].to(v[k].dtype)
        out[k] = torch.where(expand_t(keep, v[k]).bool(), g, v[k])
    return out


def mean_velocity_masked(sq: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Per-sample mean of ``sq [B, L]`` over the real tokens of ``mask [B, L]`` (all when None)."""
    if mask is None:
        return sq.mean(-1)
    m = mask.to(sq.dtype)
    return (sq * m).sum(-1) / m.sum(-1).clamp_min(1.0)
