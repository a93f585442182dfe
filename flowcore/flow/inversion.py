"""Generation (noise -> data) and inversion (data -> noise) with the same solvers.

Inversion runs the sampling grid backwards, t: 0 -> 1. With an exact field and a fine grid,
``generate(invert(x0))`` returns x0; ``reconstruction_error`` measures how far it lands.
"""

from __future__ import annotations

from typing import Mapping

from flowcore.flow.path import ProbabilityPath
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

