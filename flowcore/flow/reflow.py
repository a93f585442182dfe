"""Straighter flows: reflow pairs on disk, k-rectified retraining, k-step distillation.

Rectified flow (Liu et al. 2022) learns the velocity of the straight line between coupled
(x0, eps). With independent coupling the learned ODE's paths curve, so few-step samples blur.
Two ways to straighten them:

1. Minibatch OT (torchcfm): pair each data point with a noise sample of the same batch so the
   total squared distance is minimal (``flowcore.flow.ot.ot_coupling``), then train as usual.
2. Reflow: integrate the trained flow from noise z to x = ODE(z) (``generate_pairs``, shards of
   safetensors on disk), retrain on the fixed pairs (z, x) (``PairDataset.draw`` + ``fit``):
   the 2-rectified flow. Training on those pairs only at the k times of a k-step grid
   (``make_timestep_sampler("grid", k=k)``) distils it to a k-step sampler. A conditional flow
   is reflowed on triples (z, x = ODE(z | c), c), c drawn from data and the teacher guided as it
   is sampled (InstaFlow); the student learns v(x_t, t | c) on them (``flowcore reflow``).
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from flowcore.errors import ConfigError, DataError
from flowcore.flow.loss import flow_matching_loss
from flowcore.flow.ot import ot_coupling
from flowcore.flow.path import LinearPath, ProbabilityPath
from flowcore.flow.solvers import State, Velocity, make_solver, time_grid
from flowcore.flow.timesteps import TimestepSampler, Uniform
from flowcore.io import atomic_path, write_text_atomic
from flowcore.modality import Tokens

NoiseFn = Callable[[int, torch.Generator], State]
Draw = Callable[[torch.Generator], tuple[State, State]]
#: ``conditions(start, count) -> {name: Tokens}``: the condition tokens of pairs start .. start + count - 1
ConditionFn = Callable[[int, int], Mapping[str, Tokens]]
#: ``field(given, count, generator) -> velocity(x, t)``: the teacher's field given condition tokens
FieldFactory = Callable[[Mapping[str, Tokens], int, torch.Generator], Velocity]
MANIFEST = "pairs.json"
PARTIAL = "pairs.partial.json"


# ----------------------------------------------------------------------------- batches


def prior_noise(shapes: Mapping[str, tuple[int, ...]],
                paths: Mapping[str, ProbabilityPath] | None = None,
                masks: Mapping[str, torch.Tensor] | None = None) -> NoiseFn:
    """``noise(batch_size, generator) -> {m: [B, *shapes[m]]}`` from each modality's path prior.

    masks: each modality's real tokens ``[L]`` (default: all real). The noise is drawn as
    training and sampling draw it, through ``masked_prior``, so a prior centred over the real
    tokens (``LinearPath(centre=True)``) is centred over the same tokens in the pairs.
    """
    paths, masks = paths or {}, masks or {}

    def noise(batch_size: int, generator: torch.Generator) -> State:
        out = {}
        for m, shape in shapes.items():
            mask = masks.get(m)
            mask = torch.ones(shape[0], dtype=torch.bool) if mask is None else mask
            out[m] = (paths.get(m) or LinearPath()).masked_prior(
                (batch_size, *shape), mask.expand(batch_size, -1), generator=generator)
        return out

    return noise


def data_draw(data: State, batch_size: int, paths: Mapping[str, ProbabilityPath] | None = None,
              coupling: str | None = None, **coupling_options) -> Draw:
    """Batches (x0, eps) for a first flow: random rows of ``data`` ({m: [N, L, C]}), fresh prior noise,
    optionally re-paired by ``ot_coupling(method=coupling)``."""
    n = next(iter(data.values())).shape[0]
    noise = prior_noise({m: tuple(v.shape[1:]) for m, v in data.items()}, paths)

    def draw(generator: torch.Generator) -> tuple[State, State]:
        index = torch.randint(0, n, (batch_size,), generator=generator)
        x0 = {m: v[index] for m, v in data.items()}
        eps = noise(batch_size, generator)
        if coupling is not None:
            eps = ot_coupling(x0, eps, method=coupling, generator=generator, **coupling_options)
        return x0, eps

    return draw


# ----------------------------------------------------------------------------- pairs on disk


def _cat_padded(parts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate ``[B_i, L_i, ...]`` along B, zero/False-padding L to the longest (masked tokens)."""
    length = max(p.shape[1] for p in parts)
    return torch.cat([torch.nn.functional.pad(p, (0, 0) * (p.dim() - 2) + (0, length - p.shape[1]))
                      for p in parts]).contiguous()


def _tensor_names(path: Path) -> list[str]:
    """The tensor names in a safetensors file, without loading the tensors."""
    with safe_open(str(path), framework="pt") as f:
        return list(f.keys())


