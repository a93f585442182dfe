"""Straighter flows: minibatch OT coupling, reflow pairs on disk, k-rectified retraining, k-step distillation.

Rectified flow (Liu et al. 2022) learns the velocity of the straight line between coupled
(x0, eps). With independent coupling the learned ODE's paths curve, so few-step samples blur.
Two ways to straighten them:

1. Minibatch OT (torchcfm): pair each data point with a noise sample of the same batch so the
   total squared distance is minimal (``ot_coupling``), then train as usual.
2. Reflow: integrate the trained flow from noise z to x = ODE(z) (``generate_pairs``, shards of
   safetensors on disk), retrain on the fixed pairs (z, x) (``PairDataset.draw`` + ``fit``):
   the 2-rectified flow. Training on those pairs only at the k times of a k-step grid
   (``make_timestep_sampler("grid", k=k)``) distils it to a k-step sampler.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from flowcore.errors import ConfigError, DataError, UnknownNameError
from flowcore.flow.loss import flow_matching_loss
from flowcore.flow.path import LinearPath, ProbabilityPath
from flowcore.flow.solvers import State, Velocity, make_solver, time_grid
from flowcore.flow.timesteps import TimestepSampler, Uniform
from flowcore.io import atomic_path, write_text_atomic

NoiseFn = Callable[[int, torch.Generator], State]
Draw = Callable[[torch.Generator], tuple[State, State]]
MANIFEST = "pairs.json"


# ----------------------------------------------------------------------------- OT coupling


def _flat(x: torch.Tensor | State) -> torch.Tensor:
    """[B, ...] or {m: [B, ...]} -> [B, D] (modalities side by side: one joint cost)."""
    if isinstance(x, torch.Tensor):
        return x.reshape(x.shape[0], -1)
    return torch.cat([v.reshape(v.shape[0], -1) for v in x.values()], 1)


def _take(x: torch.Tensor | State, index: torch.Tensor) -> torch.Tensor | State:
    if isinstance(x, torch.Tensor):
        return x[index]
    return {k: v[index] for k, v in x.items()}


def _sinkhorn_plan(cost: torch.Tensor, reg: float, iters: int) -> torch.Tensor:
    """Entropic OT plan with uniform marginals, log-domain iterations (stable for small reg)."""
    n, m = cost.shape
    log_k = -cost / reg
    log_a = torch.full((n,), -float(np.log(n)), dtype=cost.dtype, device=cost.device)
    log_b = torch.full((m,), -float(np.log(m)), dtype=cost.dtype, device=cost.device)
    f = torch.zeros_like(log_a)
    g = torch.zeros_like(log_b)
    for _ in range(iters):
        f = log_a - torch.logsumexp(log_k + g[None, :], 1)
        g = log_b - torch.logsumexp(log_k + f[:, None], 0)
    return torch.exp(f[:, None] + log_k + g[None, :])


def ot_coupling(x0: torch.Tensor | State, eps: torch.Tensor | State, method: str = "exact", reg: float = 0.05,
                iters: int = 200, generator: torch.Generator | None = None) -> torch.Tensor | State:
    """Re-pair a batch's noise with its data by minibatch optimal transport; returns eps reordered.

    Cost: squared Euclidean distance between flattened samples (over all modalities of a dict),
    divided by its maximum. ``"exact"``: the optimal permutation (Hungarian,
    ``scipy.optimize.linear_sum_assignment``). ``"sinkhorn"``: for each x0[i], eps[j] drawn from
    row i of the entropic plan with regulariser ``reg`` (torchcfm's sampler; j may repeat).
    """
    a, b = _flat(x0), _flat(eps)
    if a.shape[0] != b.shape[0]:
        raise DataError(f"ot_coupling: x0 has {a.shape[0]} samples but eps has {b.shape[0]}; give equal batches")
    cost = torch.cdist(a.double(), b.double()) ** 2
    cost = cost / cost.max().clamp_min(1e-12)
    if method == "exact":
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(cost.cpu().numpy())
        index = torch.empty(len(rows), dtype=torch.long)
        index[torch.from_numpy(rows)] = torch.from_numpy(cols)
    elif method == "sinkhorn":
        plan = _sinkhorn_plan(cost.cpu(), reg, iters)
        index = torch.multinomial(plan / plan.sum(1, keepdim=True), 1, generator=generator).squeeze(1)
    else:
        raise UnknownNameError(f"unknown OT coupling method {method!r}; choose 'exact' or 'sinkhorn'")
    return _take(eps, index.to(a.device))


# ----------------------------------------------------------------------------- batches


def prior_noise(shapes: Mapping[str, tuple[int, ...]],
                paths: Mapping[str, ProbabilityPath] | None = None) -> NoiseFn:
    """``noise(batch_size, generator) -> {m: [B, *shapes[m]]}`` from each modality's path prior."""
    paths = paths or {}

    def noise(batch_size: int, generator: torch.Generator) -> State:
        return {m: (paths.get(m) or LinearPath()).prior((batch_size, *shape), generator=generator)
                for m, shape in shapes.items()}

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


@torch.no_grad()
def generate_pairs(velocity: Velocity, noise: NoiseFn, n: int, out_dir: str | Path, *, steps: int = 32,
                   solver: str = "rk4", shift: float = 1.0, paths: Mapping[str, ProbabilityPath] | None = None,
                   batch_size: int = 1024, shard_size: int = 65536, seed: int = 0,
                   solver_options: Mapping | None = None) -> list[Path]:
    """Integrate ``n`` noise draws to samples and write the (eps, x0) pairs as safetensors shards.

    Files: ``out_dir/pairs-00000.safetensors``… with tensors ``eps.<modality>`` and
    ``x0.<modality>`` ``[N_shard, L, C]``, and ``out_dir/pairs.json`` (shards, counts, how the
    pairs were made). The same seed gives the same pairs.
    """
    if n < 1 or batch_size < 1 or shard_size < 1:
        raise ConfigError(f"generate_pairs: n, batch_size and shard_size must be >= 1 (got {n}, {batch_size}, {shard_size})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    integrator = make_solver(solver, **dict(solver_options or {}))
    shards: list[dict] = []
    buffer: dict[str, list[torch.Tensor]] = {}
    buffered = 0

    def flush() -> None:
        nonlocal buffer, buffered
        name = f"pairs-{len(shards):05d}.safetensors"
        tensors = {k: torch.cat(v).contiguous() for k, v in buffer.items()}
        with atomic_path(out_dir / name) as tmp:
            save_file(tensors, str(tmp))
        shards.append({"file": name, "count": buffered})
        buffer, buffered = {}, 0

    done = 0
    while done < n:
        b = min(batch_size, n - done, shard_size - buffered)
        eps = noise(b, generator)
        grid = time_grid(steps, shift, device=next(iter(eps.values())).device)
        x0 = integrator.solve(velocity, eps, grid, paths).x
        for m in eps:
            buffer.setdefault(f"eps.{m}", []).append(eps[m].detach().float().cpu())
            buffer.setdefault(f"x0.{m}", []).append(x0[m].detach().float().cpu())
        buffered += b
        done += b
        if buffered == shard_size or done == n:
            flush()
    manifest = {"count": n, "modalities": sorted(eps), "shards": shards, "solver": solver, "steps": steps,
                "shift": shift, "seed": seed}
    write_text_atomic(out_dir / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return [out_dir / s["file"] for s in shards]


class PairDataset(torch.utils.data.Dataset):
    """The (eps, x0) pairs ``generate_pairs`` wrote; items ``{"eps": {m: [L, C]}, "x0": {m: [L, C]}}``.

    All shards are loaded into memory (``eps``, ``x0``: ``{m: [N, L, C]}``).
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
        self.eps = {k[4:]: torch.cat(v) for k, v in parts.items() if k.startswith("eps.")}
        self.x0 = {k[3:]: torch.cat(v) for k, v in parts.items() if k.startswith("x0.")}
        counts = {len(v) for v in (*self.eps.values(), *self.x0.values())}
        if counts != {manifest["count"]}:
            raise DataError(f"{directory}: shards hold {sorted(counts)} pairs, manifest says {manifest['count']}")

    def __len__(self) -> int:
        return int(self.manifest["count"])

    def __getitem__(self, i: int) -> dict[str, dict[str, torch.Tensor]]:
        return {"eps": {m: v[i] for m, v in self.eps.items()}, "x0": {m: v[i] for m, v in self.x0.items()}}

    def draw(self, batch_size: int) -> Draw:
        """Random batches (x0, eps) of fixed pairs, for ``fit``."""

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
        loss = flow_matching_loss(velocity, x0, eps, t, paths, weight=loss_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
