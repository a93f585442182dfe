"""On-policy distillation: the network learns what its sampler adds, on the states it visits itself.

A sampler may add to the network's velocity things the network was never trained to produce:
a guidance potential on the clean estimate (a plugin network's sampling-only option), classifier-free
guidance. Trained on data alone, the network cannot learn them. Trained to imitate the aided field
on noised *data* it does not learn them either where it matters, since its own trajectories leave
the states that data noised ever gives (exposure bias). So, from ``distill.start_step`` on, each
training step also:

1. rolls the network out with the run's sampler (``sample.solver``, ``steps``, ``shift``), without
   any sampling aid, from fresh prior noise laid out like the step's data batch (its first
   ``distill.samples`` items: same sizes, positions and masks, so a batch of long chains rolls
   out long chains), and keeps its states x_t with t <= ``distill.t_max`` (one rollout feeds
   ``distill.states`` steps);
2. asks a frozen teacher (the EMA network at ``start_step``, sampled *with* its aids) for its
   velocity there;
3. adds ``distill.weight`` x the squared difference, averaged over each sample's real tokens and
   then over the samples (as the flow loss is), to the flow loss on data.

This is DAgger (Ross et al. 2011) with the aided sampler as the expert. The flow loss on data keeps
the field anchored; ``flowcore sample`` afterwards needs no aid for what was distilled.

A network's sampling aids are switched off for the rollouts through an optional method
``unaided()`` (a context manager; ``flowcore_protein``'s FrameNet has one); without it the
network is rolled out as it samples.
"""

from __future__ import annotations

import copy
import random
from typing import Any, Mapping

import torch
from torch import nn

from flowcore.flow.solvers import make_solver, time_grid
from flowcore.modality import Tokens
from flowcore.train.sampling import SamplingOptions, make_velocity
from flowcore.train.sampling import without_aids as unaided


class OnPolicyDistillation:
    """The ``distill`` section at work inside ``FlowModule.training_step`` (module docstring)."""

    def __init__(self, config, bundles: Mapping[str, Any]):
        self.config, self.bundles = config, bundles
        self.make = config.names("generate")
        d = config.distill
        self.rng = random.Random(config.seed + 7919)
        self.generator = torch.Generator().manual_seed(config.seed + 7919)
        self.teacher: nn.Module | None = None
        self.queue: list[tuple[dict[str, Tokens], float, dict[str, torch.Tensor]]] = []
        sampling = SamplingOptions.from_config(config)  # the rollouts follow the run's sampler
        self.grid = time_grid(sampling.steps, sampling.shift)
        self.first_low = int((self.grid > d.t_max + 1e-6).sum())  # grid[first_low]: the first time <= t_max
        self.solver = make_solver(sampling.solver, **sampling.solver_options)
        self.rollouts = 0

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to draw the rollouts an uninterrupted one would: the RNG states,
        the count and the queued states (layouts as plain tensors, so the checkpoint holds no class)."""
        queue = [({m: (tok.values, tok.positions, tok.mask) for m, tok in layouts.items()}, t, x)
                 for layouts, t, x in self.queue]
        return {"rng": self.rng.getstate(), "generator": self.generator.get_state(), "rollouts": self.rollouts,
                "queue": queue}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.setstate(state["rng"])
        self.generator.set_state(state["generator"])
        self.rollouts = int(state["rollouts"])
        self.queue = [({m: Tokens(*parts) for m, parts in layouts.items()}, t, x) for layouts, t, x in state["queue"]]

    def start(self, sampler_net: nn.Module, state: Mapping[str, torch.Tensor] | None = None) -> None:
        """Freeze the teacher: the sampler's network now, or the weights of a checkpoint being resumed."""
        self.teacher = copy.deepcopy(sampler_net).requires_grad_(False).eval()
        if state is not None:
            self.teacher.load_state_dict(state)

    @torch.no_grad()
    def rollout(self, net: nn.Module, batch: Mapping[str, Tokens], device: torch.device) -> None:
        """One unaided rollout of the student, laid out like ``batch``; queue ``distill.states`` of its states."""
        n = self.config.distill.samples
        layouts = {m: Tokens(torch.zeros_like(batch[m].values[:n]), batch[m].positions[:n], batch[m].mask[:n])
                   for m in self.make}
        paths = {m: self.bundles[m].path for m in self.make}
        g = self.generator

        def prior() -> dict[str, torch.Tensor]:
            return {m: paths[m].masked_prior(layouts[m].values.shape, layouts[m].mask, generator=g).to(device)
                    for m in self.make}

        was_training = net.training
        net.eval()
        try:
            with unaided(net):
                velocity = make_velocity(net, self.bundles, layouts, {}, g)
                x = self.solver.solve(velocity, prior(), self.grid[:self.first_low + 1].to(device), paths,
                                      noise=prior).x
                states = []
                for i in range(self.first_low, len(self.grid) - 1):  # every grid time <= t_max but t = 0
                    states.append((float(self.grid[i]), x))
                    if i + 2 < len(self.grid):
                        x = self.solver.solve(velocity, x, self.grid[i:i + 2].to(device), paths, noise=prior).x
        finally:
            net.train(was_training)
        for t, x in self.rng.sample(states, min(self.config.distill.states, len(states))):
            self.queue.append((layouts, t, x))
        self.rollouts += 1

    def loss(self, net: nn.Module, batch: Mapping[str, Tokens], device: torch.device) -> torch.Tensor:
        """The student's (``net``, training mode) squared distance to the aided teacher at one queued state;
        ``batch``: the step's clean data tokens (the layout of a new rollout when the queue is empty)."""
        if not self.queue:
            self.rollout(net, batch, device)
        layouts, t, x = self.queue.pop()
        n = next(iter(layouts.values())).batch_size
        times = torch.full((n,), t, device=device)
        with torch.no_grad():
            target = make_velocity(self.teacher, self.bundles, layouts, {}, self.generator)(x, times)
        pred = net({m: layouts[m].with_values(x[m]) for m in self.make}, {m: times for m in self.make})
        total = torch.zeros((), device=device)
        for m in self.make:  # per sample, then over samples: a long chain weighs what a short one does (flow loss)
            mask = layouts[m].mask.unsqueeze(-1).to(torch.float32)
            sq = ((pred[m].float() - target[m]) ** 2 * mask).flatten(1).sum(1)
            total = total + (sq / (mask.flatten(1).sum(1) * pred[m].shape[-1]).clamp_min(1)).mean()
        return total / len(self.make)
