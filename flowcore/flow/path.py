"""Probability paths: how data x0 and noise eps are joined, and what velocity the net learns.

Every path works on ``[B, L, C]`` tensors with a per-sample time ``t [B]`` (t = 0 data,
t = 1 noise). A manifold path (unit quaternions, products) overrides ``interpolate``,
``prior`` and ``step``; solvers only ever move a state through ``path.step``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import torch

from flowcore.errors import ConfigError, DataError
from flowcore.flow import so3


def expand_t(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """t [B] -> [B, 1, ..., 1] broadcastable against ``like``."""
    return t.reshape(t.shape[0], *([1] * (like.dim() - 1))).to(like.dtype)


@dataclass
class PathSample:
    """A point on the path and the velocity the network should predict there.

    x_t [B, L, C]  the state at time t
    v   [B, L, C]  d x_t / d t (for the linear path: eps - x0)
    t   [B]
    """

    x_t: torch.Tensor
    v: torch.Tensor
    t: torch.Tensor


class ProbabilityPath(ABC):
    """A path from data (t = 0) to the prior (t = 1)."""

    @abstractmethod
    def prior(self, shape: torch.Size | tuple[int, ...], *, generator: torch.Generator | None = None,
              device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Draw eps from the prior, shape ``[B, L, C]``."""

    @abstractmethod
    def interpolate(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> PathSample:
        """x_t and the target velocity for data x0, noise eps and times t [B]."""

    def masked_prior(self, shape: torch.Size | tuple[int, ...], mask: torch.Tensor, *,
                     generator: torch.Generator | None = None, device: torch.device | str | None = None,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """eps ``[B, L, C]`` for tokens whose real ones are ``mask [B, L]`` (False = padding).

        The default ignores the mask (padding values are never used); a prior that depends on
        which tokens are real, such as a Gaussian centred over each sample's tokens, overrides it.
        """
        return self.prior(shape, generator=generator, device=device, dtype=dtype)

    def clean_estimate(self, x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The data point x0 that velocity v at state x_t and time t [B] points back to.

        Every path here moves at constant velocity along its curve (a line, a geodesic), so
        x0 = step(x_t, v, -t); with the exact v this is the x0 that ``interpolate`` started from.
        """
        return self.step(x_t, v, -t)

    def step(self, x: torch.Tensor, v: torch.Tensor, dt: torch.Tensor | float) -> torch.Tensor:
        """Move state x along velocity v for a (signed) time dt. Euclidean: x + dt v."""
        if isinstance(dt, torch.Tensor) and dt.dim() == 1:
            dt = expand_t(dt, x)
        return x + dt * v

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Put x back on the manifold (identity in Euclidean space)."""
        return x

    def sampling_velocity(self, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The velocity the solvers follow at time t [B] where the network predicts v [B, L, C].

        v itself for every path here except a ``QuaternionPath`` with ``schedule="exp"``.
        Training never calls it: it changes how a trained field is integrated, not what is learned.
        """
        return v

    def transport(self, v: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        """Carry velocity v, evaluated at state src, to state dst (identity in Euclidean space).

        Multi-stage solvers combine velocities from several points; on a manifold each must
        first be moved to the point the step starts from.
        """
        return v

    def stochastic_step(self, x: torch.Tensor, v: torch.Tensor, t: float, dt: float, churn: float,
                        noise: torch.Tensor) -> torch.Tensor:
        """One Euler-Maruyama step of an SDE with the same marginals as the flow (``euler_sde``).

        ``noise`` is a prior draw ``[B, L, C]`` (times the solver's noise scale) and ``churn``
        the SDE's noise level. A path without a Gaussian score (rotations) takes the ODE step.
        """
        return self.step(x, v, dt)


class LinearPath(ProbabilityPath):
    """The rectified-flow path: x_t = (1 - t) x0 + t eps, v = eps - x0, eps ~ N(0, prior_scale^2 I).

    ``prior_scale`` widens the prior where the data is wide (ReQFlow: 10 A for translations).
    ``centre``: eps has zero mean over each sample's tokens (dim -2), over the real tokens
    only in ``masked_prior`` (FrameFlow's zero-centre-of-mass noise for coordinates whose data
    is centred per sample: then x_t stays centred and no velocity is spent moving the centre).
    """

    centre: bool = False

    def __init__(self, prior_scale: float = 1.0, centre: bool = False) -> None:
        self.prior_scale = float(prior_scale)
        self.centre = bool(centre)

    def __repr__(self) -> str:
        return f"LinearPath(prior_scale={self.prior_scale:g}{', centre=True' if self.centre else ''})"

    def prior(self, shape, *, generator=None, device=None, dtype=torch.float32):
        eps = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        if self.centre:
            eps = eps - eps.mean(-2, keepdim=True)
        return eps * self.prior_scale if self.prior_scale != 1.0 else eps

    def masked_prior(self, shape, mask, *, generator=None, device=None, dtype=torch.float32):
        eps = self.prior(shape, generator=generator, device=device, dtype=dtype)
        if not self.centre:
            return eps
        real = mask.to(device=eps.device, dtype=eps.dtype).unsqueeze(-1)  # [B, L, 1]
        return eps - (eps * real).sum(-2, keepdim=True) / real.sum(-2, keepdim=True).clamp_min(1.0)

    def interpolate(self, x0, eps, t):
        tt = expand_t(t, x0)
        return PathSample(x_t=(1 - tt) * x0 + tt * eps, v=eps - x0, t=t)

    def stochastic_step(self, x, v, t, dt, churn, noise):
        """x + dt v - |dt| churn eps_hat + sqrt(2 churn t |dt|) noise, eps_hat = x + (1 - t) v.

        On this path eps_hat = E[eps | x_t] and the score is -eps_hat / (t s^2) (s: prior_scale).
        With diffusion g(t)^2 = 2 churn s^2 t, the SDE dx = (v - g^2 / 2 score) dt + g dW (time
        running down) has the flow's marginals for any churn >= 0 (churn 0: the ODE). ``noise``
        drawn from the prior already carries the factor s (and its centring).
        """
        return x + dt * v - abs(dt) * churn * (x + (1 - t) * v) + (2 * churn * t * abs(dt)) ** 0.5 * noise


class QuaternionPath(ProbabilityPath):
    """Rotations as unit quaternions ``values [B, L, 4]`` (w, x, y, z), joined along SO(3) geodesics.

    x_t = x0 * exp(t log(x0^-1 eps)) (SLERP), with eps's sign flipped when x0 . eps < 0 so the
    path is the shortest rotation (ReQFlow). As 4-vectors x_t runs on a great circle of S^3 at
    constant speed; v = d x_t / d t is a tangent 4-vector there, |v| = half the rotation angle.
    The prior is Haar-uniform on SO(3).

    Every state is kept canonical (w >= 0, see ``so3.canonical``): q and -q are one rotation,
    so a state and its velocity are reported as (s q, s v) with s = sign(w). This keeps the
    endpoints equal to ``project(x0)`` and ``project(eps)`` and gives the network one
    representative per rotation.

    ``schedule="exp"`` changes sampling only (FrameFlow / ReQFlow's ``sample_schedule: exp``):
    the solvers follow v * max(1, rate * t). The trained v points at the clean rotation the
    network predicts, log_x(x0_hat) = -t v, so above t = 1 / rate the rotation closes the
    fraction rate |dt| of its remaining angle per step (an exponential approach: rotations
    settle early, while translations still move) instead of |dt| / t; below it the factor
    is 1 and the rotation lands on x0_hat at t = 0 as on the linear schedule.
    """

    def __init__(self, schedule: str = "linear", rate: float = 10.0) -> None:
        if schedule not in ("linear", "exp") or not float(rate) > 0:
            raise ConfigError(f"QuaternionPath: schedule must be 'linear' or 'exp' and rate > 0, "
                              f"got {schedule!r}, {rate!r}")
        self.schedule, self.rate = schedule, float(rate)

    def __repr__(self) -> str:
        return ("QuaternionPath()" if self.schedule == "linear"
                else f"QuaternionPath(schedule='exp', rate={self.rate:g})")

    def prior(self, shape, *, generator=None, device=None, dtype=torch.float32):
        shape = tuple(shape)
        if shape[-1] != 4:
            raise DataError(f"QuaternionPath wants values [..., 4] (w, x, y, z), got shape {shape}")
        return so3.uniform(shape[:-1], generator=generator, device=device, dtype=dtype)

    def interpolate(self, x0, eps, t):
        if x0.shape[-1] != 4 or eps.shape != x0.shape:
            raise DataError(f"QuaternionPath wants x0 and eps [..., 4] alike, got {tuple(x0.shape)} "
                            f"and {tuple(eps.shape)}")
        q0 = so3.canonical(x0)
        q1 = so3.align(so3.normalize(eps), q0)
        w = so3.sphere_log(q0, q1)
        angle = w.norm(dim=-1, keepdim=True)
        tt = expand_t(t, x0)
        x_t = so3.sphere_exp(q0, tt * w)
        v = torch.cos(tt * angle) * w - angle * torch.sin(tt * angle) * q0
        sign = torch.where(x_t[..., :1] < 0, -1.0, 1.0).to(x_t.dtype)
        return PathSample(x_t=sign * x_t, v=sign * v, t=t)

    def step(self, x, v, dt):
        """Follow the great circle through x in the direction of v's tangent part for time dt."""
        if isinstance(dt, torch.Tensor) and dt.dim() == 1:
            dt = expand_t(dt, x)
        q = so3.normalize(x)
        return so3.canonical(so3.sphere_exp(q, dt * so3.tangent(q, v)))

    def project(self, x):
        return so3.canonical(x)

    def sampling_velocity(self, v, t):
        if self.schedule == "linear":
            return v
        return v * expand_t((self.rate * t).clamp_min(1.0), v)

    def transport(self, v, src, dst):
        """Parallel transport along the great circle src -> dst, after matching src's sign to dst."""
        src = so3.normalize(src)
        flip = (src * dst).sum(-1, keepdim=True) < 0
        src, v = torch.where(flip, -src, src), torch.where(flip, -v, v)
        return so3.transport(so3.tangent(src, v), src, so3.normalize(dst))


class ProductPath(ProbabilityPath):
    """A product manifold: the channel dim C split into consecutive blocks, one path each.

    ``ProductPath([(QuaternionPath(), 4), (LinearPath(prior_scale=10.0), 3)])`` is SE(3) per
    token (rotation channels 0..3, translation channels 4..6), as protein backbones need.
    """

    def __init__(self, parts: Sequence[tuple[ProbabilityPath, int]]) -> None:
        if not parts:
            raise DataError("ProductPath needs at least one (path, channels) part")
        for path, channels in parts:
            if not isinstance(path, ProbabilityPath) or int(channels) < 1:
                raise DataError(f"ProductPath parts are (ProbabilityPath, channels >= 1); got ({path!r}, {channels!r})")
        self.parts = [(path, int(channels)) for path, channels in parts]
        self.channels = sum(c for _, c in self.parts)

    def __repr__(self) -> str:
        return f"ProductPath({self.parts!r})"

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if x.shape[-1] != self.channels:
            raise DataError(f"ProductPath over {self.channels} channels got values with C = {x.shape[-1]} "
                            f"(shape {tuple(x.shape)}); the parts' channel counts must add up to C")
        return torch.split(x, [c for _, c in self.parts], dim=-1)

    def prior(self, shape, *, generator=None, device=None, dtype=torch.float32):
        shape = tuple(shape)
        if shape[-1] != self.channels:
            raise DataError(f"ProductPath over {self.channels} channels asked for a prior of shape {shape}")
        return torch.cat([path.prior((*shape[:-1], c), generator=generator, device=device, dtype=dtype)
                          for path, c in self.parts], -1)

    def masked_prior(self, shape, mask, *, generator=None, device=None, dtype=torch.float32):
        shape = tuple(shape)
        if shape[-1] != self.channels:
            raise DataError(f"ProductPath over {self.channels} channels asked for a prior of shape {shape}")
        return torch.cat([path.masked_prior((*shape[:-1], c), mask, generator=generator, device=device, dtype=dtype)
                          for path, c in self.parts], -1)

    def interpolate(self, x0, eps, t):
        samples = [path.interpolate(a, b, t) for (path, _), a, b in zip(self.parts, self._split(x0), self._split(eps))]
        return PathSample(x_t=torch.cat([s.x_t for s in samples], -1), v=torch.cat([s.v for s in samples], -1), t=t)

    def step(self, x, v, dt):
        return torch.cat([path.step(a, b, dt)
                          for (path, _), a, b in zip(self.parts, self._split(x), self._split(v))], -1)

    def project(self, x):
        return torch.cat([path.project(a) for (path, _), a in zip(self.parts, self._split(x))], -1)

    def sampling_velocity(self, v, t):
        return torch.cat([path.sampling_velocity(a, t) for (path, _), a in zip(self.parts, self._split(v))], -1)

    def transport(self, v, src, dst):
        return torch.cat([path.transport(a, b, c) for (path, _), a, b, c
                          in zip(self.parts, self._split(v), self._split(src), self._split(dst))], -1)

    def stochastic_step(self, x, v, t, dt, churn, noise):
        return torch.cat([path.stochastic_step(a, b, t, dt, churn, c) for (path, _), a, b, c
                          in zip(self.parts, self._split(x), self._split(v), self._split(noise))], -1)
