"""Generation, inversion and sample files from a trained network.

Every modality of the run takes part in each network call, in one of three ways: made (the
solver's state, at the solver's t), given (clean tokens, t = 0) or absent (fixed prior
noise, t = 1) — the same three states training used, so one network serves all tasks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from safetensors.torch import save_file
from torch import nn

from flowcore.errors import ConfigError, DataError
from flowcore.flow import inversion
from flowcore.flow.guidance import guided_velocity
from flowcore.flow.solvers import make_solver, time_grid
from flowcore.io import atomic_path
from flowcore.modality import Tokens
from flowcore.train.bundle import Bundle, move_to
from flowcore.train.config import Config

Velocity = Callable[[dict[str, torch.Tensor], torch.Tensor], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class SamplingOptions:
    """How a run is sampled, built once from ``config.sample`` plus overrides.

    Every place that samples takes one: training previews, ``flowcore sample``, ``eval``, reflow
    pairs, distillation rollouts, ``flowcore.load(...).generate`` and the plugins' scoring commands.
    ``cfg``: one guidance weight for every given condition, or ``{condition: weight}`` (a condition
    not named keeps weight 1). ``solver_options`` belong to ``solver``; overriding the solver
    drops them unless new ones are given.
    """

    steps: int = 32
    solver: str = "euler"
    solver_options: dict[str, Any] = field(default_factory=dict)
    cfg: float | dict[str, float] = 1.0
    shift: float = 1.0
    seed: int = 0
    unaided: bool = False

    @classmethod
    def from_config(cls, config: Config, **overrides: Any) -> SamplingOptions:
        """``config.sample`` with ``overrides`` applied (a None override keeps the config's value)."""
        s = config.sample
        base = cls(steps=s.steps, solver=s.solver, solver_options=dict(s.solver_options), cfg=s.cfg,
                   shift=s.shift, unaided=s.unaided)
        return base.replace(**overrides)

    def replace(self, **overrides: Any) -> SamplingOptions:
        """These options with ``overrides`` (None keeps a value; a new solver starts without options)."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown sampling option {sorted(unknown)[0]!r}; known: "
                              f"{[f.name for f in dataclasses.fields(self)]}")
        if changes.get("solver", self.solver) != self.solver and "solver_options" not in changes:
            changes["solver_options"] = {}
        return dataclasses.replace(self, **changes)


def without_aids(net: nn.Module):
    """The network's ``unaided()`` context (its sampling-only additions off, e.g. FrameNet's guidance),
    else a no-op: ``sample.unaided`` and the rollouts of on-policy distillation use it."""
    method = getattr(net, "unaided", None)
    return method() if callable(method) else contextlib.nullcontext()


def make_velocity(net: nn.Module, bundles: Mapping[str, Bundle], layouts: Mapping[str, Tokens],
                  given: Mapping[str, Tokens], generator: torch.Generator,
                  cfg: float | Mapping[str, float] = 1.0) -> Velocity:
    """``velocity(x, t)`` over the made modalities (the keys of ``layouts``).

    ``given`` tokens are clean conditions; every other modality is absent (prior noise drawn
    once from ``generator``, t = 1). With ``cfg`` != 1 each given condition is guided with
    weight ``cfg`` (or ``cfg[name]``; ``flowcore.flow.guidance``; a dropped condition is absent,
    as in training).
    """
    make = list(layouts)
    count = next(iter(layouts.values())).batch_size
    device = next(iter(layouts.values())).values.device
    absent = {}
    for name, b in bundles.items():
        if name not in make:
            blank = given[name] if name in given else b.layout(count, device)
            absent[name] = blank.with_values(b.path.prior(blank.values.shape, generator=generator).to(device))
    given = {n: tok.to(device) for n, tok in given.items()}
    zeros, ones = torch.zeros(count, device=device), torch.ones(count, device=device)

    def velocity_fn(state: dict[str, torch.Tensor], t: torch.Tensor, dropped: frozenset,
                    r: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        tokens = {m: layouts[m].with_values(state[m]) for m in make}
        times = {m: t for m in make}
        for name in absent:
            keep = name in given and name not in dropped
            tokens[name] = given[name] if keep else absent[name]
            times[name] = zeros if keep else ones
        # r: an average-velocity network's interval start (the meanflow solver); the other
        # modalities stay where they are, r = t
        v = net(tokens, times) if r is None else net(tokens, times, {**times, **{m: r for m in make}})
        return {m: v[m].float() for m in make}

    weights = {n: float(cfg.get(n, 1.0) if isinstance(cfg, Mapping) else cfg) for n in given}
    if any(w != 1.0 for w in weights.values()):
        return guided_velocity(velocity_fn, weights)
    return lambda state, t, *r: velocity_fn(state, t, frozenset(), *r)


@torch.no_grad()
def generate(net: nn.Module, bundles: Mapping[str, Bundle], make: Sequence[str], given: Mapping[str, Tokens],
             count: int, options: SamplingOptions, device: torch.device | str = "cpu") -> dict[str, Tokens]:
    """Generate ``make`` for ``count`` samples given clean tokens ``given`` (count must match theirs).

    The noise is drawn on the CPU from ``options.seed``: a seed gives the same samples on any
    device. ``options.unaided``: the network without its sampling-only aids (``without_aids``).
    """
    for name, tok in given.items():
        if tok.batch_size != count:
            raise DataError(f"given {name!r} has {tok.batch_size} samples, but {count} are to be generated")
    g = torch.Generator().manual_seed(options.seed)
    layouts = {m: bundles[m].layout(count, device) for m in make}
    x = {m: bundles[m].path.masked_prior(layouts[m].values.shape, layouts[m].mask, generator=g).to(device)
         for m in make}
    velocity = make_velocity(net, bundles, layouts, given, g, options.cfg)
    paths = {m: bundles[m].path for m in make}

    def noise() -> dict[str, torch.Tensor]:
        """A fresh prior draw, for a stochastic solver (euler_sde)."""
        return {m: paths[m].masked_prior(layouts[m].values.shape, layouts[m].mask, generator=g).to(device)
                for m in make}

    with without_aids(net) if options.unaided else contextlib.nullcontext():
        result = make_solver(options.solver, **options.solver_options).solve(
            velocity, x, time_grid(options.steps, options.shift, device=device), paths, noise=noise)
    return {m: layouts[m].with_values(result.x[m]) for m in make}


@torch.no_grad()
def invert(net: nn.Module, bundles: Mapping[str, Bundle], data: Mapping[str, Tokens], given: Mapping[str, Tokens],
           options: SamplingOptions) -> tuple[dict[str, torch.Tensor], dict[str, Tokens], dict[str, float]]:
    """Data tokens -> the noise that generates them, the regeneration from that noise, RMS errors.

    Inversion follows the plain conditional field: ``options.cfg`` is not applied."""
    g = torch.Generator().manual_seed(options.seed)
    layouts = dict(data)
    velocity = make_velocity(net, bundles, layouts, given, g)
    paths = {m: bundles[m].path for m in data}
    x0 = {m: tok.values for m, tok in data.items()}
    steps, solver, shift = options.steps, options.solver, options.shift
    eps = inversion.invert(velocity, x0, steps, solver=solver, paths=paths, shift=shift)
    back = inversion.generate(velocity, eps, steps, solver=solver, paths=paths, shift=shift)
    errors = {m: float(((back[m] - paths[m].project(x0[m])) ** 2).mean().sqrt()) for m in data}
    return eps, {m: data[m].with_values(back[m]) for m in data}, errors


def write_samples(bundle: Bundle, samples: Sequence[Any], out_dir: Path, stem: str = "sample") -> list[Path]:
    """Native files through the codec (else one safetensors of the samples) plus the preview."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    modality = bundle.modality
    if modality.codec is not None:
        paths = list(modality.codec.write_all(samples, out_dir, stem))
    else:
        path = out_dir / f"{stem}.safetensors"
        with atomic_path(path) as tmp:
            save_file({"samples": torch.stack([torch.as_tensor(s) for s in samples]).contiguous()}, str(tmp))
        paths = [path]
    preview = modality.preview(samples, out_dir / f"{stem}_preview.png")
    return paths + ([Path(preview)] if preview is not None else [])


def read_given(bundle: Bundle, spec: str) -> list[Any]:
    """``--given`` value: a file the modality's codec reads (all its samples), or a literal value."""
    modality = bundle.modality
    path = Path(spec)
    if path.is_file():
        if modality.codec is None:
            raise ConfigError(f"--given {bundle.name}={spec}: modality {bundle.name!r} has no codec to read files")
        samples = modality.codec.read_all(path)
        return [modality.validate(s, f"{path} sample {i}") for i, s in enumerate(samples)]
    try:
        value = json.loads(spec)
    except json.JSONDecodeError:
        value = spec
    try:
        return [modality.validate(value, f"--given {bundle.name}")]
    except DataError as exc:
        raise DataError(f"--given {bundle.name}={spec}: not a file, and not a valid value ({exc})") from exc


def tokens_of(bundle: Bundle, samples: Sequence[Any], device: torch.device | str) -> Tokens:
    """Samples -> tokens on ``device`` (collate, move, autoencoder, tokenizer)."""
    return bundle.tokens(move_to(bundle.modality.collate(list(samples)), device))