class _Progress:
    """``pairs.partial.json``: the shards written so far and the generator state after them.

    Written atomically after every shard, so a killed generation resumes at the next shard and
    makes exactly the pairs an uninterrupted run would; ``settings`` must match to resume.
    """

    def __init__(self, out_dir: Path, settings: dict):
        self.path = out_dir / PARTIAL
        self.settings = json.loads(json.dumps(settings))  # the form it takes in the file

    def load(self, generator: torch.Generator) -> tuple[list[dict], int]:
        """(shards, pairs done) of an interrupted run with these settings, else ([], 0)."""
        try:
            state = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return [], 0
        if state.get("settings") != self.settings or not all(
                (self.path.parent / s["file"]).is_file() for s in state["shards"]):
            return [], 0
        generator.set_state(torch.frombuffer(bytearray(base64.b64decode(state["generator"])), dtype=torch.uint8))
        return state["shards"], sum(s["count"] for s in state["shards"])

    def save(self, shards: list[dict], generator: torch.Generator) -> None:
        state = {"settings": self.settings, "shards": shards,
                 "generator": base64.b64encode(generator.get_state().numpy().tobytes()).decode()}
        write_text_atomic(self.path, json.dumps(state) + "\n")


@torch.no_grad()
def generate_pairs(velocity: Velocity | FieldFactory, noise: NoiseFn, n: int, out_dir: str | Path, *, steps: int = 32,
                   solver: str = "rk4", shift: float = 1.0, paths: Mapping[str, ProbabilityPath] | None = None,
                   batch_size: int = 1024, shard_size: int = 65536, seed: int = 0,
                   solver_options: Mapping | None = None, conditions: ConditionFn | None = None,
                   info: Mapping[str, Any] | None = None, progress: bool = False) -> list[Path]:
    """Integrate ``n`` noise draws to samples and write the (eps, x0) pairs as safetensors shards.

    Unconditional: ``velocity(x, t)``. Conditional: ``conditions(start, count)`` gives the
    condition tokens ``{name: Tokens [count, L, C]}`` of pairs ``start .. start + count - 1``
    and ``velocity(given, count, generator)`` builds the field given them (e.g. guided); every
    random draw it makes comes from ``generator``, so a seed still fixes the pairs.

    Files: ``out_dir/pairs-00000.safetensors``… with tensors ``eps.<modality>`` and
    ``x0.<modality>`` ``[N_shard, L, C]`` (plus ``cond.<name>``, ``cond_positions.<name>`` and
    ``cond_mask.<name>``: the condition tokens), and ``out_dir/pairs.json`` (shards, counts,
    conditions, how the pairs were made, and ``info``). The same seed gives the same pairs. Shards
    are written atomically and a killed run resumes after its last whole shard (``_Progress``);
    ``progress`` shows a bar on stderr.
    """
    if n < 1 or batch_size < 1 or shard_size < 1:
        raise ConfigError(f"generate_pairs: n, batch_size and shard_size must be >= 1 "
                          f"(got {n}, {batch_size}, {shard_size})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    integrator = make_solver(solver, **dict(solver_options or {}))
    settings = {"count": n, "solver": solver, "steps": steps, "shift": shift, "seed": seed,
                "batch_size": batch_size, "shard_size": shard_size, "solver_options": dict(solver_options or {}),
                "conditional": conditions is not None, "info": dict(info or {})}
    partial = _Progress(out_dir, settings)
    shards, done = partial.load(generator)
    buffer: dict[str, list[torch.Tensor]] = {}
    buffered = 0

    def flush() -> None:
        nonlocal buffer, buffered
        name = f"pairs-{len(shards):05d}.safetensors"
        tensors = {k: _cat_padded(v) for k, v in buffer.items()}
        with atomic_path(out_dir / name) as tmp:
            save_file(tensors, str(tmp))
        shards.append({"file": name, "count": buffered})
        partial.save(shards, generator)
        buffer, buffered = {}, 0

    with tqdm(total=n, initial=done, desc="reflow pairs", unit="pair", disable=not progress, file=sys.stderr) as bar:
        while done < n:
            b = min(batch_size, n - done, shard_size - buffered)
            eps = noise(b, generator)
            device = next(iter(eps.values())).device
            field = velocity
            if conditions is not None:
                given = conditions(done, b)
                field = velocity(given, b, generator)
                for m, tok in given.items():
                    buffer.setdefault(f"cond.{m}", []).append(tok.values.detach().float().cpu())
                    buffer.setdefault(f"cond_positions.{m}", []).append(tok.positions.detach().cpu())
                    buffer.setdefault(f"cond_mask.{m}", []).append(tok.mask.detach().cpu())
            x0 = integrator.solve(field, eps, time_grid(steps, shift, device=device), paths).x
            for m in eps:
                buffer.setdefault(f"eps.{m}", []).append(eps[m].detach().float().cpu())
                buffer.setdefault(f"x0.{m}", []).append(x0[m].detach().float().cpu())
            buffered += b
            done += b
            bar.update(b)
            if buffered == shard_size or done == n:
                flush()
    keys = _tensor_names(out_dir / shards[-1]["file"])  # (a resumed run may have made none of them now)
    manifest = {"count": n, "modalities": sorted(k[4:] for k in keys if k.startswith("eps.")),
                "conditions": sorted(k[5:] for k in keys if k.startswith("cond.")), "shards": shards,
                "solver": solver, "steps": steps, "shift": shift, "seed": seed, **dict(info or {})}
    write_text_atomic(out_dir / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    partial.path.unlink(missing_ok=True)
    return [out_dir / s["file"] for s in shards]


class PairDataset(torch.utils.data.Dataset):
    """The pairs ``generate_pairs`` wrote; items ``{"eps": {m: [L, C]}, "x0": {m: [L, C]}}``, plus
    ``"cond": {name: {"values": [L, C], "positions": [L, A], "mask": [L]}}`` for conditional pairs.

    All shards are loaded into memory (``eps``, ``x0``: ``{m: [N, L, C]}``; ``conditions``:
    ``{name: Tokens [N, L, C]}``, empty for unconditional pairs).
    """

    def __init__(self, directory: str | Path) -> None:
        directory = Path(directory)
        try:
            manifest = json.loads((directory / MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{directory / MANIFEST}: cannot read the pair manifest ({exc}); "
                            f"run generate_pairs (or `flowcore reflow`) into this directory first") from exc
        self.manifest = manifest
        parts: dict[str, list[torch.Tensor]] = {}
        for shard in manifest["shards"]:
            path = directory / shard["file"]
            try:
                tensors = load_file(str(path))
            except Exception as exc:  # safetensors raises its own error types for truncation
                raise DataError(f"{path}: cannot read pair shard ({exc})") from exc
            for k, v in tensors.items():
                parts.setdefault(k, []).append(v)
        merged = {k: _cat_padded(v) for k, v in parts.items()}
        self.eps = {k[4:]: v for k, v in merged.items() if k.startswith("eps.")}
        self.x0 = {k[3:]: v for k, v in merged.items() if k.startswith("x0.")}
        self.conditions = {k[5:]: Tokens(v, merged[f"cond_positions.{k[5:]}"], merged[f"cond_mask.{k[5:]}"])
                           for k, v in merged.items() if k.startswith("cond.")}
        counts = {len(v) for v in merged.values()}
        if counts != {manifest["count"]}:
            raise DataError(f"{directory}: shards hold {sorted(counts)} pairs, manifest says {manifest['count']}")

    def __len__(self) -> int:
        return int(self.manifest["count"])

    def __getitem__(self, i: int) -> dict[str, dict[str, Any]]:
        item: dict[str, dict[str, Any]] = {"eps": {m: v[i] for m, v in self.eps.items()},
                                           "x0": {m: v[i] for m, v in self.x0.items()}}
        if self.conditions:
            item["cond"] = {m: {"values": c.values[i], "positions": c.positions[i], "mask": c.mask[i]}
                            for m, c in self.conditions.items()}
        return item

    def draw(self, batch_size: int) -> Draw:
        """Random batches (x0, eps) of fixed pairs, for ``fit`` (unconditional: conditions are not drawn)."""

        def draw(generator: torch.Generator) -> tuple[State, State]:
            index = torch.randint(0, len(self), (batch_size,), generator=generator)
            return {m: v[index] for m, v in self.x0.items()}, {m: v[index] for m, v in self.eps.items()}

        return draw


# ----------------------------------------------------------------------------- training


def fit(velocity: Velocity, parameters: Iterable[torch.nn.Parameter], draw: Draw, steps: int, *, lr: float = 1e-3,
        timesteps: TimestepSampler | None = None, loss_weight: Callable[[torch.Tensor], torch.Tensor] | None = None,
        paths: Mapping[str, ProbabilityPath] | None = None, seed: int = 0) -> list[float]:
    """A plain Adam loop on ``flow_matching_loss``; returns the loss of every step.

    The same call trains a first flow (``data_draw``), a k-rectified flow
    (``PairDataset.draw``) and a k-step distillation (``timesteps=Grid(k)``). Lightning
    training (``flowcore train``/``reflow``) is the scaled-up version of this loop.
    """
    generator = torch.Generator().manual_seed(seed)
    timesteps = timesteps or Uniform()
    optimizer = torch.optim.Adam(list(parameters), lr=lr)
    losses = []
    for _ in range(steps):
        x0, eps = draw(generator)
        t = timesteps(next(iter(x0.values())).shape[0], generator=generator)
        loss = flow_matching_loss(velocity, x0, eps, t, paths=paths, weight=loss_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
