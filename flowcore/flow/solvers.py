"""ODE solvers that move a multi-modality state along a learned velocity field.

The state is a dict ``{modality: values [B, L, C]}`` and the field is
``velocity(x: dict, t: Tensor [B]) -> dict`` (same keys). A solver walks a time grid: from
1 to 0 samples (noise -> data), from 0 to 1 inverts (data -> noise); the grid's direction is
the only difference. Every move goes through the modality's ``ProbabilityPath.step``, so a
manifold state (unit quaternions) stays on its manifold and moves along geodesics; in
Euclidean space the steps are the textbook Runge-Kutta updates.

| name     | order | velocity calls (NFE) per step                          |
| -------- | ----- | ------------------------------------------------------ |
| euler    | 1     | 1                                                      |
| midpoint | 2     | 2 (also named rf_solver: RF-Solver's second-order Taylor step is this rule) |
| heun     | 2     | 2                                                      |
| rk4      | 4     | 4                                                      |
| fireflow | 2     | 1 (+1 at the start): the midpoint rule reusing the previous midpoint velocity |
| dopri5   | 5(4)  | adaptive Dormand-Prince, 6 per accepted step (FSAL); uses only grid[0], grid[-1] |
| euler_sde | 1 (weak) | 1: Euler-Maruyama on an SDE with the flow's marginals (``churn``, ``noise_scale``) |
| meanflow | exact for an exact u | 1: z_r = z_t - (t - r) u(z_t, r, t), u the average velocity over [r, t] |

``solve(..., noise=...)`` gives the stochastic solver its noise: a function returning a fresh
prior draw ``{modality: [B, L, C]}`` (the sampler draws it with the padding mask and the run's
generator); the ODE solvers ignore it. ``meanflow`` calls ``velocity(x, t, r)``: the field of a
network trained with ``flowcore.flow.meanflow`` (``flow.objective: meanflow``), the average
velocity over [r, t].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from flowcore.errors import ConfigError, DataError
from flowcore.flow.names import build_by_name
from flowcore.flow.path import LinearPath, ProbabilityPath
from flowcore.flow.timesteps import shift_time

State = dict[str, torch.Tensor]
Velocity = Callable[[State, torch.Tensor], State]
Noise = Callable[[], State]


def time_grid(steps: int, shift: float = 1.0, device: torch.device | str | None = None) -> torch.Tensor:
    """``[steps + 1]`` times from 1.0 (noise) to 0.0 (data), uniform then shifted (``shift_time``).

    Flip it (``grid.flip(0)``) to integrate data -> noise (inversion).
    """
    if int(steps) < 1:
        raise ConfigError(f"time_grid: steps must be >= 1, got {steps}")
    return shift_time(torch.linspace(1.0, 0.0, int(steps) + 1, device=device), shift)


@dataclass
class SolveResult:
    """x: the final state ``{modality: [B, L, C]}``; nfe: how many times ``velocity`` was called."""

    x: State
    nfe: int


class _Field:
    """The velocity field with NFE counting, per-sample t, and each modality's path."""

    def __init__(self, velocity: Velocity, x: State, paths: Mapping[str, ProbabilityPath] | None):
        self.velocity = velocity
        self.paths = {k: (paths or {}).get(k) or LinearPath() for k in x}
        first = next(iter(x.values()))
        self.batch, self.device = first.shape[0], first.device
        # t in float32 at least: a bf16 t cannot tell neighbouring grid points apart
        self.dtype = torch.float64 if first.dtype == torch.float64 else torch.float32
        self.nfe = 0

    def __call__(self, x: State, t: torch.Tensor | float, r: float | None = None) -> State:
        self.nfe += 1
        tb = torch.as_tensor(t, dtype=self.dtype, device=self.device).expand(self.batch)
        if r is None:
            v = self.velocity(x, tb)
        else:
            v = self.velocity(x, tb, torch.as_tensor(r, dtype=self.dtype, device=self.device).expand(self.batch))
        missing = set(x) - set(v)
        if missing:
            raise DataError(f"the velocity function returned no field for {sorted(missing)} (it returned "
                            f"{sorted(v)}); it must return one for every modality in the state")
        return {k: self.paths[k].sampling_velocity(v[k], tb) for k in x}

    def step(self, x: State, v: State, dt: torch.Tensor | float) -> State:
        return {k: self.paths[k].step(x[k], v[k], dt) for k in x}

    def transport(self, v: State, src: State, dst: State) -> State:
        return {k: self.paths[k].transport(v[k], src[k], dst[k]) for k in src}

    def slope(self, x_eval: State, t: float, base: State) -> State:
        """The velocity at x_eval, carried to the step's base point (identity in Euclidean space)."""
        return self.transport(self(x_eval, t), x_eval, base)

    def combine(self, ks: list[State], weights: list[float]) -> State:
        """sum_i weights[i] * ks[i], per modality (the Runge-Kutta weighted slope)."""
        return {k: sum(w * kk[k] for w, kk in zip(weights, ks) if w != 0) for k in self.paths}


