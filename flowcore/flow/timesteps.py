"""Where on the path training looks: timestep samplers, loss weights and time shifts.

All in flowcore's convention (t = 0 data, t = 1 noise). Formulas from SD3 (Esser et al. 2024,
diffusers ``training_utils.py``) and Flux (``sampling.py``):

- uniform          t ~ U(0, 1)
- logit_normal     t = sigmoid(n), n ~ N(m, s^2)                      (SD3 default m = 0, s = 1);
                   a share ``uniform`` of the draws from U(0, 1) instead, so the ends are trained
- mode             t = 1 - u - s (cos^2(pi u / 2) - 1 + u), u ~ U      (SD3 default s = 1.29)
- grid             t uniform over the k points of a k-step sampling grid (distillation to k steps)
- cosmap weight    w(t) = 2 / (pi (1 - 2t + 2t^2))
- static shift     t' = s t / (1 + (s - 1) t)                          (s > 1 spends more time near noise)
- Flux shift       t' = e^mu / (e^mu + 1/t - 1), mu linear in sequence length
                   from (base_len, base_shift) to (max_len, max_shift)
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from flowcore.errors import ConfigError
from flowcore.flow.names import build_by_name, lookup


class TimestepSampler:
    """Draws training times: ``sampler(batch_size, generator=..., device=...) -> t [B]`` in (0, 1)."""

    def __call__(self, batch_size: int, *, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
        u = torch.rand(batch_size, generator=generator, device=device)
        return self.from_uniform(u)

    def from_uniform(self, u: torch.Tensor) -> torch.Tensor:
        """The inverse-CDF map U(0, 1) -> t (where the sampler has one)."""
        raise NotImplementedError


class Uniform(TimestepSampler):
    """t ~ U(0, 1)."""

    def from_uniform(self, u):
        return u

    def __repr__(self) -> str:
        return "Uniform()"


class LogitNormal(TimestepSampler):
    """t = sigmoid(n), n ~ N(m, s^2): mass in the middle of the path (SD3's best sampler).

    ``uniform`` > 0 takes that share of the draws from U(0, 1) instead. Logit-normal(-0.4, 1)
    alone puts 0.04% of t above 0.95, so a network sampled from t = 1 in one step meets a time it
    has hardly seen; a small uniform share trains the ends and leaves the middle almost as it was.
    """

    def __init__(self, m: float = 0.0, s: float = 1.0, uniform: float = 0.0) -> None:
        if s <= 0:
            raise ConfigError(f"logit_normal timestep sampler: s must be > 0, got {s}")
        if not 0 <= uniform <= 1:
            raise ConfigError(f"logit_normal timestep sampler: uniform must lie in [0, 1], got {uniform}")
        self.m, self.s, self.uniform = float(m), float(s), float(uniform)

    def __call__(self, batch_size, *, generator=None, device=None):
        n = torch.randn(batch_size, generator=generator, device=device)
        t = torch.sigmoid(self.m + self.s * n)
        if self.uniform:  # no extra draws otherwise: runs without the share replay as before
            u, pick = torch.rand(2, batch_size, generator=generator, device=device)
            t = torch.where(pick < self.uniform, u, t)
        return t

    def __repr__(self) -> str:
        share = f", uniform={self.uniform:g}" if self.uniform else ""
        return f"LogitNormal(m={self.m:g}, s={self.s:g}{share})"


class Mode(TimestepSampler):
    """SD3's "mode" sampler: a heavy middle (s > 0) or heavy ends (s < 0); s = 0 is uniform."""

    def __init__(self, s: float = 1.29) -> None:
        # beyond this the map u -> t is not monotone and leaves [0, 1]
        limit = 1 / (math.pi / 2 - 1)
        if not -1 <= s <= limit:
            raise ConfigError(f"mode timestep sampler: s must lie in [-1, {limit:.3f}], got {s}")
        self.s = float(s)

    def from_uniform(self, u):
        return 1 - u - self.s * (torch.cos(math.pi * u / 2) ** 2 - 1 + u)

    def __repr__(self) -> str:
        return f"Mode(s={self.s:g})"


class Grid(TimestepSampler):
    """t drawn uniformly from the k non-zero points of ``time_grid(k, shift)``.

    Training on pairs at exactly these times makes the k-step Euler sampler follow the
    straight pair line (rectified-flow k-step distillation).
    """

    def __init__(self, k: int, shift: float = 1.0) -> None:
        if int(k) < 1:
            raise ConfigError(f"grid timestep sampler: k must be >= 1, got {k}")
        self.k, self.shift = int(k), float(shift)
        self.points = shift_time(torch.linspace(1.0, 0.0, self.k + 1)[:-1], self.shift)

    def __call__(self, batch_size, *, generator=None, device=None):
        i = torch.randint(0, self.k, (batch_size,), generator=generator, device=device)
        return self.points.to(i.device)[i]

    def __repr__(self) -> str:
        return f"Grid(k={self.k}, shift={self.shift:g})"


SAMPLERS: dict[str, type[TimestepSampler]] = {
    "uniform": Uniform, "logit_normal": LogitNormal, "mode": Mode, "grid": Grid,
}


def make_timestep_sampler(name: str, **kwargs) -> TimestepSampler:
    """``"uniform"``, ``"logit_normal"`` (m, s), ``"mode"`` (s) or ``"grid"`` (k, shift)."""
    return build_by_name(SAMPLERS, "timestep sampler", name, **kwargs)


# ----------------------------------------------------------------------------- loss weights


def _no_weight(t: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(t)


def _cosmap(t: torch.Tensor) -> torch.Tensor:
    return 2 / (math.pi * (1 - 2 * t + 2 * t * t))


LOSS_WEIGHTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"none": _no_weight, "cosmap": _cosmap}


def make_loss_weight(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """``w(t [B]) -> [B]`` multiplying each sample's loss: ``"none"`` or ``"cosmap"``."""
    return lookup(LOSS_WEIGHTS, "loss weight", name)


# ----------------------------------------------------------------------------- shifts


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Static (SD3) shift t' = s t / (1 + (s - 1) t); s = 1 is the identity, endpoints stay put."""
    if shift <= 0:
        raise ConfigError(f"time shift must be > 0, got {shift}")
    if shift == 1.0:
        return t
    return shift * t / (1 + (shift - 1) * t)


def flux_mu(seq_len: int | float, base_len: int = 256, max_len: int = 4096,
            base_shift: float = 0.5, max_shift: float = 1.15) -> float:
    """Flux's mu: linear in the sequence length through (base_len, base_shift), (max_len, max_shift)."""
    slope = (max_shift - base_shift) / (max_len - base_len)
    return base_shift + slope * (seq_len - base_len)


def flux_shift(t: torch.Tensor, seq_len: int | float, base_len: int = 256, max_len: int = 4096,
               base_shift: float = 0.5, max_shift: float = 1.15) -> torch.Tensor:
    """Flux's resolution-dependent shift t' = e^mu / (e^mu + 1/t - 1) = ``shift_time(t, e^mu)``."""
    return shift_time(t, math.exp(flux_mu(seq_len, base_len, max_len, base_shift, max_shift)))
