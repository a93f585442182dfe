"""Generation (noise -> data) and inversion (data -> noise) with the same solvers, and FlowEdit.

Inversion runs the sampling grid backwards, t: 0 -> 1. With an exact field and a fine grid,
``generate(invert(x0))`` returns x0; ``reconstruction_error`` measures how far it lands.
``flowedit`` edits without inverting: it integrates the difference of two conditional fields.
"""

from __future__ import annotations

from typing import Mapping

import torch

from flowcore.errors import ConfigError
from flowcore.flow.path import LinearPath, ProbabilityPath
from flowcore.flow.solvers import SolveResult, State, Velocity, make_solver, time_grid


def _run(velocity: Velocity, x: State, steps: int, solver: str, paths: Mapping[str, ProbabilityPath] | None,
         shift: float, solver_options: Mapping | None, reverse: bool) -> SolveResult:
    device = next(iter(x.values())).device
    grid = time_grid(steps, shift, device=device)
    return make_solver(solver, **dict(solver_options or {})).solve(
        velocity, x, grid.flip(0) if reverse else grid, paths)


def generate(velocity: Velocity, eps: State, steps: int, solver: str = "euler",
             paths: Mapping[str, ProbabilityPath] | None = None, *, shift: float = 1.0,
             solver_options: Mapping | None = None) -> State:
    """Noise ``{modality: [B, L, C]}`` -> samples, integrating t: 1 -> 0 over ``time_grid(steps, shift)``."""
    return _run(velocity, eps, steps, solver, paths, shift, solver_options, reverse=False).x


def invert(velocity: Velocity, x0: State, steps: int, solver: str = "euler",
           paths: Mapping[str, ProbabilityPath] | None = None, *, shift: float = 1.0,
           solver_options: Mapping | None = None) -> State:
    """Data ``{modality: [B, L, C]}`` -> the noise that generates it (t: 0 -> 1, same grid reversed)."""
    return _run(velocity, x0, steps, solver, paths, shift, solver_options, reverse=True).x


def reconstruction_error(velocity: Velocity, x0: State, steps: int, solver: str = "euler",
                         paths: Mapping[str, ProbabilityPath] | None = None, *, shift: float = 1.0,
                         solver_options: Mapping | None = None) -> dict[str, float]:
    """Invert x0, generate back, and report the RMS error per modality (key ``"all"``: overall)."""
    eps = invert(velocity, x0, steps, solver, paths, shift=shift, solver_options=solver_options)
    x_rec = generate(velocity, eps, steps, solver, paths, shift=shift, solver_options=solver_options)
    errors: dict[str, float] = {}
    total, count = 0.0, 0
    for k in x0:
        target = paths[k].project(x0[k]) if paths and k in paths else x0[k]
        sq = float(((x_rec[k] - target) ** 2).sum())
        errors[k] = (sq / x0[k].numel()) ** 0.5
        total, count = total + sq, count + x0[k].numel()
    errors["all"] = (total / max(count, 1)) ** 0.5
    return errors


def flowedit(v_source: Velocity, v_target: Velocity, x0: State, grid: torch.Tensor,
             paths: Mapping[str, ProbabilityPath], *, average: int = 1,
             generator: torch.Generator | None = None) -> State:
    """FlowEdit (Kulikov et al. 2025): x0 moved from the source field to the target one, no inversion.

    From z = x0 at t = grid[0] down the grid to 0, each Euler step moves z by
    ``v_target(z + z_s - x0, t) - v_source(z_s, t)`` where ``z_s = (1 - t) x0 + t eps`` is x0
    noised afresh (the mean over ``average`` draws). The source point and the edited one carry
    the same noise, so whatever the two conditions agree on cancels in the difference: with
    equal fields z never moves, and for two Gaussian classes of one covariance the edit is the
    shift between their means whatever the noise. Linear (Euclidean) paths only.
    """
    for name in x0:
        if not isinstance(paths[name], LinearPath):
            raise ConfigError(f"flowedit needs a linear path; {name!r} flows on {paths[name]!r} (use inversion)")
    if average < 1:
        raise ConfigError(f"flowedit: average counts noise draws per step (>= 1), got {average}")
    first = next(iter(x0.values()))
    z = dict(x0)
    for t, t_next in zip(grid[:-1].tolist(), grid[1:].tolist()):
        times = torch.full((first.shape[0],), t, device=first.device)
        step = {k: torch.zeros_like(x) for k, x in x0.items()}
        for _ in range(average):
            eps = {k: paths[k].prior(x.shape, generator=generator, dtype=x.dtype).to(x.device) for k, x in x0.items()}
            source = {k: paths[k].interpolate(x, eps[k], times).x_t for k, x in x0.items()}
            v_t = v_target({k: z[k] + source[k] - x0[k] for k in x0}, times)
            v_s = v_source(source, times)
            step = {k: step[k] + v_t[k] - v_s[k] for k in step}
        z = {k: z[k] + (t_next - t) * step[k] / average for k in z}
    return z
