"""Editing by inversion: invert a sample under its source condition, regenerate it under a target one.

    z = invert(x | source)  over the grid from t = 0 to t = strength
    x' = generate(z | target) over the same grid back to t = 0, with the run's guidance

(RF-Solver, FireFlow). With source = target and an exact solver x' = x; with a new target the
sample keeps what the noise z carries of it (layout, style) and takes the target's class.
``strength`` < 1 stops the inversion early (less of the source is re-made).

Feature re-injection (RF-Edit / FireFlow's "inject"): the outputs of the named submodules of the
network (``inject_modules``, names from ``net.named_modules()``) are recorded at every velocity
call of the inversion, keyed by its time; in the first ``inject`` denoising steps a call at a
recorded time gets the recorded source outputs in place of its own (both passes of guidance).
The rf_solver (midpoint) and fireflow solvers evaluate at each step's midpoint both ways, so
every step can be injected; euler inverts at the grid points below ``strength`` and generates
at those above 0, so its first denoising step has nothing to inject. Injecting the whole
network's output at every step of rf_solver or fireflow retraces the inversion: the source.

``method="flowedit"`` edits without inverting (``flowcore.flow.inversion.flowedit``): Euler steps
from t = ``strength`` to 0 along the difference of the target and source fields, evaluated on
the sample noised afresh each step (``average`` noise draws per step; ``seed`` fixes them).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn

from flowcore.errors import ConfigError
from flowcore.flow.inversion import flowedit
from flowcore.flow.solvers import make_solver, time_grid
from flowcore.io import dumps_json, write_text_atomic
from flowcore.modality import Tokens
from flowcore.train.bundle import Bundle
from flowcore.train.sampling import SamplingOptions, make_velocity, write_samples


class FeatureBank:
    """Outputs of named submodules, recorded per velocity-call time and replayed at the same times."""

    def __init__(self, net: nn.Module, names: Sequence[str]):
        modules = dict(net.named_modules())
        unknown = [n for n in names if n not in modules]
        if unknown:
            known = [n for n in modules if n][:20]
            raise ConfigError(f"edit inject_modules: the network has no submodule {unknown[0]!r}; "
                              f"it has {known}{' ...' if len(modules) > 21 else ''}")
        self.modules = {n: modules[n] for n in names}
        self.store: dict[tuple[str, float], torch.Tensor] = {}
        self.t: float | None = None
        self.mode: str | None = None  # "record", "replay" or None
        self.until = 0.0  # replay only at times > until (the first denoising steps)

    def timed(self, velocity):
        """``velocity`` that first notes the time of each call (one t for the whole batch)."""
        def call(x, t, *args):
            self.t = round(float(t[0]), 6)
            return velocity(x, t, *args)
        return call

    def _hook(self, name: str):
        def hook(module, inputs, output):
            key = (name, self.t)
            if self.mode == "record":
                self.store[key] = output.detach().clone()
            elif self.mode == "replay" and self.t is not None and self.t > self.until and key in self.store:
                return self.store[key]
            return None
        return hook

    @contextlib.contextmanager
    def active(self, mode: str, until: float = 0.0) -> Iterator[None]:
        self.mode, self.until = mode, until
        handles = [m.register_forward_hook(self._hook(n)) for n, m in self.modules.items()]
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            self.mode = None


@torch.no_grad()
def edit(net: nn.Module, bundles: Mapping[str, Bundle], data: Mapping[str, Tokens], source: Mapping[str, Tokens],
         target: Mapping[str, Tokens], options: SamplingOptions, strength: float = 1.0, inject: int = 0,
         inject_modules: Sequence[str] = (), method: str = "inversion", average: int = 1
         ) -> tuple[dict[str, Tokens], dict[str, torch.Tensor] | None]:
    """Edited tokens of ``data`` (module docstring) and the inverted state at t = ``strength``
    (None for flowedit, which inverts nothing).

    source, target: clean condition tokens, one per sample; a modality in neither is absent.
    The source side follows the plain conditional field; the target side applies ``options.cfg``.
    """
    if not 0.0 < float(strength) <= 1.0:
        raise ConfigError(f"edit: strength must lie in (0, 1] (the time the edit starts from), got {strength}")
    if method not in ("inversion", "flowedit"):
        raise ConfigError(f"edit: method must be inversion or flowedit, got {method!r}")
    if method == "flowedit" and (inject or options.solver != "euler"):
        raise ConfigError("edit: flowedit takes Euler steps and re-injects nothing; drop --inject and give "
                          f"--solver euler (got solver {options.solver!r}, inject {inject})")
    if inject < 0 or (inject and not inject_modules):
        raise ConfigError("edit: inject counts denoising steps (>= 0) and needs inject_modules, the submodules "
                          "whose source outputs are re-injected")
    if options.solver in ("euler_sde", "meanflow", "dopri5"):
        raise ConfigError(f"edit: solver {options.solver!r} does not invert on a fixed grid; use euler, rf_solver "
                          "(midpoint), heun, rk4 or fireflow")
    layouts = dict(data)
    device = next(iter(data.values())).values.device
    # the same seed on both sides: modalities absent from both get the same prior noise, so with
    # source = target the two fields are one
    v_source = make_velocity(net, bundles, layouts, source, torch.Generator().manual_seed(options.seed))
    v_target = make_velocity(net, bundles, layouts, target, torch.Generator().manual_seed(options.seed), options.cfg)
    paths = {m: bundles[m].path for m in data}
    grid = time_grid(options.steps, options.shift, device=device) * float(strength)
    solver = make_solver(options.solver, **options.solver_options)
    x0 = {m: tok.values for m, tok in data.items()}
    if method == "flowedit":
        out = flowedit(v_source, v_target, x0, grid, paths, average=average,
                       generator=torch.Generator().manual_seed(options.seed))
        return {m: data[m].with_values(out[m]) for m in data}, None
    if inject:
        bank = FeatureBank(net, inject_modules)
        with bank.active("record"):
            z = solver.solve(bank.timed(v_source), x0, grid.flip(0), paths).x
        until = float(grid[min(inject, options.steps)])
        with bank.active("replay", until=until):
            out = solver.solve(bank.timed(v_target), z, grid, paths).x
    else:
        z = solver.solve(v_source, x0, grid.flip(0), paths).x
        out = solver.solve(v_target, z, grid, paths).x
    return {m: data[m].with_values(out[m]) for m in data}, z


def edit_file(run_dir: str | Path, input_file: str | Path, out_dir: str | Path, source: Mapping[str, str],
              target: Mapping[str, str], *, modality: str | None = None, strength: float = 1.0, inject: int = 0,
              inject_modules: Sequence[str] = (), method: str = "inversion", average: int = 1,
              device: str | None = None, registry=None, **overrides) -> dict[str, Any]:
    """``flowcore edit``: a native file edited from the ``source`` conditions to ``target`` (``{name: value
    or file}``), written beside an ``edit.json`` report in ``out_dir``; ``modality`` defaults to the run's
    one generated modality."""
    from flowcore.train.inference import load  # lazy: flowcore.train.inference imports this module

    pipe = load(run_dir, device=device, registry=registry)
    if modality is None:
        made = [n for n, m in pipe.config.modalities.items() if m.role != "condition" and n not in source]
        if len(made) != 1:
            raise ConfigError(f"{run_dir}: the run generates {made}; name the one to edit with --modality")
        modality = made[0]
    if pipe.bundles[modality].modality.codec is None:
        raise ConfigError(f"modality {modality!r} has no codec: there is no file to edit")
    edited = pipe.edit(modality, str(input_file), source, target, strength=strength, inject=inject,
                       inject_modules=inject_modules, method=method, average=average, **overrides)
    out_dir = Path(out_dir)
    files = write_samples(pipe.bundles[modality], edited, out_dir, stem="edited")
    options = pipe.sampling_options(**overrides)
    report = {"modality": modality, "input": str(input_file), "count": len(edited), "from": dict(source),
              "to": dict(target), "steps": options.steps, "solver": options.solver, "cfg": options.cfg,
              "method": method, "strength": strength, "inject": inject, "inject_modules": list(inject_modules),
              "average": average,
              "edited": [str(p) for p in files]}
    write_text_atomic(out_dir / "edit.json", dumps_json(report, indent=1) + "\n")
    return report