class Solver:
    """``solve(velocity, x, grid, paths=None) -> SolveResult`` over ``grid [N + 1]``."""

    name = ""

    def solve(self, velocity: Velocity, x: State, grid: torch.Tensor,
              paths: Mapping[str, ProbabilityPath] | None = None, noise: Noise | None = None) -> SolveResult:
        field = _Field(velocity, x, paths)
        x = {k: field.paths[k].project(v) for k, v in x.items()}
        times = grid.tolist()
        for t, t_next in zip(times[:-1], times[1:]):
            x = self.step(field, x, t, t_next - t)
        return SolveResult(x, field.nfe)

    def step(self, field: _Field, x: State, t: float, dt: float) -> State:
        raise NotImplementedError


class Euler(Solver):
    """x <- x + dt v(x, t)."""

    name = "euler"

    def step(self, field, x, t, dt):
        return field.step(x, field(x, t), dt)


class Midpoint(Solver):
    """x <- x + dt v(x + dt/2 v(x, t), t + dt/2) (RF-Solver's second-order rule)."""

    name = "midpoint"

    def step(self, field, x, t, dt):
        x_mid = field.step(x, field(x, t), dt / 2)
        return field.step(x, field.slope(x_mid, t + dt / 2, x), dt)


class Heun(Solver):
    """Explicit trapezoid: predictor Euler, corrector the mean of both slopes."""

    name = "heun"

    def step(self, field, x, t, dt):
        k1 = field(x, t)
        k2 = field.slope(field.step(x, k1, dt), t + dt, x)
        return field.step(x, field.combine([k1, k2], [0.5, 0.5]), dt)


class RK4(Solver):
    """The classical fourth-order Runge-Kutta rule."""

    name = "rk4"

    def step(self, field, x, t, dt):
        k1 = field(x, t)
        k2 = field.slope(field.step(x, k1, dt / 2), t + dt / 2, x)
        k3 = field.slope(field.step(x, k2, dt / 2), t + dt / 2, x)
        k4 = field.slope(field.step(x, k3, dt), t + dt, x)
        return field.step(x, field.combine([k1, k2, k3, k4], [1 / 6, 1 / 3, 1 / 3, 1 / 6]), dt)


class MeanFlow(Solver):
    """z_r = z_t - (t - r) u(z_t, r, t) per step [t, r = t + dt] of the grid (MeanFlow's one- and few-step rule).

    Exact when u is the true average velocity, whatever the step count. ``velocity`` must
    take ``(x, t, r)``; on a flow network trained without it the call is an error.
    """

    name = "meanflow"

    def step(self, field, x, t, dt):
        return field.step(x, field(x, t, r=t + dt), dt)


class FireFlow(Solver):
    """Midpoint rule whose first slope is the previous step's midpoint velocity (FireFlow, 2024).

    The midpoint velocity of step i approximates v at the start of step i + 1 to O(dt), which
    keeps the rule second order at one velocity call per step (plus one for the first step).
    """

    name = "fireflow"

    def solve(self, velocity, x, grid, paths=None, noise=None):
        field = _Field(velocity, x, paths)
        x = {k: field.paths[k].project(v) for k, v in x.items()}
        times = grid.tolist()
        v_mid, x_mid = None, None
        for t, t_next in zip(times[:-1], times[1:]):
            dt = t_next - t
            v = field(x, t) if v_mid is None else field.transport(v_mid, x_mid, x)
            x_mid = field.step(x, v, dt / 2)
            v_mid = field(x_mid, t + dt / 2)
            x = field.step(x, field.transport(v_mid, x_mid, x), dt)
        return SolveResult(x, field.nfe)


# Dormand-Prince 5(4): nodes, stage weights, 5th-order weights (= the last stage row, FSAL)
# and 4th-order weights for the error estimate.
_DP_C = [0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0]
_DP_A = [
    [],
    [1 / 5],
    [3 / 40, 9 / 40],
    [44 / 45, -56 / 15, 32 / 9],
    [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
    [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
    [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
]
_DP_B5 = [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0]
_DP_B4 = [5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40]


class Dopri5(Solver):
    """Adaptive Dormand-Prince 5(4) from grid[0] to grid[-1] (torchdiffeq's default method).

    A step is accepted when the RMS of the embedded error, scaled by ``atol + rtol |x|``, is
    at most 1; the next step size follows the usual 0.9 err^(-1/5) rule, clipped to [0.2, 5]x.
    """

    name = "dopri5"

    def __init__(self, rtol: float = 1e-5, atol: float = 1e-5, max_steps: int = 10_000) -> None:
        self.rtol, self.atol, self.max_steps = float(rtol), float(atol), int(max_steps)

    def solve(self, velocity, x, grid, paths=None, noise=None):
        field = _Field(velocity, x, paths)
        x = {k: field.paths[k].project(v) for k, v in x.items()}
        t, t_end = float(grid[0]), float(grid[-1])
        span = t_end - t
        direction = 1.0 if span > 0 else -1.0
        h = span / 20  # a first guess; the controller settles within a few steps
        k1 = field(x, t)
        for _ in range(self.max_steps):
            if direction * (t_end - t) <= 1e-12:
                return SolveResult(x, field.nfe)
            if direction * (t + h - t_end) > 0:
                h = t_end - t
            ks = [k1]
            for i in range(1, 7):
                xi = field.step(x, field.combine(ks, _DP_A[i]), h)
                k_last = field(xi, t + _DP_C[i] * h)
                ks.append(field.transport(k_last, xi, x))
            x_new = xi  # the 7th stage point is the 5th-order solution
            x4 = field.step(x, field.combine(ks, _DP_B4), h)
            err = self._error(x, x_new, x4)
            if err <= 1.0:
                t, x, k1 = t + h, x_new, k_last
            h = h * min(5.0, max(0.2, 0.9 * max(err, 1e-10) ** -0.2))
        raise ConfigError(f"dopri5 needed more than max_steps={self.max_steps} steps; raise rtol/atol or max_steps")

    def _error(self, x: State, x5: State, x4: State) -> float:
        total, count = 0.0, 0
        for k in x:
            scale = self.atol + self.rtol * torch.maximum(x[k].abs(), x5[k].abs())
            total += float((((x5[k] - x4[k]) / scale) ** 2).sum())
            count += x[k].numel()
        return (total / max(count, 1)) ** 0.5


class EulerSDE(Solver):
    """Euler-Maruyama on the SDE that shares the flow's marginals (``ProbabilityPath.stochastic_step``).

    On a linear path each step adds to the Euler step a pull of x_t towards the data by the
    score and fresh noise, both in proportion to ``churn`` (0: the Euler ODE step);
    ``noise_scale`` multiplies the fresh noise only. At 1 the marginals are the flow's; below 1
    the pull outweighs the noise and samples concentrate where the learned density is high:
    the "noise scale" of protein samplers (FrameDiff, RFdiffusion, Proteina's low-temperature
    sampling). Paths without a Gaussian score (rotations) take their ODE step.
    """

    name = "euler_sde"

    def __init__(self, churn: float = 1.0, noise_scale: float = 1.0) -> None:
        if not float(churn) >= 0 or not float(noise_scale) >= 0:
            raise ConfigError(f"euler_sde: churn and noise_scale must be >= 0, got {churn!r}, {noise_scale!r}")
        self.churn, self.noise_scale = float(churn), float(noise_scale)

    def solve(self, velocity, x, grid, paths=None, noise=None):
        field = _Field(velocity, x, paths)
        x = {k: field.paths[k].project(v) for k, v in x.items()}
        times = grid.tolist()
        if times[-1] > times[0]:
            raise ConfigError("euler_sde integrates noise -> data only (a grid from 1 down to 0); "
                              "use an ODE solver to invert")
        if self.churn == 0 or self.noise_scale == 0:
            # no fresh noise enters a step (the low-temperature setting): skip the prior draws
            silent = {k: torch.zeros_like(v) for k, v in x.items()}

            def noise() -> State:
                return silent
        elif noise is None:
            shapes = {k: v.shape for k, v in x.items()}

            def noise() -> State:
                return {k: field.paths[k].prior(shape, device=field.device) for k, shape in shapes.items()}
        for t, t_next in zip(times[:-1], times[1:]):
            v, eps = field(x, t), noise()
            x = {k: field.paths[k].stochastic_step(x[k], v[k], t, t_next - t, self.churn,
                                                   self.noise_scale * eps[k].to(x[k].dtype)) for k in x}
        return SolveResult(x, field.nfe)


SOLVERS: dict[str, type[Solver]] = {
    s.name: s for s in (Euler, Midpoint, Heun, RK4, Dopri5, FireFlow, EulerSDE, MeanFlow)
}
SOLVERS["rf_solver"] = Midpoint


def make_solver(name: str, **kwargs) -> Solver:
    """A solver by name: euler, midpoint (= rf_solver), heun, rk4, dopri5 (rtol, atol, max_steps),
    fireflow, euler_sde (churn, noise_scale), meanflow."""
    return build_by_name(SOLVERS, "solver", name, **kwargs)
